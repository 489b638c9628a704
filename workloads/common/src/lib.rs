//! `cairn-common`: the pieces every Cairn workload and the operator share, written once. What only
//! some services need lives beside them: `cairn-auth-client` (the auth service's internal API and
//! its caching client, for capture and query) and `cairn-postgres` (the pool and the migrations,
//! for auth and query), so the operator, capture and the consumer link neither sqlx nor reqwest.
//!
//! - [`event`]: the event model (what capture writes to Kafka and the consumer reads back) and its
//!   validation.
//! - [`config`]: configuration from environment variables, each declared once in
//!   [`config::catalogue`], with defaults that work against the local stack (`make up`).
//! - [`telemetry`]: JSON logs through `tracing`, the Prometheus registry, and the `/metrics`,
//!   `/healthz` and `/readyz` endpoints.
//! - [`http`]: the JSON error shape and body extractor of Cairn's HTTP APIs.
//! - [`shutdown`]: SIGTERM/SIGINT turned into a cancellation token.
//! - [`kafka`]: librdkafka client configuration shared by producers and consumers.
//! - [`clickhouse`]: the ClickHouse client, the events table's row type and the migration runner.
//! - [`retry`]: the one backoff with full jitter, cancellable.
//! - [`server`]: the HTTP listener with its bounds (connections, header and request timeouts),
//!   the admin endpoints, trusted proxies.
//! - [`trace`]: request ids and request spans (answered in `X-Request-Id`, carried to Kafka).

pub mod clickhouse;
pub mod config;
pub mod event;
pub mod http;
pub mod kafka;
pub mod retry;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod trace;
