//! Configuration from environment variables.
//!
//! Every setting has a default that works against the local stack that `make up` starts, so a
//! developer can run any service with no environment at all; production sets the variables
//! (the operator renders them into each Deployment). Names are `CAIRN_<AREA>_<SETTING>`.

use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

/// A configuration value that is present but cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid { name: String, value: String, reason: String },
}

/// Reads `name`, falling back to `default` when it is unset or empty.
pub fn env_string(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => default.to_string(),
    }
}

/// Reads `name` as an optional string: `None` when unset or empty.
pub fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads and parses `name`, falling back to `default` when it is unset or empty.
pub fn env_parse<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match env_opt(name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<T>().map_err(|e| ConfigError::Invalid {
            name: name.to_string(),
            value: v.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Reads a boolean (`true/false/1/0/yes/no/on/off`).
pub fn env_bool(name: &str, default: bool) -> Result<bool, ConfigError> {
    match env_opt(name) {
        None => Ok(default),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => {
                Err(ConfigError::Invalid { name: name.to_string(), value: v, reason: "expected true or false".into() })
            }
        },
    }
}

/// Reads a duration given in milliseconds.
pub fn env_millis(name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
    env_parse(name, default_ms).map(Duration::from_millis)
}

/// Reads a listen address (`host:port`).
pub fn env_addr(name: &str, default: &str) -> Result<std::net::SocketAddr, ConfigError> {
    let text = env_string(name, default);
    text.trim().parse().map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
        name: name.to_string(),
        value: text.clone(),
        reason: e.to_string(),
    })
}

/// Where a service finds Kafka and how it talks to it.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `CAIRN_KAFKA_BROKERS`: bootstrap servers, comma-separated.
    pub brokers: String,
    /// `CAIRN_KAFKA_TOPIC`: the events topic.
    pub topic: String,
    /// `CAIRN_KAFKA_DEAD_LETTER_TOPIC`: where records that cannot be decoded as events go.
    pub dead_letter_topic: String,
    /// `CAIRN_KAFKA_SECURITY_PROTOCOL`: plaintext (default), ssl, sasl_plaintext or sasl_ssl.
    pub security_protocol: Option<String>,
    /// `CAIRN_KAFKA_SASL_MECHANISM`, `CAIRN_KAFKA_SASL_USERNAME`, `CAIRN_KAFKA_SASL_PASSWORD`.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// `CAIRN_KAFKA_SSL_CA_LOCATION`: CA bundle for TLS.
    pub ssl_ca_location: Option<String>,
    /// `CAIRN_KAFKA_MESSAGE_MAX_BYTES`: the largest record, the same number everywhere: capture's
    /// producer (`message.max.bytes`), the topics (`max.message.bytes`, set by the operator or at
    /// start) and the dead-letter producer (default 2 MiB). Capture refuses an event whose record
    /// would be larger with 413, never with a retryable answer.
    pub message_max_bytes: usize,
}

/// The default of [`KafkaConfig::message_max_bytes`].
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 2 * 1024 * 1024;

impl KafkaConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            brokers: env_string("CAIRN_KAFKA_BROKERS", "127.0.0.1:19092"),
            topic: env_string("CAIRN_KAFKA_TOPIC", "cairn_events"),
            dead_letter_topic: env_string("CAIRN_KAFKA_DEAD_LETTER_TOPIC", "cairn_events_dead_letter"),
            security_protocol: env_opt("CAIRN_KAFKA_SECURITY_PROTOCOL"),
            sasl_mechanism: env_opt("CAIRN_KAFKA_SASL_MECHANISM"),
            sasl_username: env_opt("CAIRN_KAFKA_SASL_USERNAME"),
            sasl_password: env_opt("CAIRN_KAFKA_SASL_PASSWORD"),
            ssl_ca_location: env_opt("CAIRN_KAFKA_SSL_CA_LOCATION"),
            message_max_bytes: env_parse("CAIRN_KAFKA_MESSAGE_MAX_BYTES", DEFAULT_MESSAGE_MAX_BYTES)?,
        })
    }
}

/// Where a service finds ClickHouse's HTTP interface.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// `CAIRN_CLICKHOUSE_URL`: the HTTP interface, e.g. `http://127.0.0.1:18123`.
    pub url: String,
    /// `CAIRN_CLICKHOUSE_DATABASE`.
    pub database: String,
    /// `CAIRN_CLICKHOUSE_USER` and `CAIRN_CLICKHOUSE_PASSWORD`.
    pub user: String,
    pub password: Option<String>,
    /// `CAIRN_CLICKHOUSE_COMPRESSION`: `none` (default) or `lz4`.
    pub lz4: bool,
    /// `CAIRN_EVENT_TTL_DAYS`: how long events are kept; 0 keeps them forever.
    pub event_ttl_days: u32,
}

impl ClickHouseConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let compression = env_string("CAIRN_CLICKHOUSE_COMPRESSION", "none");
        let lz4 = match compression.to_ascii_lowercase().as_str() {
            "none" => false,
            "lz4" => true,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "CAIRN_CLICKHOUSE_COMPRESSION".into(),
                    value: compression,
                    reason: "expected none or lz4".into(),
                })
            }
        };
        Ok(Self {
            url: env_string("CAIRN_CLICKHOUSE_URL", "http://127.0.0.1:18123"),
            database: env_string("CAIRN_CLICKHOUSE_DATABASE", "cairn"),
            user: env_string("CAIRN_CLICKHOUSE_USER", "default"),
            password: env_opt("CAIRN_CLICKHOUSE_PASSWORD"),
            lz4,
            event_ttl_days: env_parse("CAIRN_EVENT_TTL_DAYS", 0u32)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_values() {
        std::env::set_var("CAIRN_TEST_CONFIG_N", "42");
        assert_eq!(env_parse("CAIRN_TEST_CONFIG_N", 1u32).unwrap(), 42);
        std::env::set_var("CAIRN_TEST_CONFIG_N", "forty");
        let err = env_parse("CAIRN_TEST_CONFIG_N", 1u32).unwrap_err().to_string();
        assert!(err.contains("CAIRN_TEST_CONFIG_N"), "{err}");
        std::env::set_var("CAIRN_TEST_CONFIG_B", "maybe");
        assert!(env_bool("CAIRN_TEST_CONFIG_B", true).is_err());
        std::env::set_var("CAIRN_TEST_CONFIG_B", "off");
        assert!(!env_bool("CAIRN_TEST_CONFIG_B", true).unwrap());
        assert_eq!(env_string("CAIRN_TEST_CONFIG_UNSET", "d"), "d");
    }
}
