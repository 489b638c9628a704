//! The Kafka topics of a platform (events and dead letters): created when missing, grown when the
//! spec grows, never shrunk, their settings kept as the spec says, deleted only by the Delete
//! policy.
//!
//! Durability by default: a new topic gets a replication factor of 3 (or the cluster's broker count
//! when smaller) and `min.insync.replicas` = RF − 1, so that with capture's acks=all an
//! acknowledged event is on at least two brokers and one broker may be down. Settings are changed
//! with IncrementalAlterConfigs, entry by entry: what others set on the topic stays. The managed
//! single broker gets `retention.bytes` (and a `segment.bytes` to match) derived from its volume,
//! so that its disk cannot fill: Kafka drops the oldest segments first.

use std::time::Duration;

use cairn_common::config::KafkaConfig;
use cairn_common::kafka::{client_config, incremental_alter_topic_config};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

use crate::crd::TopicSpec;

#[derive(Debug, Error)]
pub enum TopicError {
    #[error("Kafka is unreachable: {0}")]
    Unreachable(String),
    #[error("topic {topic} has {actual} partitions; the spec asks for {wanted}, and partitions cannot shrink")]
    CannotShrink { topic: String, actual: i32, wanted: i32 },
    #[error("Kafka refused {action} on topic {topic}: {detail}")]
    Refused { action: &'static str, topic: String, detail: String },
    #[error("the topic needs a replication factor of {wanted} but the cluster has {brokers} broker(s)")]
    TooFewBrokers { wanted: i32, brokers: usize },
}

impl TopicError {
    /// The condition reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            TopicError::Unreachable(_) => "KafkaUnreachable",
            TopicError::CannotShrink { .. } => "PartitionsCannotShrink",
            TopicError::Refused { .. } => "KafkaRefused",
            TopicError::TooFewBrokers { .. } => "KafkaTooFewBrokers",
        }
    }
}

type Admin = AdminClient<DefaultClientContext>;

fn admin(cfg: &KafkaConfig) -> Result<Admin, TopicError> {
    client_config(cfg).set("socket.timeout.ms", "10000").create().map_err(|e| TopicError::Unreachable(e.to_string()))
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))).request_timeout(Some(Duration::from_secs(20)))
}

/// A topic as it is: partitions and replication factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicShape {
    pub partitions: i32,
    pub replication_factor: i32,
}

/// The named topics as they are (None for a topic that does not exist), and the cluster's broker
/// count.
async fn describe_topics(admin: &Admin, topics: &[String]) -> Result<(Vec<Option<TopicShape>>, usize), TopicError> {
    let mut out = Vec::new();
    let mut brokers = 0;
    for t in topics {
        // librdkafka's metadata call blocks; keep the runtime's other tasks moving meanwhile.
        let md = tokio::task::block_in_place(|| admin.inner().fetch_metadata(Some(t), Duration::from_secs(10)))
            .map_err(|e| TopicError::Unreachable(e.to_string()))?;
        brokers = brokers.max(md.brokers().len());
        let shape = md.topics().iter().find(|m| m.name() == t).and_then(|m| {
            if m.error().is_some() || m.partitions().is_empty() {
                None
            } else {
                Some(TopicShape {
                    partitions: m.partitions().len() as i32,
                    replication_factor: m.partitions().iter().map(|p| p.replicas().len() as i32).max().unwrap_or(0),
                })
            }
        });
        out.push(shape);
    }
    Ok((out, brokers))
}

/// The replication factor of a new topic: the spec's, else 3 or the broker count when smaller.
pub fn replication_factor(spec: &TopicSpec, brokers: usize) -> i32 {
    spec.replication_factor.unwrap_or_else(|| (brokers as i32).clamp(1, 3))
}

/// `min.insync.replicas` for a topic with `rf` replicas: the spec's (at most `rf`), else rf − 1, at least 1.
pub fn min_insync_replicas(spec: &TopicSpec, rf: i32) -> i32 {
    spec.min_in_sync_replicas.unwrap_or(rf - 1).clamp(1, rf.max(1))
}

