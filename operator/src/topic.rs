//! The Kafka topics of a platform (events and dead letters): created when missing, grown when the
//! spec grows, never shrunk, their settings kept as the spec says, deleted only by the Delete
//! policy. This module holds the policy (replication, settings, size limits); the Kafka calls are
//! `cairn_common::kafka::topics`, the same code path the services create topics with.
//!
//! Durability by default: a new topic gets a replication factor of 3 (or the cluster's broker count
//! when smaller) and `min.insync.replicas` = RF − 1, so that with capture's acks=all an
//! acknowledged event is on at least two brokers and one broker may be down. Settings are changed
//! with IncrementalAlterConfigs, entry by entry: what others set on the topic stays. The managed
//! single broker gets `retention.bytes` (and a `segment.bytes` to match) derived from its volume,
//! so that its disk cannot fill: Kafka drops the oldest segments first.

use cairn_common::config::KafkaConfig;
use cairn_common::kafka::topics::{self, Converge, DesiredTopic, Replication};
pub use cairn_common::kafka::topics::{TopicError, TopicShape};

use crate::crd::TopicSpec;

/// The replication factor of a new topic: the spec's, else 3 or the broker count when smaller.
pub fn replication(spec: &TopicSpec) -> Replication {
    match spec.replication_factor {
        Some(n) => Replication::Fixed(n),
        None => Replication::AtMost(3),
    }
}

/// [`replication`] on a cluster of `brokers` brokers.
pub fn replication_factor(spec: &TopicSpec, brokers: usize) -> i32 {
    replication(spec).for_brokers(brokers)
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

/// What the operator decided beyond the spec: the retention in force (the backlog guard may
/// stretch it, backlog.rs) and the partitions (the autoscaler may grow them, autoscale.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub retention_hours: i64,
    pub partitions: i32,
}

impl Effective {
    /// Exactly what the spec says.
    pub fn of(spec: &TopicSpec) -> Self {
        Self { retention_hours: spec.retention_hours, partitions: spec.partitions }
    }
}

/// The partitions the events topic should have: the spec's, or what the operator last saw it
/// have when that is more (it grew them: `maxPartitions` caps growth, and partitions never
/// shrink, so a lower or removed `maxPartitions` keeps what was grown).
pub fn partitions(spec: &TopicSpec, grown: Option<i32>) -> i32 {
    spec.partitions.max(grown.unwrap_or(0))
}

/// The topic settings the operator keeps. `volume_bytes`: the managed broker's volume, if any;
/// `retention_hours`: the retention in force.
pub fn topic_settings(
    spec: &TopicSpec,
    rf: i32,
    volume_bytes: Option<u64>,
    retention_hours: i64,
) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("retention.ms", (retention_hours * 3_600_000).to_string()),
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

/// Makes the events and dead-letter topics match the spec. `volume_bytes` is the managed broker's
/// data volume (None for an external cluster). Returns the events topic as it is afterwards.
pub async fn reconcile_topics(
    cfg: &KafkaConfig,
    spec: &TopicSpec,
    dead_letter: &str,
    volume_bytes: Option<u64>,
    effective: Effective,
) -> Result<TopicShape, TopicError> {
    let replication = replication(spec);
    let partitions = effective.partitions.max(spec.partitions);
    let desired = [
        DesiredTopic { name: spec.name.clone(), partitions, replication, refuse_shrink: true },
        DesiredTopic { name: dead_letter.to_string(), partitions, replication, refuse_shrink: false },
    ];
    let shapes = topics::converge(cfg, &desired, Converge::Fully, |_, rf| {
        topic_settings(spec, rf, volume_bytes, effective.retention_hours)
    })
    .await?;
    shapes.first().copied().ok_or_else(|| TopicError::Unreachable("no answer about the events topic".into()))
}

/// Deletes the platform's topics (deletion policy Delete).
pub async fn delete_topics(cfg: &KafkaConfig, names: &[String]) -> Result<(), TopicError> {
    topics::delete(cfg, names).await
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
        let settings = topic_settings(&spec, 1, Some(volume), spec.retention_hours);
        let get = |k: &str| settings.iter().find(|(n, _)| *n == k).map(|(_, v)| v.parse::<i64>().unwrap()).unwrap();
        let (retention, segment) = (get("retention.bytes"), get("segment.bytes"));
        // Both topics, every partition at its limit plus an active segment, fit in 80 % of the volume.
        let worst = i64::from(spec.partitions * 2) * (retention + segment);
        assert!(worst <= (volume as f64 * 0.8) as i64 + i64::from(spec.partitions * 2), "{worst} vs {volume}");
        assert!((1 << 20..=1 << 30).contains(&segment));
        assert!(
            topic_settings(&spec, 3, None, 168).iter().all(|(k, _)| *k != "retention.bytes"),
            "external: no size limit"
        );
        assert_eq!(get("retention.ms"), 168 * 3_600_000);
        let stretched = topic_settings(&spec, 1, Some(volume), 200);
        assert!(stretched.contains(&("retention.ms", (200i64 * 3_600_000).to_string())));
        assert_eq!(stretched.len(), settings.len(), "only the retention differs");
    }

    #[test]
    fn grown_partitions_are_kept_within_the_max() {
        let spec = TopicSpec { partitions: 4, max_partitions: Some(12), ..TopicSpec::default() };
        assert_eq!(partitions(&spec, None), 4);
        assert_eq!(partitions(&spec, Some(8)), 8);
        assert_eq!(partitions(&spec, Some(20)), 20, "a lowered max never shrinks the topic");
        assert_eq!(partitions(&spec, Some(2)), 4);
        assert_eq!(partitions(&TopicSpec { max_partitions: None, ..spec }, Some(8)), 8, "max removed: kept");
    }
}
