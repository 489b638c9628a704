//! Identity decisions kept in PostgreSQL (`schemas/postgres/0004_persons.sql`).
//!
//! [`decide_batch`] applies a batch of identity events in one transaction: for each project it
//! touches (in ascending order, so two workers never wait on each other in a cycle) it takes a
//! transaction-scoped advisory lock, so that one project's decisions are made one at a time —
//! a merge touches two ids whose events arrive on different partitions, possibly at different
//! workers. Each event's decision is recorded by its uuid, so a record delivered again changes
//! nothing; the ids a decision moved go to an outbox in the same transaction, which
//! [`outbox_take`] and [`outbox_done`] hand over to ClickHouse.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::identity::{decide, Decision, IdentityKind, IdentityOp, Known, Policy};
use crate::ids::{id_hash, PersonId};

/// The advisory lock class of persons' decisions (`pg_advisory_xact_lock(class, project)`):
/// "crnp".
const LOCK_CLASS: i32 = 0x6372_6e70;

/// An identity event to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityEvent {
    pub project_id: u64,
    pub uuid: Uuid,
    pub timestamp: OffsetDateTime,
    pub op: IdentityOp,
}

/// What deciding an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub uuid: Uuid,
    /// The decision's name ([`decision_name`]), as recorded.
    pub decision: String,
    /// The event was decided before (a redelivered record): nothing was done again, and
    /// `decision` is what was recorded then.
    pub replayed: bool,
}

/// A moved distinct id, as ClickHouse's `person_overrides` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    /// The outbox row's sequence number.
    pub seq: i64,
    pub project_id: u64,
    pub id_hash: u64,
    pub person_id: PersonId,
    pub version: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
}

/// A person id (unsigned) in a BIGINT column: the same 64 bits.
pub fn to_db(id: u64) -> i64 {
    id as i64
}

/// A BIGINT column's person id.
pub fn from_db(id: i64) -> u64 {
    id as u64
}

fn kind_name(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::Identify => "identify",
        IdentityKind::Alias => "alias",
        IdentityKind::MergeDangerously => "merge_dangerously",
    }
}

/// The name a decision is recorded (and counted in metrics) under.
pub fn decision_name(d: &Decision) -> &'static str {
    match d {
        Decision::Unchanged(_) => "unchanged",
        Decision::IllegalId(_) => "illegal_id",
        Decision::Identify { .. } => "identify",
        Decision::Join { .. } => "join",
        Decision::Merge { .. } => "merge",
        Decision::Refused { .. } => "refused",
    }
}

/// Decides `events` in order (one transaction), recording each decision and the moved ids.
pub async fn decide_batch(pool: &PgPool, events: &[IdentityEvent]) -> Result<Vec<Decided>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let projects: BTreeSet<u64> = events.iter().map(|e| e.project_id).collect();
    let mut policies = BTreeMap::new();
    for &project in &projects {
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(project as i32)
            .execute(&mut *tx)
            .await?;
        let allow: Option<bool> = sqlx::query_scalar("SELECT allow_merge_dangerously FROM projects WHERE id = $1")
            .bind(to_db(project))
            .fetch_optional(&mut *tx)
            .await?;
        policies.insert(project, Policy { allow_merge_dangerously: allow.unwrap_or(false) });
    }
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let policy = policies.get(&e.project_id).copied().unwrap_or_default();
        out.push(decide_one(&mut tx, e, policy).await?);
    }
    tx.commit().await?;
    Ok(out)
}

