//! Every environment variable Cairn's services and its operator read, declared once: name,
//! default, who reads it, whether it is a secret, and what it means.
//!
//! Services read their settings only through these declarations ([`super::Setting`]); the operator
//! renders the env of the pods it runs with their names; docs/OPERATIONS.md's configuration tables
//! are generated from them (`make docs`), and tests fail when a declared setting is read by no one
//! or a service reads one that is not declared.

use super::Section::*;
use super::Service::*;
use super::{Section, Service, Setting};

const CAPTURE_CONSUMER: &[Service] = &[Capture, Consumer];
/// Kafka's client settings: query produces event updates and deletions.
const KAFKA_CLIENTS: &[Service] = &[Capture, Consumer, Query];
const CONSUMER_QUERY: &[Service] = &[Consumer, Query];
const API: &[Service] = &[Capture, Query, Auth];
const AUTH_QUERY: &[Service] = &[Auth, Query];
const POSTGRES_USERS: &[Service] = &[Consumer, Auth, Query];
const EVERYONE: &[Service] = &[Capture, Consumer, Query, Auth, Operator];

macro_rules! catalogue {
    ($($id:ident = $value:expr;)*) => {
        $(
            #[doc = concat!("The setting `", stringify!($id), "` (see its `doc`).")]
            pub static $id: Setting = $value;
        )*
        /// Every declared setting, in the order docs/OPERATIONS.md lists them.
        pub static ALL: &[&Setting] = &[$(&$id),*];
    };
}

const fn s(
    section: Section,
    readers: &'static [Service],
    name: &'static str,
    default: &'static str,
    doc: &'static str,
) -> Setting {
    Setting { section, readers, name, default: Some(default), shown_default: None, secret: false, doc }
}

/// A setting whose absence means something of its own (`shown` says what).
const fn unset(
    section: Section,
    readers: &'static [Service],
    name: &'static str,
    shown: &'static str,
    doc: &'static str,
) -> Setting {
    Setting { section, readers, name, default: None, shown_default: Some(shown), secret: false, doc }
}

