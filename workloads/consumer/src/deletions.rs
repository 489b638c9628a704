//! Person and project deletions (GDPR/CCPA), run by the consumer. Persons: the jobs the query service records in
//! PostgreSQL's `person_deletions` remove every row of the person's distinct ids from ClickHouse —
//! `events`, `events_by_person`, `person_property_ops`, `distinct_id_activity` and
//! `person_overrides` — with lightweight deletes (rows are masked at once and dropped by the next
//! merges: no rewrite of a large table), then the person's rows in PostgreSQL, then the job is
//! marked done. The query service leaves the ids' events out of every answer from the request
//! on, so the job's duration is not visible to analyses.
//!
//! Projects: a deleted project's job (`project_deletions`, recorded by a trigger whichever way the
//! project row went) removes the project's rows from the same tables and its persons from
//! PostgreSQL, twice: the second pass takes what Kafka still held at the first (or what capture
//! accepted while it could not follow the auth service's revocation feed).
//!
//! One job at a time per consumer (`FOR UPDATE SKIP LOCKED`: replicas take different jobs); a
//! failure is recorded on the job (`attempts`, `last_error`) and retried with backoff, and a
//! restart resumes pending jobs. Deleting again what is gone is harmless, so a job interrupted
//! between its statements is simply run again.

use std::time::Duration;

use cairn_common::clickhouse::{
    DISTINCT_ID_ACTIVITY_TABLE, EVENTS_BY_PERSON_TABLE, EVENTS_TABLE, EVENT_CHANGES_TABLE, PERSON_OVERRIDES_TABLE,
    PERSON_PROPERTY_OPS_TABLE,
};
use cairn_common::retry::Backoff;
use cairn_common::telemetry::Heartbeat;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often pending jobs are looked for.
const POLL: Duration = Duration::from_secs(2);
/// How long one table's delete may take before it is abandoned (and the job retried).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The tables that hold distinct ids' rows, and the column holding an id's hash.
///
/// `events` first and `event_changes` last: a change being applied while the job runs read its
/// event from `events` before the job reached it, so its version lands in `event_changes` only if
/// its whole application (one read, one insert) outlasts every delete of the job.
const TABLES: [(&str, &str); 6] = [
    (EVENTS_TABLE, "cityHash64(distinct_id)"),
    (EVENTS_BY_PERSON_TABLE, "person"),
    (PERSON_PROPERTY_OPS_TABLE, "id_hash"),
    (DISTINCT_ID_ACTIVITY_TABLE, "id_hash"),
    (PERSON_OVERRIDES_TABLE, "id_hash"),
    (EVENT_CHANGES_TABLE, "cityHash64(distinct_id)"),
];

#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("ClickHouse refused deleting from {table}: {source}")]
    ClickHouse { table: &'static str, source: clickhouse::error::Error },
    #[error("deleting from {table} took longer than {STATEMENT_TIMEOUT:?}")]
    Timeout { table: &'static str },
}

pub struct DeletionMetrics {
    pub done: Counter,
    pub failures: Counter,
}

impl DeletionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self { done: Counter::default(), failures: Counter::default() };
        registry.register("cairn_person_deletions_done", "Person deletion jobs completed", m.done.clone());
        registry.register(
            "cairn_person_deletions_failures",
            "Person deletion attempts that failed and will be retried",
            m.failures.clone(),
        );
        m
    }
}

pub struct DeletionWorker {
    pub pool: PgPool,
    pub clickhouse: clickhouse::Client,
    /// On a cluster, rows are deleted from the local tables of every shard (`ON CLUSTER`).
    pub topology: cairn_common::clickhouse::Topology,
    pub metrics: std::sync::Arc<DeletionMetrics>,
    pub heartbeat: Heartbeat,
    pub retry: Backoff,
    /// The delay before a deleted project's second pass.
    pub project_repeat: Duration,
}

