//! Where accepted events go: Kafka, acknowledged by every in-sync replica before capture answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cairn_common::config::KafkaConfig;
use cairn_common::event::CapturedEvent;
use cairn_common::kafka::{client_config, is_connectivity_error, probe_topic};
use cairn_common::telemetry::{spawn_probe, Health};
use futures::future::join_all;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
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
}

/// Something that durably accepts validated events.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Returns once every event is durable, or an error if any may not be.
    async fn send(&self, events: Vec<CapturedEvent>) -> Result<(), SinkError>;
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

pub struct KafkaSink {
    producer: FutureProducer<HealthContext>,
    topic: String,
    ack_timeout: Duration,
    health: Health,
    metrics: Arc<CaptureMetrics>,
}

impl KafkaSink {
    pub fn new(
        cfg: &KafkaConfig,
        ack_timeout: Duration,
        linger: Duration,
        health: Health,
        metrics: Arc<CaptureMetrics>,
    ) -> Result<Self, KafkaError> {
        let mut c = client_config(cfg);
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", linger.as_millis().to_string())
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.timeout.ms", ack_timeout.as_millis().max(1).to_string())
            .set("request.timeout.ms", ack_timeout.as_millis().clamp(1, 30_000).to_string())
            .set("reconnect.backoff.max.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "10000");
        let producer = c.create_with_context(HealthContext { health: health.clone() })?;
        health.register(KAFKA_CHECK);
        Ok(Self { producer, topic: cfg.topic.clone(), ack_timeout, health, metrics })
    }

    /// Probes the cluster until `stop` (see [`spawn_probe`]).
    pub fn spawn_health_probe(self: &Arc<Self>, stop: CancellationToken) {
        let sink = Arc::clone(self);
        spawn_probe(self.health.clone(), KAFKA_CHECK, stop, move || {
            probe_topic(sink.producer.client(), &sink.topic, Duration::from_secs(2))
                .map(|n| format!("topic {} has {n} partitions", sink.topic))
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
    async fn send(&self, events: Vec<CapturedEvent>) -> Result<(), SinkError> {
        if !self.health.check(KAFKA_CHECK) {
            return Err(SinkError::Unavailable("the cluster is not reachable".into()));
        }
        let started = Instant::now();
        let mut deliveries = Vec::with_capacity(events.len());
        for event in &events {
            let payload = serde_json::to_vec(event).map_err(|e| SinkError::Encode(e.to_string()))?;
            let key = event.kafka_key();
            let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => {
                    return Err(match e.rdkafka_error_code() {
                        Some(RDKafkaErrorCode::QueueFull) => SinkError::QueueFull,
                        _ => SinkError::Refused(e.to_string()),
                    })
                }
            }
        }
        // message.timeout.ms bounds each delivery; the outer timeout is a safety net.
        let all = tokio::time::timeout(self.ack_timeout + Duration::from_secs(2), join_all(deliveries))
            .await
            .map_err(|_| SinkError::Timeout(self.ack_timeout))?;
        for result in all {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
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
