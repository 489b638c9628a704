//! Topic administration: the one code path that creates, grows and configures Kafka topics, for
//! the services (which create missing topics at start when `CAIRN_KAFKA_CREATE_TOPICS` is on) and
//! for the operator (which keeps a platform's topics as its spec says). What each wants is a
//! [`DesiredTopic`]; [`converge`] makes the cluster match it as far as [`Converge`] allows, with one
//! error type that tells an unreachable cluster from a refusal.
//!
//! Partitions only grow. Settings are changed with IncrementalAlterConfigs, entry by entry, so what
//! others set on a topic stays.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

use super::{client_config, incremental_alter_topic_config};
use crate::config::KafkaConfig;

/// Why a topic could not be made as wanted.
#[derive(Debug, Error)]
pub enum TopicError {
    #[error("Kafka is unreachable: {0}")]
    Unreachable(String),
    #[error("topic {topic} has {actual} partitions; {wanted} are wanted, and partitions cannot shrink")]
    CannotShrink { topic: String, actual: i32, wanted: i32 },
    #[error("Kafka refused {action} on topic {topic}: {detail}")]
    Refused { action: &'static str, topic: String, detail: String },
    #[error("the topic needs a replication factor of {wanted} but the cluster has {brokers} broker(s)")]
    TooFewBrokers { wanted: i32, brokers: usize },
}

impl TopicError {
    /// A short reason (the operator's condition reason).
    pub fn reason(&self) -> &'static str {
        match self {
            TopicError::Unreachable(_) => "KafkaUnreachable",
            TopicError::CannotShrink { .. } => "PartitionsCannotShrink",
            TopicError::Refused { .. } => "KafkaRefused",
            TopicError::TooFewBrokers { .. } => "KafkaTooFewBrokers",
        }
    }
}

/// A topic as it is: partitions and replication factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicShape {
    pub partitions: i32,
    pub replication_factor: i32,
}

/// The replication factor a new topic gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// Exactly this many replicas (more than the cluster has brokers is an error).
    Fixed(i32),
    /// As many as the cluster has brokers, at most this many.
    AtMost(i32),
}

impl Replication {
    /// The replication factor on a cluster of `brokers` brokers.
    pub fn for_brokers(self, brokers: usize) -> i32 {
        match self {
            Replication::Fixed(n) => n,
            Replication::AtMost(n) => (brokers.min(i32::MAX as usize) as i32).clamp(1, n.max(1)),
        }
    }
}

/// A topic as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTopic {
    pub name: String,
    pub partitions: i32,
    pub replication: Replication,
    /// More partitions than wanted is an error (the events topic, whose partition count the
    /// operator scales by), or tolerated (a dead-letter topic).
    pub refuse_shrink: bool,
}

/// How far [`converge`] goes with topics that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converge {
    /// Create what is missing, leave what exists as it is (a service at start).
    CreateMissing,
    /// Also grow partitions and change the settings that differ (the operator).
    Fully,
}

type Admin = AdminClient<DefaultClientContext>;

fn admin(cfg: &KafkaConfig) -> Result<Admin, TopicError> {
    client_config(cfg).set("socket.timeout.ms", "10000").create().map_err(|e| TopicError::Unreachable(e.to_string()))
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))).request_timeout(Some(Duration::from_secs(20)))
}

