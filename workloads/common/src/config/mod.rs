//! Configuration from environment variables, declared once.
//!
//! Every setting has a default that works against the local stack that `make up` starts, so a
//! developer can run any service with no environment at all; production sets the variables
//! (the operator renders them into each Deployment). Names are `CAIRN_<AREA>_<SETTING>`.
//!
//! Each variable is declared once in [`catalogue`] (name, default, readers, secret or not, what it
//! means); services read through those declarations from a [`Source`] (the process's environment,
//! or a map in tests), the operator renders pod env with their names, and docs/OPERATIONS.md's
//! tables are generated from them. Secrets are held as [`SecretString`], which `Debug` never
//! prints.

pub mod catalogue;

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

pub use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;

/// A configuration value that is present but cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid { name: String, value: String, reason: String },
}

/// The services (and the operator) that read settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Capture,
    Consumer,
    Query,
    Auth,
    Operator,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Capture => "capture",
            Service::Consumer => "consumer",
            Service::Query => "query",
            Service::Auth => "auth",
            Service::Operator => "operator",
        }
    }
}

/// Where docs/OPERATIONS.md lists a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Shared,
    Telemetry,
    CaptureSection,
    ConsumerSection,
    Postgres,
    AuthSection,
    AuthClient,
    QuerySection,
    OperatorSection,
}

impl Section {
    pub const ALL: [Section; 9] = [
        Section::Shared,
        Section::Telemetry,
        Section::CaptureSection,
        Section::ConsumerSection,
        Section::Postgres,
        Section::AuthSection,
        Section::AuthClient,
        Section::QuerySection,
        Section::OperatorSection,
    ];

    /// The marker name of the section's generated table in docs/OPERATIONS.md.
    pub fn key(self) -> &'static str {
        match self {
            Section::Shared => "shared",
            Section::Telemetry => "telemetry",
            Section::CaptureSection => "capture",
            Section::ConsumerSection => "consumer",
            Section::Postgres => "postgres",
            Section::AuthSection => "auth",
            Section::AuthClient => "auth-client",
            Section::QuerySection => "query",
            Section::OperatorSection => "operator",
        }
    }
}

/// One environment variable: declared once in [`catalogue`], read through its methods.
#[derive(Debug)]
pub struct Setting {
    pub section: Section,
    /// Who reads it (the operator renders it for these workloads).
    pub readers: &'static [Service],
    pub name: &'static str,
    /// The value used when the variable is unset or empty, parsed like a set one; `None` when
    /// absence means something of its own.
    pub default: Option<&'static str>,
    /// How the docs state the default, when the default's text alone would not say it.
    pub shown_default: Option<&'static str>,
    /// Never printed: errors say `***`, `Debug` of what holds it says `[REDACTED]`.
    pub secret: bool,
    /// What it means (the docs' "meaning" column).
    pub doc: &'static str,
}

/// Where settings come from: the process's environment, or a map (tests, the docs' checks).
pub trait Source {
    /// The variable's value, if set.
    fn value(&self, name: &'static str) -> Option<String>;
}

/// The process's environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn value(&self, name: &'static str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// No variables at all: every setting at its default.
pub struct NoEnv;

impl Source for NoEnv {
    fn value(&self, _name: &'static str) -> Option<String> {
        None
    }
}

/// A fixed set of values; with [`Recording`], what a configuration reads can be checked.
impl Source for BTreeMap<&'static str, String> {
    fn value(&self, name: &'static str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A source that remembers every name asked for.
pub struct Recording<S> {
    inner: S,
    read: Mutex<BTreeSet<&'static str>>,
}

impl<S: Source> Recording<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, read: Mutex::new(BTreeSet::new()) }
    }

    /// The names asked for so far.
    pub fn read(&self) -> BTreeSet<&'static str> {
        match self.read.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl<S: Source> Source for Recording<S> {
    fn value(&self, name: &'static str) -> Option<String> {
        match self.read.lock() {
            Ok(mut r) => r.insert(name),
            Err(poisoned) => poisoned.into_inner().insert(name),
        };
        self.inner.value(name)
    }
}

impl Setting {
    /// The same setting, marked secret (used in the catalogue's declarations).
    pub const fn secret(self) -> Self {
        Self { secret: true, ..self }
    }

