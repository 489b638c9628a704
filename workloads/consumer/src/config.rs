//! The consumer's configuration (environment variables; see docs/OPERATIONS.md).

use std::net::SocketAddr;
use std::time::Duration;

use cairn_common::config::{env_bool, env_millis, env_parse, env_string, ClickHouseConfig, ConfigError, KafkaConfig};

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `CAIRN_CONSUMER_ADDR`: where `/metrics`, `/healthz` and `/readyz` are served.
    pub addr: SocketAddr,
    /// `CAIRN_CONSUMER_GROUP`: the Kafka consumer group.
    pub group: String,
    /// `CAIRN_CONSUMER_BATCH_MAX_EVENTS`: a batch is inserted once it holds this many events...
    pub batch_max_events: usize,
    /// `CAIRN_CONSUMER_BATCH_MAX_BYTES`: ...or once its records hold this many bytes (default
    /// 64 MiB: ten thousand large events must not take the consumer past its memory limit)...
    pub batch_max_bytes: usize,
    /// `CAIRN_CONSUMER_BATCH_MAX_AGE_MS`: ...or once its first event is this old.
    pub batch_max_age: Duration,
    /// `CAIRN_CONSUMER_DEAD_LETTER_TIMEOUT_MS`: how long a dead letter Kafka does not take is
    /// retried before it is dropped with an error (default 5 minutes), so that consumption goes on.
    pub dead_letter_timeout: Duration,
    /// `CAIRN_CONSUMER_RETRY_INITIAL_MS` / `CAIRN_CONSUMER_RETRY_MAX_MS`: exponential backoff of
    /// inserts while ClickHouse fails.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `CAIRN_CONSUMER_SHUTDOWN_GRACE_MS`: how long a shutdown may keep retrying the last batch.
    pub shutdown_grace: Duration,
    /// `CAIRN_CONSUMER_MAX_POLL_INTERVAL_MS`: Kafka's max.poll.interval.ms; a consumer that
    /// retries an insert for longer leaves the group and its partitions move.
    pub max_poll_interval: Duration,
    /// `CAIRN_CONSUMER_SESSION_TIMEOUT_MS`: how soon the group notices a dead consumer.
    pub session_timeout: Duration,
    /// `CAIRN_CONSUMER_INSERT_TIMEOUT_MS`: how long one insert may take before it is abandoned
    /// and retried with the same deduplication token (default 60 s): a ClickHouse that accepts
    /// the connection and never answers must not hold the loop forever.
    pub insert_timeout: Duration,
    /// `CAIRN_CONSUMER_LIVENESS_DEADLINE_MS`: `/healthz` fails when the consume loop has not
    /// turned for this long (default 180 s, longer than an insert timeout plus the longest retry
    /// pause): the loop is stuck, and the pod is restarted.
    pub liveness_deadline: Duration,
    /// `CAIRN_CONSUMER_MIGRATE`: apply ClickHouse migrations and the TTL at start (default true).
    pub migrate: bool,
    /// `CAIRN_KAFKA_CREATE_TOPICS` and `CAIRN_KAFKA_TOPIC_PARTITIONS`, as for capture.
    pub create_topics: bool,
    pub topic_partitions: i32,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
}

impl ConsumerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let addr_text = env_string("CAIRN_CONSUMER_ADDR", "127.0.0.1:18001");
        let addr = addr_text.parse().map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
            name: "CAIRN_CONSUMER_ADDR".into(),
            value: addr_text.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            addr,
            group: env_string("CAIRN_CONSUMER_GROUP", "cairn-consumer"),
            batch_max_events: env_parse("CAIRN_CONSUMER_BATCH_MAX_EVENTS", 10_000usize)?.max(1),
            batch_max_bytes: env_parse("CAIRN_CONSUMER_BATCH_MAX_BYTES", 64usize << 20)?.max(1),
            batch_max_age: env_millis("CAIRN_CONSUMER_BATCH_MAX_AGE_MS", 500)?,
            dead_letter_timeout: env_millis("CAIRN_CONSUMER_DEAD_LETTER_TIMEOUT_MS", 300_000)?,
            retry_initial: env_millis("CAIRN_CONSUMER_RETRY_INITIAL_MS", 100)?,
            retry_max: env_millis("CAIRN_CONSUMER_RETRY_MAX_MS", 10_000)?,
            shutdown_grace: env_millis("CAIRN_CONSUMER_SHUTDOWN_GRACE_MS", 20_000)?,
            max_poll_interval: env_millis("CAIRN_CONSUMER_MAX_POLL_INTERVAL_MS", 600_000)?,
            session_timeout: env_millis("CAIRN_CONSUMER_SESSION_TIMEOUT_MS", 10_000)?,
            insert_timeout: env_millis("CAIRN_CONSUMER_INSERT_TIMEOUT_MS", 60_000)?,
            liveness_deadline: env_millis("CAIRN_CONSUMER_LIVENESS_DEADLINE_MS", 180_000)?,
            migrate: env_bool("CAIRN_CONSUMER_MIGRATE", true)?,
            create_topics: env_bool("CAIRN_KAFKA_CREATE_TOPICS", true)?,
            topic_partitions: env_parse("CAIRN_KAFKA_TOPIC_PARTITIONS", 4i32)?,
            kafka: KafkaConfig::from_env()?,
            clickhouse: ClickHouseConfig::from_env()?,
        })
    }
}
