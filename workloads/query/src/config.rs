//! The query service's configuration (environment variables; see docs/OPERATIONS.md).

use std::net::SocketAddr;
use std::time::Duration;

use cairn_common::config::{env_addr, env_bool, env_millis, env_parse, ClickHouseConfig, ConfigError};
use cairn_common::postgres::PostgresConfig;

/// What one request may ask for. Each limit answers 400 naming the field when exceeded.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `CAIRN_QUERY_MAX_RANGE_DAYS`: the longest date range (default 732, two years).
    pub max_range_days: i64,
    /// `CAIRN_QUERY_MAX_BUCKETS`: the most time buckets in a trend (default 1,000; an hourly trend
    /// over 42 days is the most that fits).
    pub max_buckets: usize,
    /// `CAIRN_QUERY_MAX_SERIES`: series in a trend, steps in a funnel (default 10).
    pub max_series: usize,
    /// `CAIRN_QUERY_MAX_BREAKDOWN`: breakdown values shown before the rest become "other"
    /// (default 50; a request asks for fewer with `breakdown.limit`).
    pub max_breakdown: usize,
    /// `CAIRN_QUERY_MAX_ROWS`: rows per page of the events explorer and the pickers (default 1,000).
    pub max_rows: usize,
    /// `CAIRN_QUERY_MAX_FILTERS`: property filters in one request (default 30).
    pub max_filters: usize,
    /// `CAIRN_QUERY_MAX_MEMORY_BYTES`: memory one ClickHouse statement may use (default 4 GiB;
    /// ClickHouse's `max_memory_usage`).
    pub max_memory_bytes: u64,
    /// `CAIRN_QUERY_MAX_ROWS_TO_READ`: rows one statement may read (default 2 billion;
    /// `max_rows_to_read`).
    pub max_rows_to_read: u64,
    /// `CAIRN_QUERY_MAX_CONCURRENT_PER_CALLER`: analyses one user or key may run at once (default
    /// 4; 429 beyond).
    pub max_concurrent_per_caller: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_range_days: 732,
            max_buckets: 1000,
            max_series: 10,
            max_breakdown: 50,
            max_rows: 1000,
            max_filters: 30,
            max_memory_bytes: 4 << 30,
            max_rows_to_read: 2_000_000_000,
            max_concurrent_per_caller: 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// `CAIRN_QUERY_ADDR`: where to listen (default `127.0.0.1:18003`).
    pub addr: SocketAddr,
    /// `CAIRN_QUERY_TIMEOUT_MS`: a query running longer is cancelled and answered 504 (default 30 s).
    pub timeout: Duration,
    /// `CAIRN_QUERY_FINAL`: read the events table with `FINAL`, so that a duplicate delivery not
    /// merged away yet is never counted twice (default true).
    pub read_final: bool,
    pub limits: Limits,
    pub clickhouse: ClickHouseConfig,
    pub postgres: PostgresConfig,
    /// `CAIRN_HTTP_*`: the listener's limits.
    pub server: cairn_common::server::ServerLimits,
    /// `CAIRN_ADMIN_ADDR`: serve `/metrics`, `/healthz` and `/readyz` there instead of on `addr`
    /// (the Ingress sends `/` to query, so in a cluster they must not be on the API port).
    pub admin_addr: Option<SocketAddr>,
    /// `CAIRN_QUERY_CORS_ORIGINS`: origins (comma-separated) whose pages may call the API from a
    /// browser; empty (the default) allows none but the dashboard's own origin.
    pub cors_origins: Vec<String>,
}

impl QueryConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Limits::default();
        Ok(Self {
            addr: env_addr("CAIRN_QUERY_ADDR", "127.0.0.1:18003")?,
            timeout: env_millis("CAIRN_QUERY_TIMEOUT_MS", 30_000)?,
            read_final: env_bool("CAIRN_QUERY_FINAL", true)?,
            limits: Limits {
                max_range_days: env_parse("CAIRN_QUERY_MAX_RANGE_DAYS", d.max_range_days)?,
                max_buckets: env_parse("CAIRN_QUERY_MAX_BUCKETS", d.max_buckets)?,
                max_series: env_parse("CAIRN_QUERY_MAX_SERIES", d.max_series)?,
                max_breakdown: env_parse("CAIRN_QUERY_MAX_BREAKDOWN", d.max_breakdown)?,
                max_rows: env_parse("CAIRN_QUERY_MAX_ROWS", d.max_rows)?,
                max_filters: env_parse("CAIRN_QUERY_MAX_FILTERS", d.max_filters)?,
                max_memory_bytes: env_parse("CAIRN_QUERY_MAX_MEMORY_BYTES", d.max_memory_bytes)?,
                max_rows_to_read: env_parse("CAIRN_QUERY_MAX_ROWS_TO_READ", d.max_rows_to_read)?,
                max_concurrent_per_caller: env_parse(
                    "CAIRN_QUERY_MAX_CONCURRENT_PER_CALLER",
                    d.max_concurrent_per_caller,
                )?
                .max(1),
            },
            clickhouse: ClickHouseConfig::from_env()?,
            postgres: PostgresConfig::from_env()?,
            server: cairn_common::server::ServerLimits::from_env()?,
            admin_addr: cairn_common::server::admin_addr_from_env()?,
            cors_origins: cairn_common::config::env_string("CAIRN_QUERY_CORS_ORIGINS", "")
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
        })
    }
}