    /// The set value (unset and blank are the same), without the default.
    pub fn value(&self, env: &dyn Source) -> Option<String> {
        env.value(self.name).filter(|v| !v.trim().is_empty())
    }

    /// Whether the variable is set (to something not blank).
    pub fn is_set(&self, env: &dyn Source) -> bool {
        self.value(env).is_some()
    }

    /// The set value or the default; `None` when neither exists.
    pub fn opt(&self, env: &dyn Source) -> Option<String> {
        self.value(env).or_else(|| self.default.map(str::to_string))
    }

    /// The set value or the default; empty when neither exists.
    pub fn string(&self, env: &dyn Source) -> String {
        self.opt(env).unwrap_or_default()
    }

    /// A secret setting's value (set or default), held so that it is never printed.
    pub fn secret_value(&self, env: &dyn Source) -> Option<SecretString> {
        self.opt(env).map(SecretString::from)
    }

    /// The set value or the default, parsed. A setting without a default that is unset is an
    /// error naming it.
    pub fn parse<T>(&self, env: &dyn Source) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.parse_opt(env)? {
            Some(v) => Ok(v),
            None => Err(self.invalid("", "must be set")),
        }
    }

    /// The set value or the default, parsed; `None` when neither exists.
    pub fn parse_opt<T>(&self, env: &dyn Source) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.opt(env) {
            None => Ok(None),
            Some(v) => v.trim().parse::<T>().map(Some).map_err(|e| self.invalid(&v, e.to_string())),
        }
    }

    /// A boolean (`true/false/1/0/yes/no/on/off`).
    pub fn bool(&self, env: &dyn Source) -> Result<bool, ConfigError> {
        let v = self.string(env);
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(self.invalid(&v, "expected true or false")),
        }
    }

    /// A duration given in milliseconds.
    pub fn millis(&self, env: &dyn Source) -> Result<Duration, ConfigError> {
        self.parse::<u64>(env).map(Duration::from_millis)
    }

    /// A duration given in seconds.
    pub fn secs(&self, env: &dyn Source) -> Result<Duration, ConfigError> {
        self.parse::<u64>(env).map(Duration::from_secs)
    }

    /// The error for an unusable `value` of this setting (a secret's value is not repeated).
    pub fn invalid(&self, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            name: self.name.to_string(),
            value: if self.secret { "***".to_string() } else { value.to_string() },
            reason: reason.into(),
        }
    }

    /// How docs/OPERATIONS.md states the default.
    pub fn shown_default(&self) -> String {
        match (self.shown_default, self.default) {
            (Some(shown), _) => shown.to_string(),
            (None, Some("")) => "empty".to_string(),
            (None, Some(d)) => format!("`{d}`"),
            (None, None) => "unset".to_string(),
        }
    }
}

/// The settings `service`'s configuration reads: those declared for it, less the telemetry ones
/// (logs and traces), which [`crate::telemetry`] reads before any configuration is loaded.
pub fn read_by_configuration(service: Service) -> BTreeSet<&'static str> {
    catalogue::ALL
        .iter()
        .filter(|s| s.readers.contains(&service) && s.section != Section::Telemetry)
        .map(|s| s.name)
        .collect()
}

/// The settings of one section of docs/OPERATIONS.md, as a Markdown table.
pub fn markdown_table(section: Section) -> String {
    let mut out = String::from("| variable | default | read by | meaning |\n|---|---|---|---|\n");
    for s in catalogue::ALL.iter().filter(|s| s.section == section) {
        let readers: Vec<&str> = s.readers.iter().map(|r| r.name()).collect();
        let secret = if s.secret { " (a secret: never logged or printed)" } else { "" };
        out.push_str(&format!(
            "| `{}` | {} | {} | {}{} |\n",
            s.name,
            s.shown_default(),
            readers.join(", "),
            s.doc,
            secret
        ));
    }
    out
}

