//! Capture's configuration (environment variables; see docs/OPERATIONS.md for the full list).

use std::net::SocketAddr;
use std::time::Duration;

use cairn_auth_client::AuthClientConfig;
use cairn_common::config::catalogue::*;
use cairn_common::config::{ConfigError, KafkaConfig, ProcessEnv, SecretString, Source};
use cairn_common::server::{admin_addr_from_source, ServerLimits, TrustedProxies};

/// Room for what capture adds to an event in its Kafka record (uuid, project, receipt time, the
/// normalised fields) and the record's key.
pub const RECORD_OVERHEAD: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// `CAIRN_CAPTURE_ADDR`: where to listen (default `127.0.0.1:18000`).
    pub addr: SocketAddr,
    /// `CAIRN_CAPTURE_MAX_EVENT_BYTES`: largest accepted event (default 1 MB).
    pub max_event_bytes: usize,
    /// `CAIRN_CAPTURE_MAX_BATCH_BYTES`: largest accepted request body, after decompression
    /// (default 20 MB).
    pub max_batch_bytes: usize,
    /// `CAIRN_CAPTURE_MAX_EVENTS_PER_REQUEST`: the most events in one request (default 10,000; 413
    /// above it).
    pub max_events: usize,
    /// `CAIRN_CAPTURE_MAX_JSON_VALUES`: the most JSON keys and values in one request, what
    /// building its events allocates (default 1,000,000; 413 above it).
    pub max_values: usize,
    /// `CAIRN_CAPTURE_MEMORY_BUDGET_MB`: memory all requests in flight may use together (bodies,
    /// decoded bodies, values; default 256). Beyond it requests wait up to 2 s, then get 503.
    pub memory_budget_bytes: usize,
    /// `CAIRN_CAPTURE_UNKNOWN_KEYS_PER_MINUTE` and `_BURST`: lookups of keys not known to be
    /// valid, per client address (default 60 a minute, bursts of 30; 0 turns it off).
    pub unknown_keys_per_minute: u32,
    pub unknown_keys_burst: u32,
    /// `CAIRN_TRUSTED_PROXIES`: whose `X-Forwarded-For` names the client (see
    /// `cairn_common::server`).
    pub trusted_proxies: TrustedProxies,
    /// `CAIRN_HTTP_*`: connection and timeout limits of the listener.
    pub server: ServerLimits,
    /// `CAIRN_ADMIN_ADDR`: serve `/metrics`, `/healthz` and `/readyz` there instead of on `addr`.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// `CAIRN_CAPTURE_MAX_FUTURE_SECS`: how far in the future an event's timestamp may lie
    /// (default 23 hours).
    pub max_future: time::Duration,
    /// `CAIRN_CAPTURE_RATE_LIMIT_PER_SECOND`: events per second per API key; 0 turns the limit off.
    pub rate_limit_per_second: u32,
    /// `CAIRN_CAPTURE_RATE_LIMIT_BURST`: events a key may send at once above its rate.
    pub rate_limit_burst: u32,
    /// `CAIRN_CAPTURE_REPLICAS`: replicas sharing each key's rate, when no `peers` name is set.
    pub replicas: u32,
    /// `CAIRN_CAPTURE_PEERS`: a name resolving to every capture replica (a headless Service).
    pub peers: Option<String>,
    /// `CAIRN_CAPTURE_API_KEYS`: `key=project_id` pairs, comma-separated, resolved before asking
    /// the auth service (bootstrap and development keys).
    pub api_keys: SecretString,
    /// `CAIRN_CAPTURE_HEARTBEAT_KEY`: the operator's heartbeat key (its events go to
    /// [`cairn_common::event::HEARTBEAT_PROJECT_ID`]).
    pub heartbeat_key: Option<SecretString>,
    /// The auth service that resolves write keys, when `CAIRN_AUTH_URL` is set
    /// (`CAIRN_AUTH_CACHE_TTL_SECS`, `CAIRN_INTERNAL_TOKEN`).
    pub auth: Option<AuthClientConfig>,
    /// `CAIRN_CAPTURE_ACK_TIMEOUT_MS`: how long to wait for Kafka's acknowledgement before
    /// answering 503 (default 10 s).
    pub ack_timeout: Duration,
    /// `CAIRN_CAPTURE_LINGER_MS`: how long the producer waits to fill a batch (default 2 ms).
    pub linger: Duration,
    /// `CAIRN_CAPTURE_LIVENESS_DEADLINE_MS`: `/healthz` fails when the producer holds messages
    /// and resolves none for this long (default 60 s; longer than the ack timeout).
    pub liveness_deadline: Duration,
    /// `CAIRN_CAPTURE_RECORD_HEADERS`: the request id (and trace context) on every record.
    pub record_headers: bool,
    /// `CAIRN_KAFKA_CREATE_TOPICS`: create the events topic at start when it is missing
    /// (default true; the operator manages topics itself and turns this off).
    pub create_topics: bool,
    /// `CAIRN_KAFKA_TOPIC_PARTITIONS`: partitions of a topic created at start.
    pub topic_partitions: i32,
    pub kafka: KafkaConfig,
}

