//! Where accepted events go: Kafka, acknowledged by every in-sync replica before capture answers.
//!
//! All or nothing, as far as Kafka allows: every event of a request is encoded and checked
//! against the largest record (`CAIRN_KAFKA_MESSAGE_MAX_BYTES`) before the first is produced, and
//! a request is refused up front (503) when the producer's queue could not take all of it. What
//! can still fail part-way is delivery itself (a broker lost mid-request): then some events of the
//! batch may be in Kafka although the request answered 503. They carry the uuid each event got
//! at capture (the client's, or a v7 uuid assigned before the first attempt), and the events
//! table collapses rows with the same uuid (ReplacingMergeTree), so an SDK that retries the
//! batch with its uuids leaves each event once. Kafka transactions would make the batch atomic
//! in Kafka too, at the price of a transactional producer per capture replica and read-committed
//! consumers; the uuids make that unnecessary for what Cairn stores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cairn_common::config::KafkaConfig;
use cairn_common::event::CapturedEvent;
use cairn_common::kafka::{client_config, is_connectivity_error, probe_topic};
use cairn_common::telemetry::{spawn_probe, Health};
use cairn_common::trace;
use futures::future::join_all;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::metrics::CaptureMetrics;

/// The readiness check that Kafka reports into.
pub const KAFKA_CHECK: &str = "kafka";

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("Kafka is unavailable: {0}")]
    Unavailable(String),
    #[error("Kafka did not acknowledge the events within {0:?}")]
    Timeout(Duration),
    #[error("the producer's queue is full")]
    QueueFull,
    #[error("Kafka refused the events: {0}")]
    Refused(String),
    #[error("cannot encode an event: {0}")]
    Encode(String),
    #[error("event {index} is {bytes} bytes as a Kafka record, more than the largest record ({limit} bytes)")]
    TooLarge { index: usize, bytes: usize, limit: usize },
}

/// Something that durably accepts validated events.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Returns once every event is durable, or an error if any may not be. `request_id` names
    /// the request that brought them (carried on each record, see `cairn_common::trace`).
    async fn send(&self, events: Vec<CapturedEvent>, request_id: Option<&str>) -> Result<(), SinkError>;
}

/// Turns librdkafka's client-level errors into readiness.
pub struct HealthContext {
    health: Health,
}

impl ClientContext for HealthContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_connectivity_error(&error) {
            self.health.set(KAFKA_CHECK, false, format!("{error}: {reason}"));
        } else {
            tracing::warn!(%error, reason, "kafka client error");
        }
    }
}

/// Messages the producer may hold before Kafka has them.
const QUEUE_CAPACITY: usize = 1_000_000;

pub struct KafkaSink {
    producer: FutureProducer<HealthContext>,
    topic: String,
    /// The largest record (key + value), as the topic and the producer allow.
    max_record_bytes: usize,
    /// The producer queue's capacity in messages.
    queue_capacity: usize,
    ack_timeout: Duration,
    health: Health,
    metrics: Arc<CaptureMetrics>,
    /// Requests whose deliveries all resolved (acknowledged or failed): the liveness signal.
    resolved: std::sync::atomic::AtomicU64,
    /// Whether records carry the request id and trace context (`CAIRN_CAPTURE_RECORD_HEADERS`).
    record_headers: bool,
}

