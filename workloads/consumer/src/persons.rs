//! The persons pipeline: identity events (`$identify`, `$create_alias`, `$merge_dangerously`)
//! decided in PostgreSQL, and the distinct ids they moved copied into ClickHouse's
//! `person_overrides`.
//!
//! It reads the events topic in a consumer group of its own (`<CAIRN_CONSUMER_GROUP>-persons`),
//! so that PostgreSQL being down delays persons and never the events' inserts. A batch of records
//! is decided in one transaction ([`cairn_persons::store::decide_batch`]), the outbox is copied to
//! ClickHouse, and only then are the batch's offsets committed: a crash anywhere redelivers the
//! batch, whose decisions are found recorded by event and not made twice, and whose overrides
//! still wait in the outbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::clickhouse::{PersonOverrideRow, PERSON_OVERRIDES_TABLE};
use cairn_common::event::CapturedEvent;
use cairn_common::retry::Backoff;
use cairn_common::telemetry::{Health, Heartbeat};
use cairn_persons::identity::identity_op;
use cairn_persons::store::{self, IdentityEvent, StoreError};
use memchr::memmem;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::pipeline::{sleep_until, EventConsumer};

/// The readiness check PostgreSQL reports into (only when persons are on).
pub const POSTGRES_CHECK: &str = "postgres";

/// How many outbox rows one ClickHouse insert carries.
const OUTBOX_CHUNK: i64 = 10_000;

/// The consumer group of the persons pipeline, derived from the events pipeline's.
pub fn group_of(events_group: &str) -> String {
    format!("{events_group}-persons")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// unchanged, illegal_id, identify, join, merge, refused, or replayed
    pub decision: String,
}

pub struct PersonsMetrics {
    pub decisions: Family<DecisionLabels, Counter>,
    pub overrides: Counter,
    pub records: Counter,
    pub failures: Counter,
}

impl PersonsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            decisions: Family::default(),
            overrides: Counter::default(),
            records: Counter::default(),
            failures: Counter::default(),
        };
        registry.register(
            "cairn_persons_identity_events",
            "Identity events decided, by decision (replayed: decided before, not again)",
            m.decisions.clone(),
        );
        registry.register(
            "cairn_persons_overrides_written",
            "Moved distinct ids copied to ClickHouse's person_overrides",
            m.overrides.clone(),
        );
        registry.register("cairn_persons_records", "Records the persons pipeline read", m.records.clone());
        registry.register(
            "cairn_persons_failures",
            "Attempts to store decisions or overrides that failed and were retried",
            m.failures.clone(),
        );
        m
    }
}

/// Whether a record may hold an identity event: a byte search that skips parsing the others
/// (capture writes event names unescaped; a match is parsed and checked).
fn may_be_identity(payload: &[u8]) -> bool {
    ["\"$identify\"", "\"$create_alias\"", "\"$merge_dangerously\""]
        .iter()
        .any(|needle| memmem::find(payload, needle.as_bytes()).is_some())
}

/// The identity event a record holds, if any.
pub fn identity_event(payload: &[u8]) -> Option<IdentityEvent> {
    if !may_be_identity(payload) {
        return None;
    }
    // A record that is not an event is the events pipeline's to dead-letter; here it is skipped.
    let event: CapturedEvent = serde_json::from_slice(payload).ok()?;
    let op = identity_op(&event)?;
    Some(IdentityEvent { project_id: event.project_id, uuid: event.uuid, timestamp: event.timestamp, op })
}