/// The named topics as they are (None for a topic that does not exist), and the cluster's broker
/// count.
async fn describe(admin: &Admin, topics: &[&str]) -> Result<(Vec<Option<TopicShape>>, usize), TopicError> {
    let mut out = Vec::new();
    let mut brokers = 0;
    for t in topics {
        // librdkafka's metadata call blocks; keep the runtime's other tasks moving meanwhile.
        let md = tokio::task::block_in_place(|| admin.inner().fetch_metadata(Some(t), Duration::from_secs(10)))
            .map_err(|e| TopicError::Unreachable(e.to_string()))?;
        brokers = brokers.max(md.brokers().len());
        let shape = md.topics().iter().find(|m| m.name() == *t).and_then(|m| {
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

/// Makes the topics match `desired`, as far as `mode` allows. `settings(topic, rf)` gives the
/// settings of a topic whose replication factor is `rf` (a new topic's, or an existing one's):
/// a new topic is created with them, and with [`Converge::Fully`] an existing one gets those that
/// differ. Returns the topics as they are afterwards, in `desired`'s order.
pub async fn converge<S>(
    cfg: &KafkaConfig,
    desired: &[DesiredTopic],
    mode: Converge,
    settings: S,
) -> Result<Vec<TopicShape>, TopicError>
where
    S: Fn(&DesiredTopic, i32) -> Vec<(&'static str, String)>,
{
    let admin = admin(cfg)?;
    let names: Vec<&str> = desired.iter().map(|d| d.name.as_str()).collect();
    let (shapes, brokers) = describe(&admin, &names).await?;

    let missing: Vec<&DesiredTopic> =
        desired.iter().zip(&shapes).filter(|(_, s)| s.is_none()).map(|(d, _)| d).collect();
    if !missing.is_empty() {
        let rfs: Vec<i32> = missing.iter().map(|d| d.replication.for_brokers(brokers)).collect();
        if let Some(&rf) = rfs.iter().find(|&&rf| rf as usize > brokers) {
            return Err(TopicError::TooFewBrokers { wanted: rf, brokers });
        }
        let wanted: Vec<Vec<(&'static str, String)>> =
            missing.iter().zip(&rfs).map(|(d, rf)| settings(d, *rf)).collect();
        let new: Vec<NewTopic> = missing
            .iter()
            .zip(&rfs)
            .zip(&wanted)
            .map(|((d, rf), s)| {
                s.iter()
                    .fold(NewTopic::new(&d.name, d.partitions, TopicReplication::Fixed(*rf)), |t, (k, v)| t.set(k, v))
            })
            .collect();
        let results = admin.create_topics(new.iter(), &opts()).await.map_err(kafka_err("create", &missing[0].name))?;
        check("create", results, &[RDKafkaErrorCode::TopicAlreadyExists])?;
        for (d, rf) in missing.iter().zip(&rfs) {
            tracing::info!(topic = %d.name, partitions = d.partitions, replication_factor = rf, "created Kafka topic");
        }
    }
    if mode == Converge::CreateMissing {
        // Nothing else changes: the topics are as described, the new ones as created.
        return Ok(as_wanted_where_unknown(desired, &shapes, brokers));
    }

    let mut grow = Vec::new();
    for (d, shape) in desired.iter().zip(&shapes) {
        if let Some(actual) = shape.map(|s| s.partitions) {
            if actual > d.partitions && d.refuse_shrink {
                return Err(TopicError::CannotShrink { topic: d.name.clone(), actual, wanted: d.partitions });
            }
            if actual < d.partitions {
                grow.push(NewPartitions::new(&d.name, d.partitions as usize));
            }
        }
    }
    if !grow.is_empty() {
        let results = admin
            .create_partitions(grow.iter(), &opts())
            .await
            .map_err(kafka_err("grow partitions", &desired[0].name))?;
        check("grow partitions", results, &[])?;
        for g in &grow {
            tracing::info!(topic = %g.topic_name, partitions = g.new_partition_count, "grew Kafka topic partitions");
        }
    }

    // Settings: describe, and change only the entries that differ, one by one (incrementally).
    for (d, shape) in desired.iter().zip(&shapes) {
        let rf = shape.map(|s| s.replication_factor).unwrap_or_else(|| d.replication.for_brokers(brokers));
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic(&d.name)], &opts())
            .await
            .map_err(kafka_err("describe", &d.name))?;
        let current = described.into_iter().next().and_then(Result::ok);
        let differ: Vec<(&str, String)> = settings(d, rf)
            .into_iter()
            .filter(|(k, v)| {
                current.as_ref().and_then(|c| c.get(k)).and_then(|e| e.value.as_deref()) != Some(v.as_str())
            })
            .collect();
        if differ.is_empty() {
            continue;
        }
        tokio::task::block_in_place(|| {
            incremental_alter_topic_config(admin.inner(), &d.name, &differ, Duration::from_secs(20))
        })
        .map_err(|e| refused("change settings", &d.name, e))?;
        tracing::info!(topic = %d.name, settings = ?differ, "changed Kafka topic settings");
    }
    after(&admin, desired, brokers).await
}

/// The topics as they are now (a topic that is still not visible: as wanted).
async fn after(admin: &Admin, desired: &[DesiredTopic], brokers: usize) -> Result<Vec<TopicShape>, TopicError> {
    let names: Vec<&str> = desired.iter().map(|d| d.name.as_str()).collect();
    let (shapes, _) = describe(admin, &names).await?;
    Ok(as_wanted_where_unknown(desired, &shapes, brokers))
}

/// `shapes`, with a topic not (yet) visible taken to be as wanted.
fn as_wanted_where_unknown(desired: &[DesiredTopic], shapes: &[Option<TopicShape>], brokers: usize) -> Vec<TopicShape> {
    desired
        .iter()
        .zip(shapes)
        .map(|(d, s)| {
            s.unwrap_or(TopicShape { partitions: d.partitions, replication_factor: d.replication.for_brokers(brokers) })
        })
        .collect()
}

/// Deletes topics (a missing one is not an error).
pub async fn delete(cfg: &KafkaConfig, names: &[String]) -> Result<(), TopicError> {
    let admin = admin(cfg)?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = admin.delete_topics(&refs, &opts()).await.map_err(kafka_err("delete", &names.join(",")))?;
    check("delete", results, &[RDKafkaErrorCode::UnknownTopicOrPartition])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_follows_the_cluster_up_to_its_cap() {
        assert_eq!(Replication::AtMost(3).for_brokers(1), 1);
        assert_eq!(Replication::AtMost(3).for_brokers(2), 2);
        assert_eq!(Replication::AtMost(3).for_brokers(5), 3);
        assert_eq!(Replication::AtMost(3).for_brokers(0), 1);
        assert_eq!(Replication::Fixed(2).for_brokers(5), 2);
        assert_eq!(Replication::Fixed(3).for_brokers(1), 3, "checked against the brokers where it is used");
    }
}
