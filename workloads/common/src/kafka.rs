//! librdkafka client configuration shared by capture's producer, the consumer and the operator's
//! admin client: brokers and security settings come from [`KafkaConfig`] in one place.

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// A client configuration with the brokers and security settings filled in.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    // Keep librdkafka's own logging quiet; errors reach us through callbacks and results.
    c.set("log_level", "4");
    if let Some(p) = &cfg.security_protocol {
        c.set("security.protocol", p);
    }
    if let Some(m) = &cfg.sasl_mechanism {
        c.set("sasl.mechanism", m);
    }
    if let Some(u) = &cfg.sasl_username {
        c.set("sasl.username", u);
    }
    if let Some(p) = &cfg.sasl_password {
        c.set("sasl.password", p);
    }
    if let Some(ca) = &cfg.ssl_ca_location {
        c.set("ssl.ca.location", ca);
    }
    c
}

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

/// Why a Kafka administrative call failed.
#[derive(Debug, Error)]
pub enum KafkaAdminError {
    #[error("cannot create a Kafka admin client: {0}")]
    Client(#[source] KafkaError),
    #[error("Kafka refused to create topic {topic}: {source}")]
    CreateTopic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka refused to create topic {topic}: {code:?}")]
    CreateTopicCode { topic: String, code: RDKafkaErrorCode },
}

/// A topic that should exist.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    /// `retention.ms`; None keeps the broker's default.
    pub retention_ms: Option<i64>,
}

/// Creates each topic that does not exist yet (an existing topic is left as it is).
pub async fn ensure_topics(cfg: &KafkaConfig, topics: &[TopicSpec]) -> Result<(), KafkaAdminError> {
    let admin: AdminClient<_> = client_config(cfg).create().map_err(KafkaAdminError::Client)?;
    let retention: Vec<Option<String>> = topics.iter().map(|t| t.retention_ms.map(|r| r.to_string())).collect();
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .zip(&retention)
        .map(|(t, r)| {
            let nt = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(t.replication));
            match r {
                Some(r) => nt.set("retention.ms", r),
                None => nt,
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results =
        admin.create_topics(new_topics.iter(), &opts).await.map_err(|source| KafkaAdminError::CreateTopic {
            topic: topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(","),
            source,
        })?;
    for r in results {
        match r {
            Ok(topic) => tracing::info!(%topic, "created Kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaAdminError::CreateTopicCode { topic, code }),
        }
    }
    Ok(())
}

/// Creates missing topics in the background, retrying with backoff until it succeeds or `stop`
/// (Kafka may still be starting when a service starts).
pub fn ensure_topics_in_background(
    cfg: KafkaConfig,
    topics: Vec<TopicSpec>,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut wait = Duration::from_millis(200);
        loop {
            match ensure_topics(&cfg, &topics).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "cannot ensure Kafka topics yet"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    });
}

/// Asks the cluster for a topic's metadata: `Ok(partitions)` when a broker answered and the
/// topic exists with every partition led, `Err(reason)` otherwise. Blocking; call it from
/// `spawn_blocking`.
pub fn probe_topic<C: ClientContext>(client: &Client<C>, topic: &str, timeout: Duration) -> Result<usize, String> {
    let md = client.fetch_metadata(Some(topic), timeout).map_err(|e| format!("metadata request failed: {e}"))?;
    if md.brokers().is_empty() {
        return Err("no brokers".into());
    }
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| format!("topic {topic} not in metadata"))?;
    if let Some(err) = t.error() {
        return Err(format!("topic {topic}: {:?}", RDKafkaErrorCode::from(err)));
    }
    if t.partitions().is_empty() {
        return Err(format!("topic {topic} has no partitions"));
    }
    if let Some(p) = t.partitions().iter().find(|p| p.leader() < 0 || p.error().is_some()) {
        return Err(format!("topic {topic} partition {} has no leader", p.id()));
    }
    Ok(t.partitions().len())
}

/// Whether an error means the cluster is unreachable (as opposed to one request failing).
pub fn is_connectivity_error(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::Resolve)
    )
}
