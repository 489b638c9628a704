//! Deleting a person on request (GDPR/CCPA), the query service's side: the request (a job in
//! PostgreSQL's `person_deletions`, with the person's distinct ids as they are now), the jobs'
//! list, and the ids every statement leaves out while a job is pending — so a deleted person's
//! events stop counting at once. The consumer runs the jobs (it may write to ClickHouse; query's
//! account may not).

use std::sync::Arc;

use cairn_common::http::ApiError;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::engine::Engine;
use crate::timerange::rfc3339;

/// A deletion job, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersonDeletion {
    pub id: i64,
    /// The deleted person's id (a 64-bit number as a decimal string).
    pub person_id: String,
    pub distinct_ids: Vec<String>,
    /// `pending` (events left out of every answer, not yet removed) or `done` (removed).
    pub status: String,
    pub requested_by: Option<i64>,
    /// RFC 3339.
    pub requested_at: String,
    pub finished_at: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersonDeletions {
    /// Newest first (at most 200).
    pub results: Vec<PersonDeletion>,
}

type Row = (
    i64,
    i64,
    Vec<String>,
    String,
    Option<i64>,
    time::OffsetDateTime,
    Option<time::OffsetDateTime>,
    i32,
    Option<String>,
);

fn to_api(r: Row) -> PersonDeletion {
    PersonDeletion {
        id: r.0,
        person_id: cairn_persons::store::from_db(r.1).to_string(),
        distinct_ids: r.2,
        status: r.3,
        requested_by: r.4,
        requested_at: rfc3339(r.5),
        finished_at: r.6.map(rfc3339),
        attempts: r.7,
        last_error: r.8,
    }
}

const COLUMNS: &str =
    "id, person_id, distinct_ids, status, requested_by, requested_at, finished_at, attempts, last_error";

/// The hashes of the distinct ids of the project's pending deletions.
pub async fn pending_hashes(pg: &PgPool, project_id: u64) -> Result<Vec<u64>, ApiError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(distinct_ids) FROM person_deletions WHERE project_id = $1 AND status = 'pending'",
    )
    .bind(project_id as i64)
    .fetch_all(pg)
    .await
    .map_err(cairn_postgres::api_error)?;
    let mut hashes: Vec<u64> = ids.iter().map(|id| cairn_persons::id_hash(id)).collect();
    hashes.sort_unstable();
    hashes.dedup();
    Ok(hashes)
}

/// The engine for one project's request: it leaves out the ids being deleted.
pub async fn engine_for(engine: &Engine, pg: &PgPool, project_id: u64) -> Result<Engine, ApiError> {
    let hashes = pending_hashes(pg, project_id).await?;
    let changes = engine.changed.has_changes(engine, project_id).await?;
    let mut e = engine.clone();
    e.source.changes = changes;
    if !hashes.is_empty() {
        e.source.excluded = Arc::from(hashes);
    }
    Ok(e)
}

/// Records the deletion of a person (404 when the project has no such person).
pub async fn request(
    engine: &Engine,
    pg: &PgPool,
    project_id: u64,
    person_id: &str,
    user_id: i64,
) -> Result<PersonDeletion, ApiError> {
    let person = crate::persons_api::find(engine, project_id, person_id).await?;
    let id: u64 = person.id.parse().map_err(|_| ApiError::internal("a person id that is not a number"))?;
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO person_deletions (project_id, person_id, distinct_ids, requested_by) VALUES ($1, $2, $3, $4) \
         RETURNING {COLUMNS}"
    ))
    .bind(project_id as i64)
    .bind(cairn_persons::store::to_db(id))
    .bind(&person.distinct_ids)
    .bind(user_id)
    .fetch_one(pg)
    .await
    .map_err(cairn_postgres::api_error)?;
    tracing::info!(project_id, deletion = row.0, ids = person.distinct_ids.len(), "person deletion requested");
    Ok(to_api(row))
}

/// The project's deletion jobs, newest first.
pub async fn list(pg: &PgPool, project_id: u64) -> Result<PersonDeletions, ApiError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM person_deletions WHERE project_id = $1 ORDER BY id DESC LIMIT 200"
    ))
    .bind(project_id as i64)
    .fetch_all(pg)
    .await
    .map_err(cairn_postgres::api_error)?;
    Ok(PersonDeletions { results: rows.into_iter().map(to_api).collect() })
}
