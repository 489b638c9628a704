//! Inserting a batch into ClickHouse, retried with exponential backoff until it succeeds.

use std::time::{Duration, Instant};

use cairn_common::clickhouse::{EventRow, EVENTS_TABLE};
use cairn_common::telemetry::Health;
use clickhouse::Client;
use tokio_util::sync::CancellationToken;

use crate::metrics::ConsumerMetrics;

/// The readiness check that ClickHouse reports into.
pub const CLICKHOUSE_CHECK: &str = "clickhouse";

/// Exponential backoff between `initial` and `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, initial, max }
    }

    /// The pause before the next attempt; each call doubles the following one, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

pub struct Writer {
    pub client: Client,
    pub health: Health,
    pub backoff: Backoff,
}

/// Why a batch was not inserted.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("shutting down before ClickHouse accepted the batch (last error: {0})")]
    GaveUp(String),
}

impl Writer {
    /// Inserts `rows` with `token` as the deduplication token, retrying until it succeeds. After
    /// `stop` is cancelled it keeps trying for `grace`, then gives up (the batch's offsets are not
    /// committed, so Kafka redelivers it).
    pub async fn insert(
        &mut self,
        rows: &[EventRow],
        token: &str,
        stop: &CancellationToken,
        grace: Duration,
        metrics: &ConsumerMetrics,
    ) -> Result<(), WriteError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut give_up_at: Option<Instant> = None;
        loop {
            let started = Instant::now();
            match self.try_insert(rows, token).await {
                Ok(()) => {
                    metrics.insert_seconds.observe(started.elapsed().as_secs_f64());
                    self.health.set(CLICKHOUSE_CHECK, true, "inserting");
                    self.backoff.reset();
                    return Ok(());
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

    async fn try_insert(&self, rows: &[EventRow], token: &str) -> Result<(), clickhouse::error::Error> {
        // No limit on the partitions (months) one insert may touch: capture accepts any time
        // since 1970, and ClickHouse's default limit of 100 would refuse such a batch on every
        // retry, stopping the consumer for good.
        let client = self
            .client
            .clone()
            .with_setting("insert_deduplication_token", token)
            .with_setting("max_partitions_per_insert_block", "0");
        let mut insert = client.insert::<EventRow>(EVENTS_TABLE).await?;
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
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        assert_eq!(b.next_delay(), Duration::from_millis(350));
        assert_eq!(b.next_delay(), Duration::from_millis(350));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