async fn decide_one(
    tx: &mut Transaction<'_, Postgres>,
    e: &IdentityEvent,
    policy: Policy,
) -> Result<Decided, StoreError> {
    let project = to_db(e.project_id);
    let seen: Option<String> =
        sqlx::query_scalar("SELECT decision FROM identity_decisions WHERE project_id = $1 AND event_uuid = $2")
            .bind(project)
            .bind(e.uuid)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(decision) = seen {
        // Decided before: what it did is stored; deciding again against today's state could
        // differ (a later event may have identified a person since).
        return Ok(Decided { uuid: e.uuid, decision, replayed: true });
    }
    let target = known(tx, e.project_id, &e.op.target).await?;
    let source = match e.op.source.as_deref() {
        Some(s) => known(tx, e.project_id, s).await?,
        None => None,
    };
    let decision = decide(&e.op, target, source, policy);
    match &decision {
        Decision::Unchanged(_) | Decision::IllegalId(_) => {}
        Decision::Identify { person } => {
            upsert_person(tx, e, *person).await?;
            anchor(tx, e.project_id, &e.op.target, *person).await?;
        }
        Decision::Join { id, person } => {
            upsert_person(tx, e, *person).await?;
            // The id that is already the person's (the other one) gets its row, if implicit.
            let other = if *id == e.op.target { e.op.source.as_deref() } else { Some(e.op.target.as_str()) };
            if let Some(other) = other {
                anchor(tx, e.project_id, other, *person).await?;
            }
            move_id(tx, e.project_id, id, *person).await?;
        }
        Decision::Merge { from, into } => {
            upsert_person(tx, e, *into).await?;
            let moved: Vec<(String, i64)> = sqlx::query_as(
                "UPDATE person_distinct_ids SET person_id = $3, version = version + 1 \
                 WHERE project_id = $1 AND person_id = $2 RETURNING distinct_id, version",
            )
            .bind(project)
            .bind(to_db(*from))
            .bind(to_db(*into))
            .fetch_all(&mut **tx)
            .await?;
            for (id, version) in moved {
                outbox(tx, e.project_id, &id, *into, version).await?;
            }
            sqlx::query("DELETE FROM persons WHERE project_id = $1 AND id = $2")
                .bind(project)
                .bind(to_db(*from))
                .execute(&mut **tx)
                .await?;
        }
        Decision::Refused { target: person, .. } => {
            upsert_person(tx, e, *person).await?;
            anchor(tx, e.project_id, &e.op.target, *person).await?;
        }
    }
    let person_after = match &decision {
        Decision::Identify { person } | Decision::Join { person, .. } => *person,
        Decision::Merge { into, .. } => *into,
        Decision::Refused { target, .. } => *target,
        Decision::Unchanged(_) | Decision::IllegalId(_) => target.map_or_else(|| id_hash(&e.op.target), |k| k.person),
    };
    sqlx::query(
        "INSERT INTO identity_decisions (project_id, event_uuid, kind, target, source, decision, person_id, event_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(project)
    .bind(e.uuid)
    .bind(kind_name(e.op.kind))
    .bind(&e.op.target)
    .bind(e.op.source.as_deref())
    .bind(decision_name(&decision))
    .bind(to_db(person_after))
    .bind(e.timestamp)
    .execute(&mut **tx)
    .await?;
    Ok(Decided { uuid: e.uuid, decision: decision_name(&decision).to_string(), replayed: false })
}

/// What is stored about a distinct id's person.
async fn known(tx: &mut Transaction<'_, Postgres>, project: u64, id: &str) -> Result<Option<Known>, StoreError> {
    let row: Option<(i64, bool)> = sqlx::query_as(
        "SELECT d.person_id, COALESCE(p.identified, false) FROM person_distinct_ids d \
         LEFT JOIN persons p ON p.project_id = d.project_id AND p.id = d.person_id \
         WHERE d.project_id = $1 AND d.distinct_id = $2",
    )
    .bind(to_db(project))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(person, identified)| Known { person: from_db(person), identified }))
}

/// Stores the person as identified (created at the event's time if new; an earlier event makes
/// it older).
async fn upsert_person(
    tx: &mut Transaction<'_, Postgres>,
    e: &IdentityEvent,
    person: PersonId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO persons (project_id, id, identified, created_at) VALUES ($1, $2, true, $3) \
         ON CONFLICT (project_id, id) DO UPDATE SET identified = true, \
         created_at = LEAST(persons.created_at, EXCLUDED.created_at)",
    )
    .bind(to_db(e.project_id))
    .bind(to_db(person))
    .bind(e.timestamp)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Gives an id that is already `person`'s (implicitly: the id the person is named after) its
/// row, so that it is known as the person's. Its person does not change: no override.
async fn anchor(
    tx: &mut Transaction<'_, Postgres>,
    project: u64,
    id: &str,
    person: PersonId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO person_distinct_ids (project_id, distinct_id, person_id, version) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (project_id, distinct_id) DO NOTHING",
    )
    .bind(to_db(project))
    .bind(id)
    .bind(to_db(person))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves an id to `person` (raising its version) and writes the override.
async fn move_id(
    tx: &mut Transaction<'_, Postgres>,
    project: u64,
    id: &str,
    person: PersonId,
) -> Result<(), StoreError> {
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO person_distinct_ids (project_id, distinct_id, person_id, version) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (project_id, distinct_id) DO UPDATE SET person_id = EXCLUDED.person_id, \
         version = person_distinct_ids.version + 1 RETURNING version",
    )
    .bind(to_db(project))
    .bind(id)
    .bind(to_db(person))
    .fetch_one(&mut **tx)
    .await?;
    outbox(tx, project, id, person, version).await
}

async fn outbox(
    tx: &mut Transaction<'_, Postgres>,
    project: u64,
    id: &str,
    person: PersonId,
    version: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO person_overrides_outbox (project_id, id_hash, person_id, version) VALUES ($1, $2, $3, $4)",
    )
    .bind(to_db(project))
    .bind(to_db(id_hash(id)))
    .bind(to_db(person))
    .bind(version)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The oldest `limit` overrides not yet copied to ClickHouse.
pub async fn outbox_take(pool: &PgPool, limit: i64) -> Result<Vec<Override>, StoreError> {
    let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT seq, project_id, id_hash, person_id, version FROM person_overrides_outbox ORDER BY seq LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, project, hash, person, version)| Override {
            seq,
            project_id: from_db(project),
            id_hash: from_db(hash),
            person_id: from_db(person),
            version: version.max(0) as u64,
        })
        .collect())
}

/// Forgets overrides ClickHouse holds now.
pub async fn outbox_done(pool: &PgPool, done: &[Override]) -> Result<(), StoreError> {
    let seqs: Vec<i64> = done.iter().map(|o| o.seq).collect();
    sqlx::query("DELETE FROM person_overrides_outbox WHERE seq = ANY($1)").bind(&seqs).execute(pool).await?;
    Ok(())
}

/// The person a distinct id belongs to now (its own, if no identity event moved it).
pub async fn person_of(pool: &PgPool, project: u64, id: &str) -> Result<PersonId, StoreError> {
    let person: Option<i64> =
        sqlx::query_scalar("SELECT person_id FROM person_distinct_ids WHERE project_id = $1 AND distinct_id = $2")
            .bind(to_db(project))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(person.map_or_else(|| id_hash(id), from_db))
}