catalogue! {
    // Shared.
    KAFKA_BROKERS = s(Shared, KAFKA_CLIENTS, "CAIRN_KAFKA_BROKERS", "127.0.0.1:19092", "bootstrap servers, comma-separated");
    KAFKA_TOPIC = s(Shared, KAFKA_CLIENTS, "CAIRN_KAFKA_TOPIC", "cairn_events", "the events topic");
    KAFKA_DEAD_LETTER_TOPIC = s(Shared, KAFKA_CLIENTS, "CAIRN_KAFKA_DEAD_LETTER_TOPIC", "cairn_events_dead_letter", "records that cannot be decoded as events (poison records)");
    KAFKA_SECURITY_PROTOCOL = unset(Shared, KAFKA_CLIENTS, "CAIRN_KAFKA_SECURITY_PROTOCOL", "(plaintext)", "`ssl`, `sasl_plaintext` or `sasl_ssl`");
    KAFKA_SASL_MECHANISM = unset(Shared, KAFKA_CLIENTS, "CAIRN_KAFKA_SASL_MECHANISM", "unset", "SASL mechanism, e.g. `SCRAM-SHA-512`");
    KAFKA_SASL_USERNAME = unset(Shared, KAFKA_CLIENTS, "CAIRN_KAFKA_SASL_USERNAME", "unset", "SASL user");
    KAFKA_SASL_PASSWORD = unset(Shared, KAFKA_CLIENTS, "CAIRN_KAFKA_SASL_PASSWORD", "unset", "SASL password").secret();
    KAFKA_SSL_CA_LOCATION = unset(Shared, KAFKA_CLIENTS, "CAIRN_KAFKA_SSL_CA_LOCATION", "unset", "CA bundle for TLS");
    KAFKA_CREATE_TOPICS = s(Shared, CAPTURE_CONSUMER, "CAIRN_KAFKA_CREATE_TOPICS", "true", "create missing topics at start (the operator manages topics and turns this off)");
    KAFKA_TOPIC_PARTITIONS = s(Shared, CAPTURE_CONSUMER, "CAIRN_KAFKA_TOPIC_PARTITIONS", "4", "partitions of a topic created at start");
    KAFKA_MESSAGE_MAX_BYTES = s(Shared, KAFKA_CLIENTS, "CAIRN_KAFKA_MESSAGE_MAX_BYTES", "2097152", "the largest record, the same everywhere: capture's producer, the topics' `max.message.bytes` (set at start and by the operator), the dead-letter producer; capture refuses an event whose record would be larger with 413");
    CLICKHOUSE_URL = s(Shared, CONSUMER_QUERY, "CAIRN_CLICKHOUSE_URL", "http://127.0.0.1:18123", "ClickHouse's HTTP interface");
    CLICKHOUSE_DATABASE = s(Shared, CONSUMER_QUERY, "CAIRN_CLICKHOUSE_DATABASE", "cairn", "the database of the events table");
    CLICKHOUSE_USER = s(Shared, CONSUMER_QUERY, "CAIRN_CLICKHOUSE_USER", "default", "ClickHouse account (query gets a read-only one from the operator)");
    CLICKHOUSE_PASSWORD = unset(Shared, CONSUMER_QUERY, "CAIRN_CLICKHOUSE_PASSWORD", "none", "its password").secret();
    CLICKHOUSE_COMPRESSION = s(Shared, CONSUMER_QUERY, "CAIRN_CLICKHOUSE_COMPRESSION", "none", "`lz4` for a real ClickHouse server over a network");
    CLICKHOUSE_CLUSTER = unset(Shared, CONSUMER_QUERY, "CAIRN_CLICKHOUSE_CLUSTER", "unset", "a cluster of the servers' `remote_servers`: the schema is made `ON CLUSTER`, each table a Replicated local table (`<table>_local`) under a Distributed table sharded by the distinct id's hash (docs/ARCHITECTURE.md); unset for one server or ClickHouse Cloud");
    EVENT_TTL_DAYS = s(Shared, CONSUMER_QUERY, "CAIRN_EVENT_TTL_DAYS", "0", "events retention, applied as the table's TTL; `0` keeps events forever");
    HTTP_MAX_CONNECTIONS = s(Shared, API, "CAIRN_HTTP_MAX_CONNECTIONS", "1024", "open connections per listener; beyond, the listener stops accepting until one closes");
    HTTP_HEADER_TIMEOUT_MS = s(Shared, API, "CAIRN_HTTP_HEADER_TIMEOUT_MS", "10000", "time to send a request's head, also while a kept-alive connection is idle: a silent or dribbling client is closed");
    HTTP_REQUEST_TIMEOUT_MS = s(Shared, API, "CAIRN_HTTP_REQUEST_TIMEOUT_MS", "60000", "time to send the body and be answered (408 beyond)");
    ADMIN_ADDR = unset(Shared, API, "CAIRN_ADMIN_ADDR", "unset", "serve `/metrics`, `/healthz`, `/readyz` on this address instead of the API's (the operator sets `0.0.0.0:9000` in pods so the Ingress never exposes them)");
    TRUSTED_PROXIES = Setting { shown_default: Some("loopback and private ranges"), ..s(Shared, &[Capture, Auth], "CAIRN_TRUSTED_PROXIES", crate::server::DEFAULT_TRUSTED_PROXIES, "addresses (CIDRs) whose `X-Forwarded-For` is believed; the client is the rightmost entry that is not a trusted proxy, so a client cannot choose its address by writing the header") };

    // Telemetry: logs and traces (read before any other configuration, by every binary).
    LOG = s(Telemetry, EVERYONE, "CAIRN_LOG", "info,rdkafka=warn", "log filter (tracing `EnvFilter` syntax); spans below its level are neither logged nor exported");
    RUST_LOG = unset(Telemetry, EVERYONE, "RUST_LOG", "unset", "the log filter when `CAIRN_LOG` is unset");
    LOG_FORMAT = s(Telemetry, EVERYONE, "CAIRN_LOG_FORMAT", "json", "`text` for human-readable logs");
    OTEL_EXPORTER_OTLP_ENDPOINT = unset(Telemetry, EVERYONE, "OTEL_EXPORTER_OTLP_ENDPOINT", "unset: no traces are exported", "base URL of an OpenTelemetry collector's OTLP/HTTP receiver (protobuf), e.g. `http://otel-collector.observability:4318`; spans are sent to `<url>/v1/traces`. `http` only: run a collector beside Cairn to forward over TLS");
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = unset(Telemetry, EVERYONE, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "unset", "the full URL spans are sent to, instead of the one derived from `OTEL_EXPORTER_OTLP_ENDPOINT`");
    OTEL_EXPORTER_OTLP_HEADERS = unset(Telemetry, EVERYONE, "OTEL_EXPORTER_OTLP_HEADERS", "unset", "`name=value,…` sent with every export (a collector's API key, say)").secret();
    OTEL_EXPORTER_OTLP_TIMEOUT = s(Telemetry, EVERYONE, "OTEL_EXPORTER_OTLP_TIMEOUT", "10000", "milliseconds an export may take; spans of an export that fails are dropped, never retried into memory");
    OTEL_SERVICE_NAME = unset(Telemetry, EVERYONE, "OTEL_SERVICE_NAME", "the binary's name (`cairn-capture`, …)", "the `service.name` of the spans");
    OTEL_TRACES_SAMPLER_ARG = s(Telemetry, EVERYONE, "OTEL_TRACES_SAMPLER_ARG", "1.0", "the share (0 to 1) of the traces that start here which are recorded; a caller's `traceparent` decides for its own trace (parent-based sampling, as OpenTelemetry's default)");
    OTEL_BSP_SCHEDULE_DELAY = s(Telemetry, EVERYONE, "OTEL_BSP_SCHEDULE_DELAY", "5000", "milliseconds between exports");
    OTEL_BSP_MAX_QUEUE_SIZE = s(Telemetry, EVERYONE, "OTEL_BSP_MAX_QUEUE_SIZE", "2048", "finished spans held for export; when the collector is slow or down, newer spans are dropped rather than held (memory stays bounded)");

    // Capture.
    CAPTURE_ADDR = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_ADDR", "127.0.0.1:18000", "listen address (`0.0.0.0:8000` in a pod)");
    CAPTURE_API_KEYS = Setting { shown_default: Some("empty"), ..s(CaptureSection, &[Capture], "CAIRN_CAPTURE_API_KEYS", "", "`key=project_id,…`: static keys, looked up before auth (bootstrap, development)") }.secret();
    CAPTURE_HEARTBEAT_KEY = unset(CaptureSection, &[Capture], "CAIRN_CAPTURE_HEARTBEAT_KEY", "none", "a key whose events go to the internal heartbeat project (0), which no analysis reads: the operator's data-path heartbeat (set by the operator from the platform's credentials)").secret();
    CAPTURE_MAX_EVENT_BYTES = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_MAX_EVENT_BYTES", "1048576", "largest event; must leave 64 KiB below `CAIRN_KAFKA_MESSAGE_MAX_BYTES`");
    CAPTURE_MAX_BATCH_BYTES = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_MAX_BATCH_BYTES", "20971520", "largest request body, after decompression");
    CAPTURE_MAX_EVENTS_PER_REQUEST = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_MAX_EVENTS_PER_REQUEST", "10000", "most events in one request (413 beyond), counted before any event is built");
    CAPTURE_MAX_JSON_VALUES = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_MAX_JSON_VALUES", "1000000", "most JSON keys and values in one request: events are built within this budget (413 beyond), so a small body of millions of tiny values cannot exhaust memory");
    CAPTURE_MEMORY_BUDGET_MB = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_MEMORY_BUDGET_MB", "256", "memory all requests in flight may use together (bodies, decoded bodies, values); beyond, a request waits up to 2 s, then gets 503 with Retry-After");
    CAPTURE_UNKNOWN_KEYS_PER_MINUTE = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_UNKNOWN_KEYS_PER_MINUTE", "60", "lookups of keys not known to be valid, per client address (429 beyond; `0` off); keys that resolved recently go through uncharged");
    CAPTURE_UNKNOWN_KEYS_BURST = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_UNKNOWN_KEYS_BURST", "30", "such lookups one address may make at once");
    CAPTURE_MAX_FUTURE_SECS = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_MAX_FUTURE_SECS", "82800", "how far in the future a timestamp may lie");
    CAPTURE_RATE_LIMIT_PER_SECOND = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_RATE_LIMIT_PER_SECOND", "100000", "events per second per key; `0` disables");
    CAPTURE_RATE_LIMIT_BURST = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_RATE_LIMIT_BURST", "200000", "events a key may send at once; a request with more events is refused with 413 (it could never fit), not charged the burst");
    CAPTURE_REPLICAS = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_REPLICAS", "1", "capture replicas sharing each key's rate and burst (each charges every event this many times), when `CAIRN_CAPTURE_PEERS` is not set");
    CAPTURE_PEERS = Setting { shown_default: Some("unset"), ..s(CaptureSection, &[Capture], "CAIRN_CAPTURE_PEERS", "", "a name that resolves to every capture replica (a headless Service; the operator sets it): their count, looked up every 10 s, is the replicas sharing each key's rate") };
    CAPTURE_ACK_TIMEOUT_MS = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_ACK_TIMEOUT_MS", "10000", "wait for Kafka's acknowledgement before 503");
    CAPTURE_LINGER_MS = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_LINGER_MS", "2", "producer batching delay");
    CAPTURE_LIVENESS_DEADLINE_MS = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_LIVENESS_DEADLINE_MS", "60000", "`/healthz` fails when the Kafka producer holds messages and resolves none for this long (every message resolves within the ack timeout, delivered or failed, so this means the producer is wedged); longer than the ack timeout");
    CAPTURE_RECORD_HEADERS = s(CaptureSection, &[Capture], "CAIRN_CAPTURE_RECORD_HEADERS", "true", "put the request id (Kafka header `cairn-request-id`) and, when traces are exported, `traceparent` on every record, so a dead letter or a stored event's trace leads back to its request; `false` saves capture about 0.7 µs of CPU per event (5 % in `make bench-capture`)");

    // Consumer.
    CONSUMER_ADDR = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_ADDR", "127.0.0.1:18001", "`/metrics`, `/healthz`, `/readyz`");
    CONSUMER_GROUP = s(ConsumerSection, &[Consumer, Query], "CAIRN_CONSUMER_GROUP", "cairn-consumer", "Kafka consumer group (query: whose progress closes the windows of scheduled event exports)");
    CONSUMER_BATCH_MAX_EVENTS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_BATCH_MAX_EVENTS", "10000", "insert when a batch holds this many records…");
    CONSUMER_BATCH_MAX_BYTES = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_BATCH_MAX_BYTES", "67108864", "…or when its records hold this many bytes…");
    CONSUMER_BATCH_MAX_AGE_MS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_BATCH_MAX_AGE_MS", "500", "…or when its first record is this old");
    CONSUMER_INSERT_TIMEOUT_MS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_INSERT_TIMEOUT_MS", "60000", "one insert's limit: then it is abandoned and retried (same deduplication token), counted in `cairn_consumer_insert_failures_total`");
    CONSUMER_LIVENESS_DEADLINE_MS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_LIVENESS_DEADLINE_MS", "180000", "`/healthz` fails when the consume loop has not turned for this long (it turns at least every quarter of it, and at every insert attempt)");
    CONSUMER_DEAD_LETTER_TIMEOUT_MS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_DEAD_LETTER_TIMEOUT_MS", "300000", "how long a dead letter that Kafka does not take is retried before it is dropped (error log, `cairn_consumer_dead_letter_failures_total`) so that consumption goes on");
    CONSUMER_RETRY_INITIAL_MS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_RETRY_INITIAL_MS", "100", "first pause of the insert retry backoff (full jitter)");
    CONSUMER_RETRY_MAX_MS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_RETRY_MAX_MS", "10000", "longest pause of the insert retry backoff");
    CONSUMER_SHUTDOWN_GRACE_MS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_SHUTDOWN_GRACE_MS", "20000", "how long SIGTERM may keep retrying the last batch");
    CONSUMER_SESSION_TIMEOUT_MS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_SESSION_TIMEOUT_MS", "10000", "how soon the group notices a dead consumer");
    CONSUMER_MAX_POLL_INTERVAL_MS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_MAX_POLL_INTERVAL_MS", "600000", "a consumer retrying longer than this leaves the group");
    CONSUMER_PERSONS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_PERSONS", "true", "decide identity events (`$identify`, `$create_alias`, `$merge_dangerously`) in PostgreSQL, in a second consumer group (`<CAIRN_CONSUMER_GROUP>-persons`), and copy the distinct ids they move to ClickHouse's `person_overrides`; `false`: identity events wait in Kafka, undecided (decisions made so far stay)");
    CONSUMER_PROJECT_DELETION_REPEAT_MS = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_PROJECT_DELETION_REPEAT_MS", "300000", "a deleted project's rows are deleted twice, this long apart: the second pass takes what Kafka still held at the first (or capture accepted while its revocation feed was out of reach)");
    CONSUMER_MIGRATE = s(ConsumerSection, &[Consumer], "CAIRN_CONSUMER_MIGRATE", "true", "apply ClickHouse migrations and the TTL at start");
    CLICKHOUSE_PROPERTY_COLUMNS = s(ConsumerSection, &[Consumer], "CAIRN_CLICKHOUSE_PROPERTY_COLUMNS", "$browser,$os,$device_type,$pathname,$host,$referring_domain,utm_source,utm_medium,utm_campaign", "event properties (comma-separated) made columns of the events table when the consumer migrates, so filters and breakdowns on them read a column instead of parsing JSON; existing rows are backfilled in the background. Keys of letters, digits and `$ _ - . : /` only; columns are never dropped");

    // PostgreSQL.
    POSTGRES_URL = s(Postgres, POSTGRES_USERS, "CAIRN_POSTGRES_URL", "postgres://postgres@127.0.0.1:55432/cairn", "the database (a Secret in a cluster; never logged with its password)").secret();
    POSTGRES_MAX_CONNECTIONS = s(Postgres, POSTGRES_USERS, "CAIRN_POSTGRES_MAX_CONNECTIONS", "10", "pool size per process");
    POSTGRES_MIGRATE = s(Postgres, AUTH_QUERY, "CAIRN_POSTGRES_MIGRATE", "true", "apply `schemas/postgres` at start (an advisory lock makes replicas apply it once; `cairn-auth migrate` applies it and exits)");

    // Auth.
    AUTH_ADDR = s(AuthSection, &[Auth], "CAIRN_AUTH_ADDR", "127.0.0.1:18002", "listen address");
    AUTH_TOKEN_SECRET = unset(AuthSection, &[Auth], "CAIRN_AUTH_TOKEN_SECRET", "random per process (warned)", "HMAC key of access tokens, ≥ 32 bytes; set it, or tokens die with the process and differ across replicas").secret();
    AUTH_ACCESS_TTL_SECS = s(AuthSection, &[Auth], "CAIRN_AUTH_ACCESS_TTL_SECS", "900", "access token lifetime");
    AUTH_REFRESH_TTL_SECS = s(AuthSection, &[Auth], "CAIRN_AUTH_REFRESH_TTL_SECS", "2592000", "session (refresh token) lifetime, extended by each refresh");
    AUTH_SESSION_MAX_AGE_SECS = s(AuthSection, &[Auth], "CAIRN_AUTH_SESSION_MAX_AGE_SECS", "7776000", "a session ends this long after sign-in, however often it is refreshed");
    AUTH_INVITATION_TTL_SECS = s(AuthSection, &[Auth], "CAIRN_AUTH_INVITATION_TTL_SECS", "604800", "how long an invitation to an organisation can be accepted");
    AUTH_HASH_CONCURRENCY = s(AuthSection, &[Auth], "CAIRN_AUTH_HASH_CONCURRENCY", "4", "password hashes (argon2id, 19 MiB each) computed at once, on as many worker threads that allocate their memory once; beyond, a login or signup waits up to 1 s, then gets 503");
    AUTH_LOGIN_PER_EMAIL_PER_MINUTE = s(AuthSection, &[Auth], "CAIRN_AUTH_LOGIN_PER_EMAIL_PER_MINUTE", "5", "login attempts per email (`0` off); then 429 with Retry-After");
    AUTH_LOGIN_PER_IP_PER_MINUTE = s(AuthSection, &[Auth], "CAIRN_AUTH_LOGIN_PER_IP_PER_MINUTE", "30", "login and signup attempts per client address");
    INTERNAL_TOKEN = unset(AuthSection, API, "CAIRN_INTERNAL_TOKEN", "unset (open, warned)", "shared secret guarding `/internal/v1/*` (key resolution, authentication); set it on auth, capture and query").secret();

    // Clients of auth.
    AUTH_URL = Setting { shown_default: Some("unset in capture (static keys only); `http://127.0.0.1:18002` in query"), ..s(AuthClient, &[Capture, Query], "CAIRN_AUTH_URL", "http://127.0.0.1:18002", "the auth service") };
    AUTH_CACHE_TTL_SECS = s(AuthClient, &[Capture, Query], "CAIRN_AUTH_CACHE_TTL_SECS", "30", "how long a resolved write key or authenticated credential is trusted (at most 60). Revocations reach the cache at once through the auth service's revocation feed; this bounds a revoked credential's life only while the feed cannot be followed");
    AUTH_CACHE_SIZE = s(AuthClient, &[Capture, Query], "CAIRN_AUTH_CACHE_SIZE", "100000", "cached credentials per process");

    // Query.
    QUERY_ADDR = s(QuerySection, &[Query], "CAIRN_QUERY_ADDR", "127.0.0.1:18003", "listen address; also the public API (auth's `/api/` routes are forwarded)");
    QUERY_TIMEOUT_MS = s(QuerySection, &[Query], "CAIRN_QUERY_TIMEOUT_MS", "30000", "a query running longer is cancelled (here and in ClickHouse) and answered 504");
    QUERY_FINAL = s(QuerySection, &[Query], "CAIRN_QUERY_FINAL", "true", "read events with `FINAL` so an unmerged duplicate delivery is never counted");
    QUERY_MAX_RANGE_DAYS = s(QuerySection, &[Query], "CAIRN_QUERY_MAX_RANGE_DAYS", "732", "longest date range");
    QUERY_MAX_BUCKETS = s(QuerySection, &[Query], "CAIRN_QUERY_MAX_BUCKETS", "1000", "most time buckets in a trend");
    QUERY_MAX_SERIES = s(QuerySection, &[Query], "CAIRN_QUERY_MAX_SERIES", "10", "series per trend, steps per funnel");
    QUERY_MAX_BREAKDOWN = s(QuerySection, &[Query], "CAIRN_QUERY_MAX_BREAKDOWN", "50", "breakdown values before the rest become `$other`");
    QUERY_MAX_ROWS = s(QuerySection, &[Query], "CAIRN_QUERY_MAX_ROWS", "1000", "rows per explorer page or picker");
    QUERY_MAX_FILTERS = s(QuerySection, &[Query], "CAIRN_QUERY_MAX_FILTERS", "30", "property filters per request");
    QUERY_MAX_MEMORY_BYTES = s(QuerySection, &[Query], "CAIRN_QUERY_MAX_MEMORY_BYTES", "4294967296", "memory one ClickHouse statement may use (`max_memory_usage`); 422 `too_expensive` beyond");
    QUERY_MAX_ROWS_TO_READ = s(QuerySection, &[Query], "CAIRN_QUERY_MAX_ROWS_TO_READ", "2000000000", "rows one statement may read (`max_rows_to_read`); 422 beyond. Every statement also runs with `readonly=2`");
    QUERY_MAX_CONCURRENT_PER_CALLER = s(QuerySection, &[Query], "CAIRN_QUERY_MAX_CONCURRENT_PER_CALLER", "4", "requests one user (or personal key's user) may have running at once; 429 beyond");
    QUERY_JOB_TIMEOUT_MS = s(QuerySection, &[Query], "CAIRN_QUERY_JOB_TIMEOUT_MS", "600000", "an analysis run as a job (`/query-jobs`) is cancelled after this long (here and in ClickHouse) and fails with 504");
    QUERY_JOB_WORKERS = s(QuerySection, &[Query], "CAIRN_QUERY_JOB_WORKERS", "4", "query jobs one replica runs at once; more wait (`queued`)");
    QUERY_JOB_MAX_QUEUED = s(QuerySection, &[Query], "CAIRN_QUERY_JOB_MAX_QUEUED", "64", "query jobs waiting on one replica; a new job is answered 429 beyond");
    QUERY_JOB_MAX_PER_CALLER = s(QuerySection, &[Query], "CAIRN_QUERY_JOB_MAX_PER_CALLER", "8", "queued or running query jobs one user may have (over every replica); 429 beyond");
    QUERY_CACHE_TTL_SECONDS = s(QuerySection, &[Query], "CAIRN_QUERY_CACHE_TTL_SECONDS", "300", "a query job's result answers identical jobs this long (`refresh: true` computes again; deleting a person or changing an event ends it at once); 0 turns the cache off");
    QUERY_EXPORT_MAX_ROWS = s(QuerySection, &[Query], "CAIRN_QUERY_EXPORT_MAX_ROWS", "1000000", "an events export (CSV or JSON lines) stops after this many rows and says so (`X-Cairn-Export-Truncated: true`)");
    QUERY_EXPORT_TIMEOUT_SECS = s(QuerySection, &[Query], "CAIRN_QUERY_EXPORT_TIMEOUT_SECS", "600", "an events export streaming longer is cut off (here and in ClickHouse)");
    EXPORT_LOCAL_ROOT = unset(QuerySection, &[Query], "CAIRN_EXPORT_LOCAL_ROOT", "unset", "scheduled event exports may write files under this directory (each export in a relative path of its own); unset: local destinations are refused");
    EXPORT_S3_ENDPOINT = unset(QuerySection, &[Query], "CAIRN_EXPORT_S3_ENDPOINT", "unset", "the S3-compatible service scheduled event exports may write to (e.g. `https://s3.eu-west-1.amazonaws.com`, a MinIO URL; path-style requests); unset: S3 destinations are refused");
    EXPORT_S3_REGION = s(QuerySection, &[Query], "CAIRN_EXPORT_S3_REGION", "us-east-1", "the region requests to it are signed for");
    EXPORT_S3_ACCESS_KEY_ID = unset(QuerySection, &[Query], "CAIRN_EXPORT_S3_ACCESS_KEY_ID", "none", "its access key id");
    EXPORT_S3_SECRET_ACCESS_KEY = unset(QuerySection, &[Query], "CAIRN_EXPORT_S3_SECRET_ACCESS_KEY", "none", "its secret access key").secret();
    EXPORT_POLL_SECS = s(QuerySection, &[Query], "CAIRN_EXPORT_POLL_SECS", "15", "how often a query replica looks for scheduled exports with a window to write");
    EXPORT_DEDUP_HOURS = s(QuerySection, &[Query], "CAIRN_EXPORT_DEDUP_HOURS", "24", "an event a client sends again within this long after its first receipt is not exported again (each event is written in the window of its first receipt)");
    EXPORT_SETTLE_SECS = s(QuerySection, &[Query], "CAIRN_EXPORT_SETTLE_SECS", "120", "how long after receiving an event capture may still be producing it: a window closes this long after the consumer group has consumed past it");
    QUERY_CORS_ORIGINS = Setting { shown_default: Some("empty"), ..s(QuerySection, &[Query], "CAIRN_QUERY_CORS_ORIGINS", "", "origins (comma-separated) whose pages may call the API from a browser (the dashboard is same-origin and needs none); capture accepts any origin, without credentials") };
    DASHBOARD_DIR = unset(QuerySection, &[Query], "CAIRN_DASHBOARD_DIR", "unset", "serve the dashboard's built files (`dashboard/dist`) at `/`; unset: `/` answers 404 (API only). `make up` sets it");

    // The operator.
    WATCH_NAMESPACE = unset(OperatorSection, &[Operator], "WATCH_NAMESPACE", "all", "watch one namespace only");
    POD_NAMESPACE = unset(OperatorSection, &[Operator], "POD_NAMESPACE", "from the pod", "where the leader Lease lives (and whose pods managed dependencies let in)");
    POD_NAME = unset(OperatorSection, &[Operator], "POD_NAME", "from the pod", "this replica's identity in leader election");
    OPERATOR_ADDR = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_ADDR", "0.0.0.0:8080", "`/metrics`, `/healthz`, `/readyz`");
    OPERATOR_RESYNC_SECS = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_RESYNC_SECS", "300", "how often a settled platform is looked at again (and a rotated Secret is noticed)");
    OPERATOR_RETRY_SECS = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_RETRY_SECS", "10", "how soon an unsettled or failing one is");
    OPERATOR_AUTOSCALE_SECS = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_AUTOSCALE_SECS", "30", "how often a platform whose consumer scales by lag (`targetLagPerReplica`) has its lag read and its consumer's replicas set");
    OPERATOR_HEARTBEAT_SECS = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_HEARTBEAT_SECS", "30", "how often the operator sends a heartbeat event through each platform's capture and reads it back from ClickHouse (`0` turns the heartbeat and `DataPathHealthy` off)");
    OPERATOR_FRESHNESS_THRESHOLD_SECS = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_FRESHNESS_THRESHOLD_SECS", "120", "a platform whose newest heartbeat in ClickHouse was sent longer ago than this has `DataPathHealthy=False` and is Degraded");
    OPERATOR_DEPENDENCY_TIMEOUT_SECS = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_DEPENDENCY_TIMEOUT_SECS", "30", "each call to Kafka or ClickHouse");
    OPERATOR_PROGRESS_DEADLINE_SECS = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_PROGRESS_DEADLINE_SECS", "600", "a workload rollout without progress this long fails (`ProgressDeadlineExceeded`)");
    OPERATOR_CLEANUP_TIMEOUT_SECS = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_CLEANUP_TIMEOUT_SECS", "600", "how long deleting a platform retries cleaning its external state before giving up");
    OPERATOR_PROPERTY_USAGE_SECS = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_PROPERTY_USAGE_SECS", "600", "how often each platform's ClickHouse query log is read to choose property columns from query usage (`spec.clickhouse.autoPropertyColumns`)");
    OPERATOR_DEFAULT_VERSION = unset(OperatorSection, &[Operator], "CAIRN_OPERATOR_DEFAULT_VERSION", "the operator's", "the Cairn version of platforms without `spec.version`");
    OPERATOR_LEADER_ELECTION = s(OperatorSection, &[Operator], "CAIRN_OPERATOR_LEADER_ELECTION", "true", "elect a leader through a Lease (two replicas are safe)");
}
