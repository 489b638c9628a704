//! Inserting a batch into ClickHouse: retried with exponential backoff (full jitter) while ClickHouse is
//! unavailable; split in halves when ClickHouse refuses the rows themselves, until the rows it
//! refuses are alone and can go to the dead-letter topic (everything else is inserted).

use std::time::{Duration, Instant};

use cairn_common::clickhouse::{ChangeRow, EventRow, EVENTS_TABLE, EVENT_CHANGES_TABLE};
pub use cairn_common::retry::Backoff;
use cairn_common::telemetry::{Health, Heartbeat};
use clickhouse::Client;
use tokio_util::sync::CancellationToken;

use crate::metrics::ConsumerMetrics;

/// The readiness check that ClickHouse reports into.
pub const CLICKHOUSE_CHECK: &str = "clickhouse";

pub struct Writer {
    pub client: Client,
    pub health: Health,
    pub backoff: Backoff,
    /// One insert's limit; then it is abandoned and retried (same token: deduplicated).
    pub timeout: Duration,
    /// The consume loop's liveness: every attempt is progress, an outage is not a stall.
    pub heartbeat: Heartbeat,
}

/// A row the consumer inserts: a captured event (into `events`) or a changed event's version
/// (into `event_changes`).
pub trait Stored: clickhouse::RowOwned + clickhouse::RowWrite + Send + Sync {
    const TABLE: &'static str;
    fn uuid(&self) -> uuid::Uuid;
}

impl Stored for EventRow {
    const TABLE: &'static str = EVENTS_TABLE;
    fn uuid(&self) -> uuid::Uuid {
        self.uuid
    }
}

impl Stored for ChangeRow {
    const TABLE: &'static str = EVENT_CHANGES_TABLE;
    fn uuid(&self) -> uuid::Uuid {
        self.uuid
    }
}

/// Why a batch was not inserted.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("shutting down before ClickHouse accepted the batch (last error: {0})")]
    GaveUp(String),
}

/// ClickHouse error codes that say the rows themselves are wrong for the table (a parse error,
/// a type mismatch, a violated constraint): the same insert fails the same way every time, so it
/// is not retried as an outage but split to find the rows at fault.
const ROW_ERRORS: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    376, // CANNOT_PARSE_UUID
    469, // VIOLATED_CONSTRAINT
    691, // UNKNOWN_ELEMENT_OF_ENUM
];