impl KafkaSink {
    pub fn new(
        cfg: &KafkaConfig,
        ack_timeout: Duration,
        linger: Duration,
        record_headers: bool,
        health: Health,
        metrics: Arc<CaptureMetrics>,
    ) -> Result<Self, KafkaError> {
        let mut c = client_config(cfg);
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", linger.as_millis().to_string())
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", QUEUE_CAPACITY.to_string())
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.timeout.ms", ack_timeout.as_millis().max(1).to_string())
            .set("request.timeout.ms", ack_timeout.as_millis().clamp(1, 30_000).to_string())
            .set("reconnect.backoff.max.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "10000");
        let producer = c.create_with_context(HealthContext { health: health.clone() })?;
        health.register(KAFKA_CHECK);
        Ok(Self {
            producer,
            topic: cfg.topic.clone(),
            max_record_bytes: cfg.message_max_bytes,
            queue_capacity: QUEUE_CAPACITY,
            ack_timeout,
            health,
            metrics,
            resolved: std::sync::atomic::AtomicU64::new(0),
            record_headers,
        })
    }

    /// Probes the cluster until `stop` (see [`spawn_probe`]).
    pub fn spawn_health_probe(self: &Arc<Self>, stop: CancellationToken) {
        let sink = Arc::clone(self);
        spawn_probe(self.health.clone(), KAFKA_CHECK, stop, move || {
            probe_topic(sink.producer.client(), &sink.topic, Duration::from_secs(2))
                .map(|n| format!("topic {} has {n} partitions", sink.topic))
        });
    }

    /// Liveness of the producer: a component with `deadline` that beats while the producer makes
    /// progress (its queue empties or shrinks). Every queued message resolves within the ack
    /// timeout — delivered, or failed when the brokers are away — so a queue that holds messages
    /// and never shrinks for `deadline` means librdkafka is wedged: `/healthz` fails and the pod
    /// is restarted. A broker that is down is not a stall (messages fail and leave the queue);
    /// readiness says Kafka is missing.
    pub fn spawn_liveness(self: &Arc<Self>, deadline: Duration, stop: CancellationToken) {
        let heartbeat = self.health.liveness("kafka producer", deadline);
        let sink = Arc::clone(self);
        tokio::spawn(async move {
            let mut progress = Progress::default();
            let every = (deadline / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
            loop {
                let resolved = sink.resolved.load(std::sync::atomic::Ordering::Relaxed);
                if progress.observe(sink.producer.in_flight_count().max(0) as u64, resolved) {
                    heartbeat.beat();
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }

    /// Waits up to `timeout` for queued messages to be delivered (on shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "kafka producer flush did not complete");
        }
    }
}

#[async_trait]
impl EventSink for KafkaSink {
    async fn send(&self, events: Vec<CapturedEvent>, request_id: Option<&str>) -> Result<(), SinkError> {
        if !self.health.check(KAFKA_CHECK) {
            return Err(SinkError::Unavailable("the cluster is not reachable".into()));
        }
        // Encode and size-check every event before the first is produced.
        let mut records = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let payload = serde_json::to_vec(event).map_err(|e| SinkError::Encode(e.to_string()))?;
            let key = event.kafka_key();
            let bytes = payload.len() + key.len();
            if bytes > self.max_record_bytes {
                return Err(SinkError::TooLarge { index, bytes, limit: self.max_record_bytes });
            }
            records.push((key, payload));
        }
        if self.producer.in_flight_count().max(0) as usize + records.len() > self.queue_capacity {
            return Err(SinkError::QueueFull);
        }
        let started = Instant::now();
        // The request's id and trace (the latter only when exporting), for dead letters and the
        // consumer's batch span. Headers cost librdkafka work per record (measured: 0.7 µs of
        // capture CPU per event), which CAIRN_CAPTURE_RECORD_HEADERS=false saves.
        let (request_id, traceparent) =
            if self.record_headers { (request_id, trace::current_traceparent()) } else { (None, None) };
        let mut deliveries = Vec::with_capacity(records.len());
        for (index, (key, payload)) in records.iter().enumerate() {
            let mut record = FutureRecord::to(&self.topic).key(key).payload(payload);
            if request_id.is_some() || traceparent.is_some() {
                let mut headers = OwnedHeaders::new_with_capacity(2);
                if let Some(id) = request_id {
                    headers = headers.insert(Header { key: trace::KAFKA_HEADER, value: Some(id) });
                }
                if let Some(tp) = &traceparent {
                    headers = headers.insert(Header { key: trace::TRACEPARENT, value: Some(tp) });
                }
                record = record.headers(headers);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => {
                    return Err(match e.rdkafka_error_code() {
                        Some(RDKafkaErrorCode::QueueFull) => SinkError::QueueFull,
                        Some(RDKafkaErrorCode::MessageSizeTooLarge) => SinkError::TooLarge {
                            index,
                            bytes: payload.len() + key.len(),
                            limit: self.max_record_bytes,
                        },
                        _ => SinkError::Refused(e.to_string()),
                    })
                }
            }
        }
        // message.timeout.ms bounds each delivery; the outer timeout is a safety net.
        let all = tokio::time::timeout(self.ack_timeout + Duration::from_secs(2), join_all(deliveries))
            .await
            .map_err(|_| SinkError::Timeout(self.ack_timeout))?;
        self.resolved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (index, result) in all.into_iter().enumerate() {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) {
                        let bytes = records.get(index).map(|(k, p)| k.len() + p.len()).unwrap_or(0);
                        return Err(SinkError::TooLarge { index, bytes, limit: self.max_record_bytes });
                    }
                    if is_connectivity_error(&e) || e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) {
                        return Err(SinkError::Timeout(self.ack_timeout));
                    }
                    return Err(SinkError::Refused(e.to_string()));
                }
                Err(_canceled) => return Err(SinkError::Unavailable("the producer was shut down".into())),
            }
        }
        self.metrics.kafka_ack_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// Whether a producer is making progress, from samples of its queue's length and of the number
/// of requests whose deliveries all resolved: an empty queue, a shorter one than at the last
/// sample, or a request resolved since then is progress; a queue that holds messages while nothing
/// resolves is not.
#[derive(Debug, Default)]
pub struct Progress {
    last_in_flight: Option<u64>,
    last_resolved: u64,
}

impl Progress {
    /// Records a sample; true when it shows progress.
    pub fn observe(&mut self, in_flight: u64, resolved: u64) -> bool {
        let moved =
            in_flight == 0 || self.last_in_flight.is_some_and(|last| in_flight < last) || resolved > self.last_resolved;
        self.last_in_flight = Some(in_flight);
        self.last_resolved = resolved;
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_queue_that_never_shrinks_is_stuck() {
        let mut p = Progress::default();
        assert!(p.observe(0, 0), "idle");
        assert!(!p.observe(5, 0), "messages queued: not yet progress");
        assert!(p.observe(3, 0), "shrinking");
        assert!(!p.observe(3, 0) && !p.observe(7, 0), "held or growing, nothing resolved");
        assert!(p.observe(9, 1), "growing under load while requests resolve");
        assert!(!p.observe(9, 1));
        assert!(p.observe(6, 1) && p.observe(0, 1));
    }
}
