//! The consumer's configuration (environment variables; see docs/OPERATIONS.md).

use std::net::SocketAddr;
use std::time::Duration;

use cairn_common::config::catalogue::*;
use cairn_common::config::{ClickHouseConfig, ConfigError, KafkaConfig, ProcessEnv, SecretString, Source};
use cairn_postgres::PostgresConfig;

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
    /// `CAIRN_CLICKHOUSE_PROPERTY_COLUMNS`: event properties made columns when migrating.
    pub property_columns: Vec<String>,
    /// `CAIRN_KAFKA_CREATE_TOPICS` and `CAIRN_KAFKA_TOPIC_PARTITIONS`, as for capture.
    pub create_topics: bool,
    pub topic_partitions: i32,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    /// `CAIRN_CONSUMER_PERSONS`: run the persons pipeline and the deletion jobs (then `postgres`
    /// says where).
    pub persons: bool,
    /// `CAIRN_CONSUMER_PROJECT_DELETION_REPEAT_MS`: the delay before a deleted project's second pass.
    pub project_deletion_repeat: Duration,
    /// `CAIRN_POSTGRES_URL` and `CAIRN_POSTGRES_MAX_CONNECTIONS` (the persons pipeline's; auth
    /// and query apply the schema).
    pub postgres: PostgresConfig,
}

impl ConsumerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            addr: CONSUMER_ADDR.parse(env)?,
            group: CONSUMER_GROUP.string(env),
            batch_max_events: CONSUMER_BATCH_MAX_EVENTS.parse::<usize>(env)?.max(1),
            batch_max_bytes: CONSUMER_BATCH_MAX_BYTES.parse::<usize>(env)?.max(1),
            batch_max_age: CONSUMER_BATCH_MAX_AGE_MS.millis(env)?,
            dead_letter_timeout: CONSUMER_DEAD_LETTER_TIMEOUT_MS.millis(env)?,
            retry_initial: CONSUMER_RETRY_INITIAL_MS.millis(env)?,
            retry_max: CONSUMER_RETRY_MAX_MS.millis(env)?,
            shutdown_grace: CONSUMER_SHUTDOWN_GRACE_MS.millis(env)?,
            max_poll_interval: CONSUMER_MAX_POLL_INTERVAL_MS.millis(env)?,
            session_timeout: CONSUMER_SESSION_TIMEOUT_MS.millis(env)?,
            insert_timeout: CONSUMER_INSERT_TIMEOUT_MS.millis(env)?,
            liveness_deadline: CONSUMER_LIVENESS_DEADLINE_MS.millis(env)?,
            migrate: CONSUMER_MIGRATE.bool(env)?,
            property_columns: CLICKHOUSE_PROPERTY_COLUMNS
                .string(env)
                .split(',')
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect(),
            create_topics: KAFKA_CREATE_TOPICS.bool(env)?,
            topic_partitions: KAFKA_TOPIC_PARTITIONS.parse(env)?,
            kafka: KafkaConfig::from_source(env)?,
            clickhouse: ClickHouseConfig::from_source(env)?,
            persons: CONSUMER_PERSONS.bool(env)?,
            project_deletion_repeat: CONSUMER_PROJECT_DELETION_REPEAT_MS.millis(env)?,
            postgres: PostgresConfig {
                url: SecretString::from(POSTGRES_URL.string(env)),
                max_connections: POSTGRES_MAX_CONNECTIONS.parse(env)?,
                migrate_on_start: false,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_common::config::{read_by_configuration, NoEnv, Recording, Service};

    use super::*;

    #[test]
    fn reads_its_declared_settings_and_no_others() {
        let rec = Recording::new(NoEnv);
        ConsumerConfig::from_source(&rec).unwrap();
        assert_eq!(rec.read(), read_by_configuration(Service::Consumer));
    }

    #[test]
    fn rejects_a_bad_value_by_name() {
        let env: BTreeMap<&'static str, String> =
            [(CONSUMER_BATCH_MAX_AGE_MS.name, "soon".to_string())].into_iter().collect();
        let err = ConsumerConfig::from_source(&env).unwrap_err().to_string();
        assert!(err.contains("CAIRN_CONSUMER_BATCH_MAX_AGE_MS"), "{err}");
    }
}