/// The ClickHouse error code in an error's text (`Code: 469. DB::Exception: …`).
pub fn clickhouse_code(error: &clickhouse::error::Error) -> Option<u32> {
    let text = error.to_string();
    let rest = &text[text.find("Code: ")? + 6..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Whether ClickHouse refused the rows themselves (not: it is unavailable).
pub fn refuses_the_rows(error: &clickhouse::error::Error) -> bool {
    clickhouse_code(error).is_some_and(|c| ROW_ERRORS.contains(&c))
}

/// What became of a batch: the indexes of rows ClickHouse refused, with why.
#[derive(Debug, Default, PartialEq)]
pub struct Inserted {
    pub refused: Vec<(usize, String)>,
}

impl Writer {
    /// Inserts `rows` with `token` as the deduplication token, retrying until it succeeds. After
    /// `stop` is cancelled it keeps trying for `grace`, then gives up (the batch's offsets are not
    /// committed, so Kafka redelivers it). Rows that ClickHouse refuses for what they are, rather
    /// than because it is unavailable, are isolated by splitting the batch in halves (each half
    /// with a token derived from the batch's, so a redelivered batch splits and deduplicates the
    /// same way) and returned; every other row is inserted.
    #[tracing::instrument(name = "insert", skip_all, fields(rows = rows.len(), token = %token))]
    pub async fn insert<T: Stored>(
        &mut self,
        rows: &[T],
        token: &str,
        stop: &CancellationToken,
        grace: Duration,
        metrics: &ConsumerMetrics,
    ) -> Result<Inserted, WriteError> {
        let mut out = Inserted::default();
        // Ranges still to insert: (offset into rows, length, token).
        let mut pending: Vec<(usize, usize, String)> = vec![(0, rows.len(), token.to_string())];
        while let Some((start, len, token)) = pending.pop() {
            if len == 0 {
                continue;
            }
            match self.insert_range(&rows[start..start + len], &token, stop, grace, metrics).await? {
                None => {}
                Some(refusal) if len == 1 => {
                    metrics.rows_refused.inc();
                    tracing::warn!(table = T::TABLE, uuid = %rows[start].uuid(), reason = %refusal, "ClickHouse refuses this row; it goes to the dead-letter topic");
                    out.refused.push((start, refusal));
                }
                Some(refusal) => {
                    tracing::warn!(rows = len, reason = %refusal, "ClickHouse refuses some rows of the batch; splitting it to find them");
                    let half = len / 2;
                    pending.push((start + half, len - half, format!("{token}/R")));
                    pending.push((start, half, format!("{token}/L")));
                }
            }
        }
        out.refused.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    /// One insert, retried while ClickHouse is unavailable. `Some(reason)` when it refuses the
    /// rows themselves.
    async fn insert_range<T: Stored>(
        &mut self,
        rows: &[T],
        token: &str,
        stop: &CancellationToken,
        grace: Duration,
        metrics: &ConsumerMetrics,
    ) -> Result<Option<String>, WriteError> {
        let mut give_up_at: Option<Instant> = None;
        loop {
            self.heartbeat.beat();
            let started = Instant::now();
            let attempt = match tokio::time::timeout(self.timeout, self.try_insert(rows, token)).await {
                Ok(result) => result,
                Err(_) => Err(clickhouse::error::Error::TimedOut),
            };
            match attempt {
                Ok(()) => {
                    metrics.insert_seconds.observe(started.elapsed().as_secs_f64());
                    self.health.set(CLICKHOUSE_CHECK, true, "inserting");
                    self.backoff.reset();
                    return Ok(None);
                }
                Err(e) if refuses_the_rows(&e) => {
                    // ClickHouse is up and answering; it is the rows.
                    self.health.set(CLICKHOUSE_CHECK, true, "inserting");
                    return Ok(Some(e.to_string()));
                }
                Err(e) => {
                    metrics.insert_failures.inc();
                    self.health.set(CLICKHOUSE_CHECK, false, e.to_string());
                    let delay = self.backoff.next_delay();
                    tracing::warn!(error = %e, rows = rows.len(), retry_in_ms = delay.as_millis() as u64, "ClickHouse insert failed; retrying");
                    if stop.is_cancelled() {
                        let deadline = *give_up_at.get_or_insert_with(|| Instant::now() + grace);
                        if Instant::now() + delay > deadline {
                            return Err(WriteError::GaveUp(e.to_string()));
                        }
                        tokio::time::sleep(delay).await;
                    } else {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = stop.cancelled() => {}
                        }
                    }
                }
            }
        }
    }

    async fn try_insert<T: Stored>(&self, rows: &[T], token: &str) -> Result<(), clickhouse::error::Error> {
        // No limit on the partitions (months) one insert may touch: capture accepts any time
        // since 1970, and ClickHouse's default limit of 100 would refuse such a batch on every
        // retry, stopping the consumer for good.
        let client = self
            .client
            .clone()
            .with_setting("insert_deduplication_token", token)
            .with_setting("max_partitions_per_insert_block", "0");
        let mut insert = client.insert::<T>(T::TABLE).await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_errors_are_told_from_outages() {
        let refused = clickhouse::error::Error::BadResponse(
            "Code: 469. DB::Exception: Constraint `c` for table cairn.events is violated at row 3. (VIOLATED_CONSTRAINT)".into(),
        );
        assert_eq!(clickhouse_code(&refused), Some(469));
        assert!(refuses_the_rows(&refused));
        let full = clickhouse::error::Error::BadResponse(
            "Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)".into(),
        );
        assert!(!refuses_the_rows(&full), "too many parts passes: retry");
        assert!(!refuses_the_rows(&clickhouse::error::Error::TimedOut));
    }
}