/// `retention.bytes` and `segment.bytes` per partition for a broker whose data volume holds
/// `volume_bytes` and carries `partitions` partitions in all: 80 % of the volume shared out, each
/// partition's share holding its retained segments plus the active one.
pub fn size_limits(volume_bytes: u64, partitions: i32) -> (i64, i64) {
    const MIB: i64 = 1 << 20;
    let share = (volume_bytes as f64 * 0.8 / f64::from(partitions.max(1))) as i64;
    let segment = (share / 8).clamp(MIB, 1 << 30);
    let retention = (share - segment).max(segment);
    (retention, segment)
}

/// The topic settings the operator keeps. `volume_bytes`: the managed broker's volume, if any.
pub fn topic_settings(spec: &TopicSpec, rf: i32, volume_bytes: Option<u64>) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("retention.ms", (spec.retention_hours * 3_600_000).to_string()),
        ("min.insync.replicas", min_insync_replicas(spec, rf).to_string()),
        // The same largest record as capture's producer (CAIRN_KAFKA_MESSAGE_MAX_BYTES).
        ("max.message.bytes", cairn_common::config::DEFAULT_MESSAGE_MAX_BYTES.to_string()),
    ];
    if let Some(v) = volume_bytes {
        let (retention, segment) = size_limits(v, spec.partitions * 2);
        out.push(("retention.bytes", retention.to_string()));
        out.push(("segment.bytes", segment.to_string()));
    }
    out
}

fn refused(action: &'static str, topic: &str, e: impl std::fmt::Display) -> TopicError {
    TopicError::Refused { action, topic: topic.to_string(), detail: e.to_string() }
}

fn check(
    action: &'static str,
    results: Vec<Result<String, (String, RDKafkaErrorCode)>>,
    ok: &[RDKafkaErrorCode],
) -> Result<(), TopicError> {
    for r in results {
        if let Err((topic, code)) = r {
            if !ok.contains(&code) {
                return Err(refused(action, &topic, format!("{code:?}")));
            }
        }
    }
    Ok(())
}

fn kafka_err<'a>(action: &'static str, topic: &'a str) -> impl Fn(KafkaError) -> TopicError + 'a {
    move |e| {
        if matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::OperationTimedOut
            )
        ) {
            TopicError::Unreachable(e.to_string())
        } else {
            refused(action, topic, e)
        }
    }
}