impl DeletionWorker {
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            self.heartbeat.beat();
            let result = match self.run_pending(&stop).await {
                Ok(()) => self.run_projects(&stop).await,
                Err(e) => Err(e),
            };
            let pause = match result {
                Ok(()) => {
                    self.retry.reset();
                    POLL
                }
                Err(e) => {
                    self.metrics.failures.inc();
                    let delay = self.retry.next_delay().max(POLL);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "person deletion failed; retrying");
                    delay
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Runs pending jobs until there are none (or a shutdown).
    async fn run_pending(&mut self, stop: &CancellationToken) -> Result<(), DeletionError> {
        while !stop.is_cancelled() {
            self.heartbeat.beat();
            let mut tx = self.pool.begin().await?;
            let job: Option<(i64, i64, i64, Vec<String>)> = sqlx::query_as(
                "SELECT id, project_id, person_id, distinct_ids FROM person_deletions WHERE status = 'pending' \
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let Some((id, project, person, ids)) = job else {
                return Ok(());
            };
            match self.delete(project, person, &ids, &mut tx).await {
                Ok(()) => {
                    sqlx::query(
                        "UPDATE person_deletions SET status = 'done', finished_at = now(), attempts = attempts + 1, \
                         last_error = NULL WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    self.metrics.done.inc();
                    tracing::info!(deletion = id, project_id = project, ids = ids.len(), "person deleted");
                }
                Err(e) => {
                    tx.rollback().await?;
                    sqlx::query("UPDATE person_deletions SET attempts = attempts + 1, last_error = $2 WHERE id = $1")
                        .bind(id)
                        .bind(e.to_string())
                        .execute(&self.pool)
                        .await?;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Runs the due passes of deleted projects' jobs until there are none (or a shutdown).
    async fn run_projects(&mut self, stop: &CancellationToken) -> Result<(), DeletionError> {
        while !stop.is_cancelled() {
            self.heartbeat.beat();
            let mut tx = self.pool.begin().await?;
            let job: Option<(i64, i64, i32)> = sqlx::query_as(
                "SELECT id, project_id, passes FROM project_deletions WHERE status = 'pending' AND not_before <= now() \
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let Some((id, project, passes)) = job else {
                return Ok(());
            };
            let result = async {
                for (table, _) in TABLES {
                    self.clickhouse_delete(table, "project_id = ?", |q| q.bind(project as u64)).await?;
                }
                for statement in [
                    "DELETE FROM person_distinct_ids WHERE project_id = $1",
                    "DELETE FROM persons WHERE project_id = $1",
                    "DELETE FROM identity_decisions WHERE project_id = $1",
                    "DELETE FROM person_overrides_outbox WHERE project_id = $1",
                ] {
                    sqlx::query(statement).bind(project).execute(&mut *tx).await?;
                }
                Ok::<(), DeletionError>(())
            }
            .await;
            match result {
                Ok(()) => {
                    let last = passes + 1 >= 2;
                    sqlx::query(
                        "UPDATE project_deletions SET passes = passes + 1, attempts = attempts + 1, last_error = NULL, \
                         status = CASE WHEN $2 THEN 'done' ELSE 'pending' END, \
                         finished_at = CASE WHEN $2 THEN now() ELSE NULL END, \
                         not_before = now() + make_interval(secs => $3) WHERE id = $1",
                    )
                    .bind(id)
                    .bind(last)
                    .bind(self.project_repeat.as_secs_f64())
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    if last {
                        self.metrics.done.inc();
                    }
                    tracing::info!(
                        deletion = id,
                        project_id = project,
                        pass = passes + 1,
                        "deleted project's rows removed"
                    );
                }
                Err(e) => {
                    tx.rollback().await?;
                    sqlx::query("UPDATE project_deletions SET attempts = attempts + 1, last_error = $2 WHERE id = $1")
                        .bind(id)
                        .bind(e.to_string())
                        .execute(&self.pool)
                        .await?;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// `DELETE FROM {table} WHERE {condition}` (its `?` bound by `bind`), waited for, with
    /// liveness beats while it runs and a time limit.
    async fn clickhouse_delete(
        &self,
        table: &'static str,
        condition: &str,
        bind: impl FnOnce(clickhouse::query::Query) -> clickhouse::query::Query,
    ) -> Result<(), DeletionError> {
        let (stored_in, on_cluster) = (self.topology.storage_table(table), self.topology.on_cluster());
        let statement = bind(self.clickhouse.query(&format!("DELETE FROM {stored_in}{on_cluster} WHERE {condition}")))
            .with_setting("lightweight_deletes_sync", "2")
            .execute();
        // A delete on a large table takes a while: the loop is alive while it runs (liveness
        // beats), and a statement that never ends is abandoned and retried.
        let statement = tokio::time::timeout(STATEMENT_TIMEOUT, statement);
        tokio::pin!(statement);
        let mut beat = tokio::time::interval(Duration::from_secs(5));
        let result = loop {
            tokio::select! {
                r = &mut statement => break r,
                _ = beat.tick() => self.heartbeat.beat(),
            }
        };
        match result {
            Ok(r) => r.map_err(|source| DeletionError::ClickHouse { table, source }),
            Err(_) => Err(DeletionError::Timeout { table }),
        }
    }

    async fn delete(
        &self,
        project: i64,
        person: i64,
        ids: &[String],
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> Result<(), DeletionError> {
        let hashes: Vec<u64> = ids.iter().map(|id| cairn_persons::id_hash(id)).collect();
        for (table, hash) in TABLES {
            self.clickhouse_delete(table, &format!("project_id = ? AND {hash} IN ?"), |q| {
                q.bind(project as u64).bind(&hashes)
            })
            .await?;
        }
        // PostgreSQL: the ids, the person, and the decisions that named them.
        sqlx::query("DELETE FROM person_distinct_ids WHERE project_id = $1 AND distinct_id = ANY($2)")
            .bind(project)
            .bind(ids)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "DELETE FROM persons p WHERE p.project_id = $1 AND p.id = $2 AND NOT EXISTS \
             (SELECT 1 FROM person_distinct_ids d WHERE d.project_id = p.project_id AND d.person_id = p.id)",
        )
        .bind(project)
        .bind(person)
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM identity_decisions WHERE project_id = $1 AND (target = ANY($2) OR source = ANY($2))")
            .bind(project)
            .bind(ids)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