/// `text` (docs/OPERATIONS.md) with every generated settings table replaced by what the
/// catalogue says now; the tables sit between `<!-- settings:KEY -->` and `<!-- /settings -->`.
pub fn render_operations_doc(text: &str) -> Result<String, String> {
    let mut out = text.to_string();
    for section in Section::ALL {
        let open = format!("<!-- settings:{} -->\n", section.key());
        let close = "<!-- /settings -->";
        let start =
            out.find(&open).ok_or_else(|| format!("docs/OPERATIONS.md lacks the marker {open:?}"))? + open.len();
        let end = start
            + out[start..].find(close).ok_or_else(|| format!("the table after {open:?} is not closed by {close:?}"))?;
        out.replace_range(start..end, &markdown_table(section));
    }
    Ok(out)
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
    pub sasl_password: Option<SecretString>,
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
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        use catalogue::*;
        Ok(Self {
            brokers: KAFKA_BROKERS.string(env),
            topic: KAFKA_TOPIC.string(env),
            dead_letter_topic: KAFKA_DEAD_LETTER_TOPIC.string(env),
            security_protocol: KAFKA_SECURITY_PROTOCOL.opt(env),
            sasl_mechanism: KAFKA_SASL_MECHANISM.opt(env),
            sasl_username: KAFKA_SASL_USERNAME.opt(env),
            sasl_password: KAFKA_SASL_PASSWORD.secret_value(env),
            ssl_ca_location: KAFKA_SSL_CA_LOCATION.opt(env),
            message_max_bytes: KAFKA_MESSAGE_MAX_BYTES.parse(env)?,
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
    pub password: Option<SecretString>,
    /// `CAIRN_CLICKHOUSE_COMPRESSION`: `none` (default) or `lz4`.
    pub lz4: bool,
    /// `CAIRN_EVENT_TTL_DAYS`: how long events are kept; 0 keeps them forever.
    pub event_ttl_days: u32,
    /// `CAIRN_CLICKHOUSE_CLUSTER`: the cluster the schema is made on (`clickhouse::Topology`).
    pub cluster: Option<String>,
}

impl ClickHouseConfig {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        use catalogue::*;
        let compression = CLICKHOUSE_COMPRESSION.string(env);
        let lz4 = match compression.trim().to_ascii_lowercase().as_str() {
            "none" => false,
            "lz4" => true,
            _ => return Err(CLICKHOUSE_COMPRESSION.invalid(&compression, "expected none or lz4")),
        };
        Ok(Self {
            url: CLICKHOUSE_URL.string(env),
            database: CLICKHOUSE_DATABASE.string(env),
            user: CLICKHOUSE_USER.string(env),
            password: CLICKHOUSE_PASSWORD.secret_value(env),
            lz4,
            event_ttl_days: EVENT_TTL_DAYS.parse(env)?,
            cluster: CLICKHOUSE_CLUSTER.value(env),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::catalogue::*;
    use super::*;

    fn env(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn parses_and_rejects_values() {
        let e = env(&[("CAIRN_KAFKA_TOPIC_PARTITIONS", "42"), ("CAIRN_QUERY_TIMEOUT_MS", "forty")]);
        assert_eq!(KAFKA_TOPIC_PARTITIONS.parse::<i32>(&e).unwrap(), 42);
        let err = QUERY_TIMEOUT_MS.millis(&e).unwrap_err().to_string();
        assert!(err.contains("CAIRN_QUERY_TIMEOUT_MS") && err.contains("forty"), "{err}");
        let e = env(&[("CAIRN_QUERY_FINAL", "maybe"), ("CAIRN_CONSUMER_MIGRATE", "off"), ("CAIRN_KAFKA_TOPIC", "  ")]);
        assert!(QUERY_FINAL.bool(&e).is_err());
        assert!(!CONSUMER_MIGRATE.bool(&e).unwrap());
        assert_eq!(KAFKA_TOPIC.string(&e), "cairn_events", "blank is unset");
        assert_eq!(WATCH_NAMESPACE.opt(&e), None);
    }

    #[test]
    fn every_default_is_usable() {
        let mut seen = BTreeSet::new();
        for s in ALL {
            assert!(seen.insert(s.name), "{} is declared twice", s.name);
            assert!(!s.readers.is_empty(), "{} is read by no one", s.name);
            assert!(s.doc.len() > 3, "{} has no meaning", s.name);
            assert!(s.default.is_some() || s.shown_default.is_some(), "{}: say what unset means", s.name);
            assert!(!s.doc.contains('|') && !s.shown_default().contains('|'), "{}: a | breaks the table", s.name);
        }
        let none = env(&[]);
        assert_eq!(KafkaConfig::from_source(&none).unwrap().message_max_bytes, DEFAULT_MESSAGE_MAX_BYTES);
        assert!(ClickHouseConfig::from_source(&none).is_ok());
    }

    #[test]
    fn secrets_are_never_printed() {
        let e = env(&[
            ("CAIRN_KAFKA_SASL_PASSWORD", "kafka-s3cret"),
            ("CAIRN_CLICKHOUSE_PASSWORD", "ch-s3cret"),
            ("CAIRN_EVENT_TTL_DAYS", "x"),
        ]);
        let kafka = KafkaConfig::from_source(&e).unwrap();
        assert!(!format!("{kafka:?}").contains("kafka-s3cret"));
        assert_eq!(
            kafka.sasl_password.as_ref().map(|p| p.expose_secret().to_string()).as_deref(),
            Some("kafka-s3cret")
        );
        let err = ClickHouseConfig::from_source(&e).unwrap_err().to_string();
        assert!(err.contains("CAIRN_EVENT_TTL_DAYS"), "{err}");
        let e = env(&[("CAIRN_CLICKHOUSE_PASSWORD", "ch-s3cret")]);
        let ch = ClickHouseConfig::from_source(&e).unwrap();
        assert!(!format!("{ch:?}").contains("ch-s3cret"));
        let err = AUTH_TOKEN_SECRET.invalid("token-s3cret", "too short").to_string();
        assert!(!err.contains("token-s3cret"), "{err}");
    }

    #[test]
    fn recording_names_what_was_read() {
        let rec = Recording::new(env(&[]));
        ClickHouseConfig::from_source(&rec).unwrap();
        let read = rec.read();
        assert!(read.contains("CAIRN_CLICKHOUSE_PASSWORD") && read.contains("CAIRN_EVENT_TTL_DAYS"));
        assert!(!read.contains("CAIRN_KAFKA_BROKERS"));
    }

    /// Variables are read only through the catalogue: no other code outside tests calls
    /// `std::env::var` or names a variable as a bare string (messages may mention one).
    #[test]
    fn nothing_reads_the_environment_around_the_catalogue() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let allowed = ["workloads/common/src/config/mod.rs", "workloads/common/src/config/catalogue.rs"];
        let mut offences = Vec::new();
        let mut stack = vec![root.join("workloads"), root.join("operator/src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if !path.ends_with("tests") && !path.ends_with("target") {
                        stack.push(path);
                    }
                    continue;
                }
                // Build scripts read cargo's variables (OUT_DIR), not Cairn's settings.
                if path.extension().is_none_or(|e| e != "rs") || path.ends_with("build.rs") {
                    continue;
                }
                let rel = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
                if allowed.contains(&rel.as_str()) {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (n, line) in code.lines().enumerate() {
                    let line = line.trim();
                    if line.starts_with("//") {
                        continue;
                    }
                    let bare_name = line.split('"').skip(1).step_by(2).any(|lit| {
                        lit.starts_with("CAIRN_")
                            && lit.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    });
                    let helper = line.starts_with("pub const POSTGRES_PASSWORD_HELPER");
                    if (line.contains("env::var") || bare_name) && !helper {
                        offences.push(format!("{rel}:{}: {line}", n + 1));
                    }
                }
            }
        }
        assert!(offences.is_empty(), "read settings through config::catalogue:\n{}", offences.join("\n"));
    }

    /// docs/OPERATIONS.md's configuration tables are generated from the catalogue: run `make docs`
    /// after changing it.
    #[test]
    fn operations_doc_tables_are_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/OPERATIONS.md");
        let on_disk = std::fs::read_to_string(path).unwrap();
        let rendered = render_operations_doc(&on_disk).unwrap();
        if std::env::var_os("CAIRN_WRITE_DOCS").is_some() {
            std::fs::write(path, &rendered).unwrap();
            return;
        }
        assert!(on_disk == rendered, "docs/OPERATIONS.md's settings tables are stale: run `make docs`");
    }
}
