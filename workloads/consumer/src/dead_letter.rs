//! The dead-letter topic: records that cannot become rows are written there, with the reason
//! and their origin in headers, before their offsets are committed, so nothing is dropped silently.
//!
//! A dead letter that Kafka refuses for what it is (larger than the topic's largest record) is
//! sent again truncated, with the original's size and SHA-256 in headers; one that still cannot
//! be written is dropped with an error log and `cairn_consumer_dead_letter_failures_total`: a
//! dead letter must never stop the consumption of everything behind it.

use std::time::Duration;

use cairn_common::config::KafkaConfig;
use cairn_common::kafka::client_config;
use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};

use crate::batch::DeadLetter;

pub struct DeadLetterProducer {
    producer: FutureProducer,
    topic: String,
}

/// How much of a payload a truncated dead letter keeps.
pub const TRUNCATED_BYTES: usize = 64 * 1024;

/// Whether Kafka refused a record for what it is: sending it again cannot succeed.
pub fn refused_for_content(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
        )
    )
}

impl DeadLetter {
    /// The letter with its payload cut to [`TRUNCATED_BYTES`], the original's size and digest in
    /// its reason.
    pub fn truncated(&self) -> DeadLetter {
        let mut l = self.clone();
        if let Some(p) = &self.payload {
            if p.len() > TRUNCATED_BYTES {
                l.reason = format!(
                    "{} (payload truncated from {} bytes; sha256 {})",
                    self.reason,
                    p.len(),
                    hex::encode(Sha256::digest(p))
                );
                l.payload = Some(p[..TRUNCATED_BYTES].to_vec());
            }
        }
        l
    }
}

impl DeadLetterProducer {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let producer = client_config(cfg)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(Self { producer, topic: cfg.dead_letter_topic.clone() })
    }

    /// Writes every dead letter and waits for Kafka's acknowledgement of all of them.
    pub async fn send(&self, letters: &[DeadLetter]) -> Result<(), KafkaError> {
        let mut deliveries = Vec::with_capacity(letters.len());
        for l in letters {
            let partition = l.partition.to_string();
            let offset = l.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header { key: "cairn-dlq-reason", value: Some(l.reason.as_bytes()) })
                .insert(Header { key: "cairn-dlq-topic", value: Some(l.topic.as_bytes()) })
                .insert(Header { key: "cairn-dlq-partition", value: Some(partition.as_bytes()) })
                .insert(Header { key: "cairn-dlq-offset", value: Some(offset.as_bytes()) });
            let headers = match &l.request_id {
                Some(id) => {
                    headers.insert(Header { key: cairn_common::trace::KAFKA_HEADER, value: Some(id.as_bytes()) })
                }
                None => headers,
            };
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
            if let Some(k) = &l.key {
                record = record.key(k.as_slice());
            }
            if let Some(p) = &l.payload {
                record = record.payload(p.as_slice());
            }
            deliveries.push(self.producer.send(record, Duration::from_secs(30)));
        }
        for r in join_all(deliveries).await {
            r.map_err(|(e, _)| e)?;
        }
        Ok(())
    }
}
