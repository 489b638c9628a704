//! Capture's configuration (environment variables; see docs/OPERATIONS.md for the full list).

use std::net::SocketAddr;
use std::time::Duration;

use cairn_common::auth_client::AuthClientConfig;
use cairn_common::config::{env_bool, env_millis, env_opt, env_parse, env_string, ConfigError, KafkaConfig};
use cairn_common::server::{ServerLimits, TrustedProxies};

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
    /// `CAIRN_CAPTURE_API_KEYS`: `key=project_id` pairs, comma-separated, resolved before asking
    /// the auth service (bootstrap and development keys).
    pub api_keys: String,
    /// The auth service that resolves write keys, when `CAIRN_AUTH_URL` is set
    /// (`CAIRN_AUTH_CACHE_TTL_SECS`, `CAIRN_INTERNAL_TOKEN`).
    pub auth: Option<AuthClientConfig>,
    /// `CAIRN_CAPTURE_ACK_TIMEOUT_MS`: how long to wait for Kafka's acknowledgement before
    /// answering 503 (default 10 s).
    pub ack_timeout: Duration,
    /// `CAIRN_CAPTURE_LINGER_MS`: how long the producer waits to fill a batch (default 2 ms).
    pub linger: Duration,
    /// `CAIRN_KAFKA_CREATE_TOPICS`: create the events topic at start when it is missing
    /// (default true; the operator manages topics itself and turns this off).
    pub create_topics: bool,
    /// `CAIRN_KAFKA_TOPIC_PARTITIONS`: partitions of a topic created at start.
    pub topic_partitions: i32,
    pub kafka: KafkaConfig,
}

impl CaptureConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let addr_text = env_string("CAIRN_CAPTURE_ADDR", "127.0.0.1:18000");
        let addr = addr_text.parse().map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
            name: "CAIRN_CAPTURE_ADDR".into(),
            value: addr_text.clone(),
            reason: e.to_string(),
        })?;
        let kafka = KafkaConfig::from_env()?;
        let max_event_bytes: usize = env_parse("CAIRN_CAPTURE_MAX_EVENT_BYTES", 1024 * 1024)?;
        // An event and what capture adds to it (uuid, project, times) must fit in a record.
        if max_event_bytes.saturating_add(RECORD_OVERHEAD) > kafka.message_max_bytes {
            return Err(ConfigError::Invalid {
                name: "CAIRN_CAPTURE_MAX_EVENT_BYTES".into(),
                value: max_event_bytes.to_string(),
                reason: format!(
                    "must leave {RECORD_OVERHEAD} bytes below CAIRN_KAFKA_MESSAGE_MAX_BYTES ({}), or events could never be stored",
                    kafka.message_max_bytes
                ),
            });
        }
        Ok(Self {
            addr,
            max_event_bytes,
            max_events: env_parse("CAIRN_CAPTURE_MAX_EVENTS_PER_REQUEST", 10_000usize)?.max(1),
            max_values: env_parse("CAIRN_CAPTURE_MAX_JSON_VALUES", 1_000_000usize)?.max(1),
            memory_budget_bytes: env_parse("CAIRN_CAPTURE_MEMORY_BUDGET_MB", 256usize)?.max(1) << 20,
            unknown_keys_per_minute: env_parse("CAIRN_CAPTURE_UNKNOWN_KEYS_PER_MINUTE", 60u32)?,
            unknown_keys_burst: env_parse("CAIRN_CAPTURE_UNKNOWN_KEYS_BURST", 30u32)?,
            trusted_proxies: TrustedProxies::from_env()?,
            server: ServerLimits::from_env()?,
            admin_addr: cairn_common::server::admin_addr_from_env()?,
            max_batch_bytes: env_parse("CAIRN_CAPTURE_MAX_BATCH_BYTES", 20 * 1024 * 1024)?,
            max_future: time::Duration::seconds(env_parse("CAIRN_CAPTURE_MAX_FUTURE_SECS", 23 * 3600i64)?),
            rate_limit_per_second: env_parse("CAIRN_CAPTURE_RATE_LIMIT_PER_SECOND", 100_000u32)?,
            rate_limit_burst: env_parse("CAIRN_CAPTURE_RATE_LIMIT_BURST", 200_000u32)?,
            api_keys: env_string("CAIRN_CAPTURE_API_KEYS", ""),
            auth: match env_opt("CAIRN_AUTH_URL") {
                Some(_) => Some(AuthClientConfig::from_env()?),
                None => None,
            },
            ack_timeout: env_millis("CAIRN_CAPTURE_ACK_TIMEOUT_MS", 10_000)?,
            linger: env_millis("CAIRN_CAPTURE_LINGER_MS", 2)?,
            create_topics: env_bool("CAIRN_KAFKA_CREATE_TOPICS", true)?,
            topic_partitions: env_parse("CAIRN_KAFKA_TOPIC_PARTITIONS", 4i32)?,
            kafka,
        })
    }
}
