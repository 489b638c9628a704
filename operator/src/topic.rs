//! The Kafka topics of a platform (events and dead letters): created when missing, grown when the
//! spec grows, never shrunk, retention kept as the spec says, deleted only by the Delete policy.

use std::time::Duration;

use cairn_common::config::KafkaConfig;
use cairn_common::kafka::client_config;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
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
}

impl TopicError {
    /// The condition reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            TopicError::Unreachable(_) => "KafkaUnreachable",
            TopicError::CannotShrink { .. } => "PartitionsCannotShrink",
            TopicError::Refused { .. } => "KafkaRefused",
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

/// Partition counts of the named topics (None for a topic that does not exist).
async fn partition_counts(admin: &Admin, topics: &[String]) -> Result<Vec<Option<i32>>, TopicError> {
    let mut out = Vec::new();
    for t in topics {
        // librdkafka's metadata call blocks; keep the runtime's other tasks moving meanwhile.
        let md = tokio::task::block_in_place(|| admin.inner().fetch_metadata(Some(t), Duration::from_secs(10)))
            .map_err(|e| TopicError::Unreachable(e.to_string()))?;
        let count = md.topics().iter().find(|m| m.name() == t).and_then(|m| {
            if m.error().is_some() || m.partitions().is_empty() {
                None
            } else {
                Some(m.partitions().len() as i32)
            }
        });
        out.push(count);
    }
    Ok(out)
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

/// Makes the events and dead-letter topics match the spec. Returns the events topic's actual
/// partition count.
pub async fn reconcile_topics(cfg: &KafkaConfig, spec: &TopicSpec, dead_letter: &str) -> Result<i32, TopicError> {
    let admin = admin(cfg)?;
    let names = vec![spec.name.clone(), dead_letter.to_string()];
    let counts = partition_counts(&admin, &names).await?;
    let retention = (spec.retention_hours * 3_600_000).to_string();

    let missing: Vec<NewTopic> = names
        .iter()
        .zip(&counts)
        .filter(|(_, c)| c.is_none())
        .map(|(n, _)| {
            NewTopic::new(n, spec.partitions, TopicReplication::Fixed(spec.replication_factor))
                .set("retention.ms", &retention)
        })
        .collect();
    if !missing.is_empty() {
        let results = admin.create_topics(missing.iter(), &opts()).await.map_err(kafka_err("create", &spec.name))?;
        check("create", results, &[RDKafkaErrorCode::TopicAlreadyExists])?;
        for t in &missing {
            tracing::info!(topic = t.name, partitions = spec.partitions, "created Kafka topic");
        }
    }

    let mut grow = Vec::new();
    for (name, count) in names.iter().zip(&counts) {
        if let Some(actual) = *count {
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

    // Retention: describe, and alter only what differs.
    for name in &names {
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic(name)], &opts())
            .await
            .map_err(kafka_err("describe", name))?;
        let current = described
            .into_iter()
            .next()
            .and_then(|r| r.ok())
            .and_then(|r| r.get("retention.ms").and_then(|e| e.value.clone()));
        if current.as_deref() != Some(retention.as_str()) {
            let alter = AlterConfig::new(ResourceSpecifier::Topic(name)).set("retention.ms", &retention);
            let results = admin.alter_configs([&alter], &opts()).await.map_err(kafka_err("set retention", name))?;
            for r in results {
                r.map_err(|(_, code)| refused("set retention", name, format!("{code:?}")))?;
            }
            tracing::info!(topic = %name, retention_ms = %retention, "set Kafka topic retention");
        }
    }

    let after = partition_counts(&admin, &names[..1]).await?;
    Ok(after.first().copied().flatten().unwrap_or(spec.partitions))
}

/// Deletes the platform's topics (deletion policy Delete).
pub async fn delete_topics(cfg: &KafkaConfig, names: &[String]) -> Result<(), TopicError> {
    let admin = admin(cfg)?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = admin.delete_topics(&refs, &opts()).await.map_err(kafka_err("delete", &names.join(",")))?;
    check("delete", results, &[RDKafkaErrorCode::UnknownTopicOrPartition])
}
