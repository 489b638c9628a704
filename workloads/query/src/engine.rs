//! What every analysis needs: the ClickHouse client, where the events are read from, the
//! request limits and the time limit, and one way to run a statement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_common::http::ApiError;
use clickhouse::RowOwned;
use clickhouse::RowRead;

use crate::config::Limits;
use crate::sql::{with_timeout, EventsSource, Sql};

#[derive(Clone)]
pub struct Engine {
    pub ch: clickhouse::Client,
    pub source: EventsSource,
    pub limits: Limits,
    pub timeout: Duration,
    /// Whether `events_by_person` holds every event (false while its backfill runs).
    pub by_person: ByPersonReady,
    /// Which projects have changed events (`event_changes`).
    pub changed: crate::event_changes::ChangedProjects,
    /// Set on every statement as ClickHouse's `log_comment` (a query job's id): what the job's
    /// progress is read by (`system.processes`) and its statements are cancelled by.
    pub comment: Option<Arc<str>>,
}

/// Whether `events_by_person` may be read: its migration's copy of the events stored before it
/// (a backfill the operator runs apart) is done. Until then funnels read `events`, so their
/// answers never miss the older events.
#[derive(Clone, Debug)]
pub struct ByPersonReady(Arc<AtomicBool>);

impl Default for ByPersonReady {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl ByPersonReady {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Asks ClickHouse whether the copy is pending (`cairn_backfills`).
    pub async fn refresh(&self, ch: &clickhouse::Client) -> Result<bool, clickhouse::error::Error> {
        let exists: u64 = ch
            .query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?")
            .bind(cairn_common::clickhouse::BACKFILLS_TABLE)
            .fetch_one()
            .await?;
        let pending: u64 = if exists == 0 {
            0
        } else {
            ch.query(&format!(
                "SELECT count() FROM {} FINAL WHERE name = 'events_by_person' AND state != 'done'",
                cairn_common::clickhouse::BACKFILLS_TABLE
            ))
            .fetch_one()
            .await?
        };
        self.set(pending == 0);
        Ok(pending == 0)
    }
}

impl Engine {
    /// `sql` with the settings every statement runs under: ClickHouse is told the time limit
    /// too, so a query that times out here does not keep running there.
    fn prepared(&self, sql: &Sql) -> clickhouse::query::Query {
        let secs = self.timeout.as_secs_f64().ceil().max(1.0) as u64;
        // What one statement may cost, and that it may only read (readonly=2 still lets these
        // settings be given): a statement cannot starve the server or write, whatever it is.
        let mut q = sql
            .query(&self.ch)
            .with_setting("max_execution_time", secs.to_string())
            .with_setting("max_memory_usage", self.limits.max_memory_bytes.to_string())
            .with_setting("max_rows_to_read", self.limits.max_rows_to_read.to_string())
            .with_setting("readonly", "2");
        if let Some(comment) = &self.comment {
            q = q.with_setting("log_comment", comment.to_string());
        }
        if self.source.read_final {
            // Duplicates of an event share its timestamp, hence its (monthly) partition: FINAL
            // never needs to merge across partitions, and skips partitions already merged to
            // one part. Makes FINAL nearly free on a merged table.
            q = q.with_setting("do_not_merge_across_partitions_select_final", "1");
        }
        q
    }

    /// Runs `sql` and reads every row.
    pub async fn fetch_all<T>(&self, sql: &Sql) -> Result<Vec<T>, ApiError>
    where
        T: RowOwned + RowRead,
    {
        let result = with_timeout(self.timeout, self.prepared(sql).fetch_all::<T>()).await;
        if let Err(e) = &result {
            // The statement holds placeholders only, never request data: safe to log.
            tracing::warn!(status = e.status.as_u16(), sql = sql.text(), "statement failed");
        }
        result
    }

    /// Runs `sql` with extra `settings` and reads its whole answer in `format` (e.g.
    /// `JSONCompact`). The caller bounds its size (`max_result_bytes`, `max_result_rows`) and
    /// judges ClickHouse's errors (the inner result); the outer error is the time limit.
    pub async fn fetch_bytes(
        &self,
        sql: &Sql,
        format: &str,
        settings: &[(&str, String)],
    ) -> Result<Result<bytes::Bytes, clickhouse::error::Error>, ApiError> {
        let mut q = self.prepared(sql);
        for (name, value) in settings {
            q = q.with_setting(*name, value.clone());
        }
        let read = async move { q.fetch_bytes(format)?.collect().await };
        tokio::time::timeout(self.timeout, read).await.map_err(|_| crate::sql::timed_out(self.timeout))
    }

    /// Runs `sql` and answers its output in `format` as it comes (an export); ClickHouse stops
    /// at `max_execution_time` (this engine's timeout), the caller bounds the rows.
    pub fn stream_bytes(
        &self,
        sql: &Sql,
        format: &str,
    ) -> Result<clickhouse::query::BytesCursor, clickhouse::error::Error> {
        self.prepared(sql).fetch_bytes(format)
    }

    /// An engine for unit tests that build statements (it is never connected).
    #[cfg(test)]
    pub fn for_tests() -> Self {
        Engine {
            ch: clickhouse::Client::default(),
            source: EventsSource::new(true),
            limits: Limits::default(),
            timeout: Duration::from_secs(5),
            by_person: ByPersonReady::default(),
            changed: Default::default(),
            comment: None,
        }
    }
}
