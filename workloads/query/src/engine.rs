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
    /// A query job's id, set on every statement in ClickHouse's `log_comment` (see
    /// [`log_comment`]): what the job's progress is read by (`system.processes`) and its
    /// statements are cancelled by.
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

/// What a statement tells ClickHouse in its `log_comment` setting, kept in `system.processes`
/// and `system.query_log`: a JSON object with the query job's id (`job`), and the event
/// properties it parses out of the JSON (`properties`, those that could be columns), from which
/// the operator chooses the properties to make columns
/// (`cairn_common::clickhouse::property_usage`). None when there is nothing to say.
pub fn log_comment(job: Option<&str>, sql: &Sql) -> Option<String> {
    let properties: Vec<&str> = sql.parsed().filter(|k| cairn_common::clickhouse::materialisable(k)).collect();
    if job.is_none() && properties.is_empty() {
        return None;
    }
    let mut comment = serde_json::Map::new();
    if let Some(job) = job {
        comment.insert("job".into(), job.into());
    }
    if !properties.is_empty() {
        comment.insert("properties".into(), properties.into());
    }
    Some(serde_json::Value::Object(comment).to_string())
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
        if let Some(comment) = log_comment(self.comment.as_deref(), sql) {
            q = q.with_setting("log_comment", comment);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_comment_names_the_job_and_the_properties_parsed() {
        let mut sql = Sql::new();
        assert_eq!(log_comment(None, &sql), None);
        sql.note_parsed("$browser");
        sql.note_parsed("it's");
        sql.note_parsed("$browser");
        sql.note_parsed("plan");
        // Keys that could never be columns are not named.
        assert_eq!(log_comment(None, &sql).as_deref(), Some(r#"{"properties":["$browser","plan"]}"#));
        assert_eq!(
            log_comment(Some("cairn-job:7"), &sql).as_deref(),
            Some(r#"{"job":"cairn-job:7","properties":["$browser","plan"]}"#)
        );
        assert_eq!(log_comment(Some("cairn-job:7"), &Sql::new()).as_deref(), Some(r#"{"job":"cairn-job:7"}"#));
    }
}