impl CaptureConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        let kafka = KafkaConfig::from_source(env)?;
        let max_event_bytes: usize = CAPTURE_MAX_EVENT_BYTES.parse(env)?;
        // An event and what capture adds to it (uuid, project, times) must fit in a record.
        if max_event_bytes.saturating_add(RECORD_OVERHEAD) > kafka.message_max_bytes {
            return Err(CAPTURE_MAX_EVENT_BYTES.invalid(
                &max_event_bytes.to_string(),
                format!(
                    "must leave {RECORD_OVERHEAD} bytes below {} ({}), or events could never be stored",
                    KAFKA_MESSAGE_MAX_BYTES.name, kafka.message_max_bytes
                ),
            ));
        }
        let ack_timeout = CAPTURE_ACK_TIMEOUT_MS.millis(env)?;
        let liveness_deadline = CAPTURE_LIVENESS_DEADLINE_MS.millis(env)?;
        if liveness_deadline <= ack_timeout + std::time::Duration::from_secs(2) {
            return Err(CAPTURE_LIVENESS_DEADLINE_MS.invalid(
                &liveness_deadline.as_millis().to_string(),
                format!(
                    "must be longer than {} plus 2 s, or a slow acknowledgement would restart capture",
                    CAPTURE_ACK_TIMEOUT_MS.name
                ),
            ));
        }
        Ok(Self {
            addr: CAPTURE_ADDR.parse(env)?,
            max_event_bytes,
            max_events: CAPTURE_MAX_EVENTS_PER_REQUEST.parse::<usize>(env)?.max(1),
            max_values: CAPTURE_MAX_JSON_VALUES.parse::<usize>(env)?.max(1),
            memory_budget_bytes: CAPTURE_MEMORY_BUDGET_MB.parse::<usize>(env)?.max(1) << 20,
            unknown_keys_per_minute: CAPTURE_UNKNOWN_KEYS_PER_MINUTE.parse(env)?,
            unknown_keys_burst: CAPTURE_UNKNOWN_KEYS_BURST.parse(env)?,
            trusted_proxies: TrustedProxies::from_source(env)?,
            server: ServerLimits::from_source(env)?,
            admin_addr: admin_addr_from_source(env)?,
            max_batch_bytes: CAPTURE_MAX_BATCH_BYTES.parse(env)?,
            max_future: time::Duration::seconds(CAPTURE_MAX_FUTURE_SECS.parse(env)?),
            rate_limit_per_second: CAPTURE_RATE_LIMIT_PER_SECOND.parse(env)?,
            rate_limit_burst: CAPTURE_RATE_LIMIT_BURST.parse(env)?,
            replicas: CAPTURE_REPLICAS.parse::<u32>(env)?.max(1),
            peers: CAPTURE_PEERS.opt(env).filter(|p| !p.trim().is_empty()),
            api_keys: SecretString::from(CAPTURE_API_KEYS.string(env)),
            heartbeat_key: CAPTURE_HEARTBEAT_KEY.opt(env).filter(|k| !k.is_empty()).map(SecretString::from),
            // Without CAIRN_AUTH_URL, capture knows only its static keys.
            auth: match AUTH_URL.is_set(env) {
                true => Some(AuthClientConfig::from_source(env)?),
                false => None,
            },
            ack_timeout,
            linger: CAPTURE_LINGER_MS.millis(env)?,
            liveness_deadline,
            record_headers: CAPTURE_RECORD_HEADERS.bool(env)?,
            create_topics: KAFKA_CREATE_TOPICS.bool(env)?,
            topic_partitions: KAFKA_TOPIC_PARTITIONS.parse(env)?,
            kafka,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_common::config::{read_by_configuration, Recording, Service};

    use super::*;

    #[test]
    fn reads_its_declared_settings_and_no_others() {
        let env: BTreeMap<&'static str, String> = [(AUTH_URL.name, "http://auth".to_string())].into_iter().collect();
        let rec = Recording::new(env);
        let cfg = CaptureConfig::from_source(&rec).unwrap();
        assert!(cfg.auth.is_some());
        assert_eq!(rec.read(), read_by_configuration(Service::Capture));
    }

    #[test]
    fn the_liveness_deadline_outlasts_the_ack_timeout() {
        let env: BTreeMap<&'static str, String> = [
            (CAPTURE_ACK_TIMEOUT_MS.name, "30000".to_string()),
            (CAPTURE_LIVENESS_DEADLINE_MS.name, "20000".to_string()),
        ]
        .into_iter()
        .collect();
        let err = CaptureConfig::from_source(&env).unwrap_err().to_string();
        assert!(err.contains("CAIRN_CAPTURE_LIVENESS_DEADLINE_MS"), "{err}");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let env: BTreeMap<&'static str, String> =
            [(CAPTURE_API_KEYS.name, "phc_s3cret=1".to_string())].into_iter().collect();
        let cfg = CaptureConfig::from_source(&env).unwrap();
        assert!(!format!("{cfg:?}").contains("phc_s3cret"));
    }
}