#[derive(Default)]
struct Pending {
    events: Vec<IdentityEvent>,
    /// (topic, partition) → the last offset read.
    offsets: BTreeMap<(String, i32), i64>,
    records: usize,
    started: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum PersonsError {
    #[error("shutting down before the persons batch was stored: {0}")]
    Unfinished(String),
}

pub struct PersonsPipeline {
    pub consumer: Arc<EventConsumer>,
    pub pool: PgPool,
    pub clickhouse: clickhouse::Client,
    pub health: Health,
    pub metrics: Arc<PersonsMetrics>,
    pub batch_max_records: usize,
    pub batch_max_age: Duration,
    pub shutdown_grace: Duration,
    pub retry: Backoff,
    pub heartbeat: Heartbeat,
}

impl PersonsPipeline {
    /// Consumes until `stop`; then stores and commits the current batch and returns.
    pub async fn run(mut self, stop: CancellationToken) -> Result<(), PersonsError> {
        let mut pending = Pending::default();
        let beat_every = self.heartbeat.interval();
        // Overrides a previous run decided but did not copy.
        self.flush(&mut pending, &stop).await?;
        loop {
            self.heartbeat.beat();
            let deadline = pending.started.map(|s| s + self.batch_max_age);
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    self.flush(&mut pending, &stop).await?;
                    return Ok(());
                }
                _ = sleep_until(deadline) => self.flush(&mut pending, &stop).await?,
                message = self.consumer.recv() => match message {
                    Ok(m) => {
                        pending.started.get_or_insert_with(Instant::now);
                        pending.records += 1;
                        pending.offsets.insert((m.topic().to_string(), m.partition()), m.offset());
                        if let Some(e) = m.payload().and_then(identity_event) {
                            pending.events.push(e);
                        }
                        if pending.records >= self.batch_max_records {
                            self.flush(&mut pending, &stop).await?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka consume error (persons)");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = tokio::time::sleep(beat_every) => {}
            }
        }
    }

    /// Decides the batch's identity events, copies the outbox, commits the batch's offsets.
    async fn flush(&mut self, pending: &mut Pending, stop: &CancellationToken) -> Result<(), PersonsError> {
        let p = std::mem::take(pending);
        let span = tracing::info_span!("persons_batch", records = p.records, identity_events = p.events.len());
        self.store_and_commit(p, stop).instrument(span).await
    }

    async fn store_and_commit(&mut self, p: Pending, stop: &CancellationToken) -> Result<(), PersonsError> {
        let mut give_up_at: Option<Instant> = None;
        loop {
            self.heartbeat.beat();
            match self.store(&p.events).await {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.failures.inc();
                    self.health.set(POSTGRES_CHECK, false, e.to_string());
                    let delay = self.retry.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot store identity decisions yet");
                    if stop.is_cancelled() {
                        let deadline = *give_up_at.get_or_insert_with(|| Instant::now() + self.shutdown_grace);
                        if Instant::now() + delay > deadline {
                            return Err(PersonsError::Unfinished(e.to_string()));
                        }
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
        self.retry.reset();
        self.metrics.records.inc_by(p.records as u64);
        self.commit(&p.offsets);
        Ok(())
    }

    async fn store(&mut self, events: &[IdentityEvent]) -> Result<(), FlushError> {
        if !events.is_empty() {
            let decided = store::decide_batch(&self.pool, events).await?;
            for d in &decided {
                let decision = if d.replayed { "replayed".to_string() } else { d.decision.clone() };
                self.metrics.decisions.get_or_create(&DecisionLabels { decision }).inc();
            }
            tracing::debug!(decided = decided.len(), "identity events decided");
        }
        self.health.set(POSTGRES_CHECK, true, "identity decisions stored");
        // The outbox: what this batch moved, and anything an earlier run left.
        loop {
            self.heartbeat.beat();
            let rows = store::outbox_take(&self.pool, OUTBOX_CHUNK).await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut insert = self.clickhouse.insert::<PersonOverrideRow>(PERSON_OVERRIDES_TABLE).await?;
            for o in &rows {
                insert
                    .write(&PersonOverrideRow {
                        project_id: o.project_id,
                        id_hash: o.id_hash,
                        person_id: o.person_id,
                        version: o.version,
                    })
                    .await?;
            }
            insert.end().await?;
            store::outbox_done(&self.pool, &rows).await?;
            self.metrics.overrides.inc_by(rows.len() as u64);
        }
    }

    fn commit(&self, offsets: &BTreeMap<(String, i32), i64>) {
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in offsets {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(offset + 1)) {
                tracing::warn!(error = %e, "cannot build the offset list");
            }
        }
        let consumer = Arc::clone(&self.consumer);
        if let Err(e) = tokio::task::block_in_place(|| consumer.commit(&tpl, CommitMode::Sync)) {
            // Decisions are recorded by event: a redelivered batch changes nothing.
            tracing::warn!(error = %e, "persons offset commit failed; the batch will be redelivered");
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum FlushError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot copy person overrides to ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str, distinct_id: &str, properties: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "uuid": "0190a4b4-1111-7000-8000-000000000001",
            "project_id": 7,
            "event": event,
            "distinct_id": distinct_id,
            "properties": properties,
            "timestamp": "2026-12-01T10:00:00Z",
            "received_at": "2026-12-01T10:00:01Z",
        }))
        .unwrap_or_default()
    }

    #[test]
    fn finds_identity_events_and_skips_the_rest() {
        let e = identity_event(&record("$identify", "user-1", serde_json::json!({"$anon_distinct_id": "anon-1"})));
        let e = e.expect("an identify event");
        assert_eq!((e.project_id, e.op.target.as_str(), e.op.source.as_deref()), (7, "user-1", Some("anon-1")));
        assert!(identity_event(&record("$create_alias", "user-1", serde_json::json!({"alias": "a"}))).is_some());
        // Named in a property only: not an identity event.
        assert!(identity_event(&record("$pageview", "u", serde_json::json!({"x": "$identify"}))).is_none());
        assert!(identity_event(&record("$pageview", "u", serde_json::json!({}))).is_none());
        assert!(identity_event(b"{\"event\": \"$identify\"").is_none());
        assert_eq!(group_of("cairn-demo"), "cairn-demo-persons");
    }
}
