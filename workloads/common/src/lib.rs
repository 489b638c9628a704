//! `cairn-common`: the pieces every Cairn workload shares, written once.
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
//! - [`postgres`]: the PostgreSQL pool and the embedded migrations of `schemas/postgres`.
//! - [`trace`]: request ids and request spans (answered in `X-Request-Id`, carried to Kafka).
//! - [`auth_client`]: the auth service's internal API as its callers (capture, query) use it:
//!   principals, roles, permissions, and a caching client.

pub mod auth_client;
pub mod clickhouse;
pub mod config;
pub mod event;
pub mod http;
pub mod kafka;
pub mod postgres;
pub mod retry;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod trace;