/// Makes the events and dead-letter topics match the spec. `volume_bytes` is the managed broker's
/// data volume (None for an external cluster). Returns the events topic as it is afterwards.
pub async fn reconcile_topics(
    cfg: &KafkaConfig,
    spec: &TopicSpec,
    dead_letter: &str,
    volume_bytes: Option<u64>,
) -> Result<TopicShape, TopicError> {
    let admin = admin(cfg)?;
    let names = vec![spec.name.clone(), dead_letter.to_string()];
    let (shapes, brokers) = describe_topics(&admin, &names).await?;
    let rf = replication_factor(spec, brokers);

    let missing: Vec<&String> = names.iter().zip(&shapes).filter(|(_, s)| s.is_none()).map(|(n, _)| n).collect();
    if !missing.is_empty() {
        if rf as usize > brokers {
            return Err(TopicError::TooFewBrokers { wanted: rf, brokers });
        }
        let settings = topic_settings(spec, rf, volume_bytes);
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|n| {
                settings
                    .iter()
                    .fold(NewTopic::new(n, spec.partitions, TopicReplication::Fixed(rf)), |t, (k, v)| t.set(k, v))
            })
            .collect();
        let results = admin.create_topics(new.iter(), &opts()).await.map_err(kafka_err("create", &spec.name))?;
        check("create", results, &[RDKafkaErrorCode::TopicAlreadyExists])?;
        for t in &missing {
            tracing::info!(topic = %t, partitions = spec.partitions, replication_factor = rf, "created Kafka topic");
        }
    }

    let mut grow = Vec::new();
    for (name, shape) in names.iter().zip(&shapes) {
        if let Some(actual) = shape.map(|s| s.partitions) {
            if actual > spec.partitions && name == &spec.name {
                return Err(TopicError::CannotShrink { topic: name.clone(), actual, wanted: spec.partitions });
            }
            if actual < spec.partitions {
                grow.push(NewPartitions::new(name, spec.partitions as usize));
            }
        }
    }
    if !grow.is_empty() {
        let results =
            admin.create_partitions(grow.iter(), &opts()).await.map_err(kafka_err("grow partitions", &spec.name))?;
        check("grow partitions", results, &[])?;
        tracing::info!(topic = %spec.name, partitions = spec.partitions, "grew Kafka topic partitions");
    }

    // Settings: describe, and change only the entries that differ, one by one (incrementally).
    for (name, shape) in names.iter().zip(&shapes) {
        let topic_rf = shape.map(|s| s.replication_factor).unwrap_or(rf);
        let wanted = topic_settings(spec, topic_rf, volume_bytes);
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic(name)], &opts())
            .await
            .map_err(kafka_err("describe", name))?;
        let current = described.into_iter().next().and_then(Result::ok);
        let differ: Vec<(&str, String)> = wanted
            .into_iter()
            .filter(|(k, v)| {
                current.as_ref().and_then(|c| c.get(k)).and_then(|e| e.value.as_deref()) != Some(v.as_str())
            })
            .collect();
        if differ.is_empty() {
            continue;
        }
        tokio::task::block_in_place(|| {
            incremental_alter_topic_config(admin.inner(), name, &differ, Duration::from_secs(20))
        })
        .map_err(|e| refused("change settings", name, e))?;
        tracing::info!(topic = %name, settings = ?differ, "changed Kafka topic settings");
    }

    let (after, _) = describe_topics(&admin, &names[..1]).await?;
    Ok(after.first().copied().flatten().unwrap_or(TopicShape { partitions: spec.partitions, replication_factor: rf }))
}

/// Deletes the platform's topics (deletion policy Delete).
pub async fn delete_topics(cfg: &KafkaConfig, names: &[String]) -> Result<(), TopicError> {
    let admin = admin(cfg)?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = admin.delete_topics(&refs, &opts()).await.map_err(kafka_err("delete", &names.join(",")))?;
    check("delete", results, &[RDKafkaErrorCode::UnknownTopicOrPartition])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_defaults() {
        let spec = TopicSpec::default();
        assert_eq!(replication_factor(&spec, 1), 1);
        assert_eq!(replication_factor(&spec, 2), 2);
        assert_eq!(replication_factor(&spec, 5), 3);
        assert_eq!(min_insync_replicas(&spec, 3), 2);
        assert_eq!(min_insync_replicas(&spec, 2), 1);
        assert_eq!(min_insync_replicas(&spec, 1), 1);
        let pinned = TopicSpec { replication_factor: Some(2), min_in_sync_replicas: Some(5), ..TopicSpec::default() };
        assert_eq!(replication_factor(&pinned, 5), 2);
        assert_eq!(min_insync_replicas(&pinned, 2), 2, "never more than the replicas");
    }

    #[test]
    fn the_managed_broker_cannot_fill_its_volume() {
        let spec = TopicSpec::default();
        let volume = 10u64 << 30;
        let settings = topic_settings(&spec, 1, Some(volume));
        let get = |k: &str| settings.iter().find(|(n, _)| *n == k).map(|(_, v)| v.parse::<i64>().unwrap()).unwrap();
        let (retention, segment) = (get("retention.bytes"), get("segment.bytes"));
        // Both topics, every partition at its limit plus an active segment, fit in 80 % of the volume.
        let worst = i64::from(spec.partitions * 2) * (retention + segment);
        assert!(worst <= (volume as f64 * 0.8) as i64 + i64::from(spec.partitions * 2), "{worst} vs {volume}");
        assert!((1 << 20..=1 << 30).contains(&segment));
        assert!(topic_settings(&spec, 3, None).iter().all(|(k, _)| *k != "retention.bytes"), "external: no size limit");
        assert_eq!(get("retention.ms"), 168 * 3_600_000);
    }
}
