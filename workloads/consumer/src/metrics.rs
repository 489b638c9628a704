//! The consumer's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// inserted or dead_lettered
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

pub struct ConsumerMetrics {
    pub events: Family<OutcomeLabels, Counter>,
    pub batches: Counter,
    pub batch_events: Histogram,
    pub insert_seconds: Histogram,
    pub insert_failures: Counter,
    /// Rows ClickHouse refused for their content (sent to the dead-letter topic).
    pub rows_refused: Counter,
    /// Dead letters that could not be written as they were (truncated) or at all (dropped).
    pub dead_letter_failures: Family<OutcomeLabels, Counter>,
    pub commit_failures: Counter,
    pub freshness_seconds: Histogram,
    pub lag: Family<PartitionLabels, Gauge>,
    pub lag_total: Gauge,
    /// Updates and deletions of stored events, by outcome: `applied`, or why not.
    pub changes: Family<OutcomeLabels, Counter>,
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            events: Family::default(),
            batches: Counter::default(),
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            insert_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            insert_failures: Counter::default(),
            rows_refused: Counter::default(),
            dead_letter_failures: Family::default(),
            commit_failures: Counter::default(),
            freshness_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            lag: Family::default(),
            lag_total: Gauge::default(),
            changes: Family::default(),
        };
        registry.register("cairn_consumer_events", "Events handled, by outcome", m.events.clone());
        registry.register("cairn_consumer_batches", "Batches made durable and committed", m.batches.clone());
        registry.register("cairn_consumer_batch_events", "Records per batch", m.batch_events.clone());
        registry.register(
            "cairn_consumer_insert_duration_seconds",
            "Time of one successful ClickHouse insert",
            m.insert_seconds.clone(),
        );
        registry.register(
            "cairn_consumer_insert_failures",
            "ClickHouse inserts that failed and were retried",
            m.insert_failures.clone(),
        );
        registry.register(
            "cairn_consumer_rows_refused",
            "Rows ClickHouse refused for their content, isolated and sent to the dead-letter topic",
            m.rows_refused.clone(),
        );
        registry.register(
            "cairn_consumer_dead_letter_failures",
            "Dead letters Kafka would not take as they were: truncated, or dropped after that failed too",
            m.dead_letter_failures.clone(),
        );
        registry.register(
            "cairn_consumer_commit_failures",
            "Offset commits that failed (the records will be redelivered)",
            m.commit_failures.clone(),
        );
        registry.register(
            "cairn_consumer_freshness_seconds",
            "Time from capture receiving the oldest event of a batch to the batch being stored",
            m.freshness_seconds.clone(),
        );
        registry.register("cairn_consumer_lag", "Records not yet consumed, per assigned partition", m.lag.clone());
        registry.register(
            "cairn_consumer_lag_total",
            "Records not yet consumed over every assigned partition",
            m.lag_total.clone(),
        );
        registry.register(
            "cairn_consumer_event_changes",
            "Updates and deletions of stored events, by outcome (applied, unknown_event, already_applied, deleted)",
            m.changes.clone(),
        );
        m
    }

    pub fn count(&self, outcome: &'static str, n: usize) {
        if n > 0 {
            self.events.get_or_create(&OutcomeLabels { outcome }).inc_by(n as u64);
        }
    }
}
