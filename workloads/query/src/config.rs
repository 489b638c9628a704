//! The query service's configuration (environment variables; see docs/OPERATIONS.md).

use std::net::SocketAddr;
use std::time::Duration;

use std::path::PathBuf;

use cairn_auth_client::AuthClientConfig;
use cairn_common::config::catalogue::*;
use cairn_common::config::{ClickHouseConfig, ConfigError, KafkaConfig, NoEnv, ProcessEnv, Source};
use cairn_common::server::{admin_addr_from_source, ServerLimits};
use cairn_postgres::PostgresConfig;

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
    /// The catalogue's defaults.
    fn default() -> Self {
        match Self::from_source(&NoEnv) {
            Ok(limits) => limits,
            Err(e) => unreachable!("the catalogue's defaults parse (tested): {e}"),
        }
    }
}

impl Limits {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            max_range_days: QUERY_MAX_RANGE_DAYS.parse(env)?,
            max_buckets: QUERY_MAX_BUCKETS.parse(env)?,
            max_series: QUERY_MAX_SERIES.parse(env)?,
            max_breakdown: QUERY_MAX_BREAKDOWN.parse(env)?,
            max_rows: QUERY_MAX_ROWS.parse(env)?,
            max_filters: QUERY_MAX_FILTERS.parse(env)?,
            max_memory_bytes: QUERY_MAX_MEMORY_BYTES.parse(env)?,
            max_rows_to_read: QUERY_MAX_ROWS_TO_READ.parse(env)?,
            max_concurrent_per_caller: QUERY_MAX_CONCURRENT_PER_CALLER.parse::<usize>(env)?.max(1),
        })
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
    /// Kafka: event updates and deletions are produced to the events topic.
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    /// The auth service (`CAIRN_AUTH_URL`, its cache and the internal token).
    pub auth: AuthClientConfig,
    /// `CAIRN_HTTP_*`: the listener's limits.
    pub server: ServerLimits,
    /// `CAIRN_ADMIN_ADDR`: serve `/metrics`, `/healthz` and `/readyz` there instead of on `addr`
    /// (the Ingress sends `/` to query, so in a cluster they must not be on the API port).
    pub admin_addr: Option<SocketAddr>,
    /// `CAIRN_QUERY_CORS_ORIGINS`: origins (comma-separated) whose pages may call the API from a
    /// browser; empty (the default) allows none but the dashboard's own origin.
    pub cors_origins: Vec<String>,
    /// `CAIRN_DASHBOARD_DIR`: serve the dashboard's built files at `/`.
    pub dashboard_dir: Option<PathBuf>,
    /// `CAIRN_QUERY_JOB_*`, `CAIRN_QUERY_CACHE_TTL_SECONDS`: analyses run as jobs.
    pub jobs: crate::jobs::JobsConfig,
    /// `CAIRN_QUERY_EXPORT_*`: events exports.
    pub export: crate::export::ExportLimits,
    /// `CAIRN_EXPORT_*`, `CAIRN_CONSUMER_GROUP`: scheduled event exports.
    pub exports: crate::event_exports::ExportsConfig,
}

impl QueryConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            addr: QUERY_ADDR.parse(env)?,
            timeout: QUERY_TIMEOUT_MS.millis(env)?,
            read_final: QUERY_FINAL.bool(env)?,
            limits: Limits::from_source(env)?,
            clickhouse: ClickHouseConfig::from_source(env)?,
            kafka: KafkaConfig::from_source(env)?,
            postgres: PostgresConfig::from_source(env)?,
            auth: AuthClientConfig::from_source(env)?,
            server: ServerLimits::from_source(env)?,
            admin_addr: admin_addr_from_source(env)?,
            cors_origins: QUERY_CORS_ORIGINS
                .string(env)
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            dashboard_dir: DASHBOARD_DIR.opt(env).map(PathBuf::from),
            jobs: crate::jobs::JobsConfig {
                timeout: QUERY_JOB_TIMEOUT_MS.millis(env)?,
                workers: QUERY_JOB_WORKERS.parse::<usize>(env)?.max(1),
                max_queued: QUERY_JOB_MAX_QUEUED.parse(env)?,
                max_per_caller: QUERY_JOB_MAX_PER_CALLER.parse::<i64>(env)?.max(1),
                cache_ttl: QUERY_CACHE_TTL_SECONDS.secs(env)?,
            },
            exports: crate::event_exports::ExportsConfig {
                local_root: EXPORT_LOCAL_ROOT.opt(env).map(PathBuf::from),
                s3: {
                    // Every setting read, so a typo in one is never silently ignored.
                    let (endpoint, region, key_id, secret) = (
                        EXPORT_S3_ENDPOINT.opt(env),
                        EXPORT_S3_REGION.string(env),
                        EXPORT_S3_ACCESS_KEY_ID.opt(env),
                        EXPORT_S3_SECRET_ACCESS_KEY.secret_value(env),
                    );
                    endpoint.map(|endpoint| crate::s3::S3Config {
                        endpoint,
                        region,
                        access_key_id: key_id.unwrap_or_default(),
                        secret_access_key: secret.unwrap_or_else(|| String::new().into()),
                    })
                },
                poll: EXPORT_POLL_SECS.secs(env)?.max(Duration::from_secs(1)),
                settle: EXPORT_SETTLE_SECS.secs(env)?,
                consumer_group: CONSUMER_GROUP.string(env),
                dedup_horizon: Duration::from_secs(EXPORT_DEDUP_HOURS.parse::<u64>(env)?.max(1) * 3600),
            },
            export: crate::export::ExportLimits {
                max_rows: QUERY_EXPORT_MAX_ROWS.parse::<u64>(env)?.max(1),
                timeout: QUERY_EXPORT_TIMEOUT_SECS.secs(env)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {

    use cairn_common::config::{read_by_configuration, Recording, Service};

    use super::*;

    #[test]
    fn reads_its_declared_settings_and_no_others() {
        let rec = Recording::new(NoEnv);
        QueryConfig::from_source(&rec).unwrap();
        assert_eq!(rec.read(), read_by_configuration(Service::Query));
    }

    #[test]
    fn the_default_limits_are_the_catalogues() {
        let l = Limits::default();
        assert_eq!((l.max_range_days, l.max_buckets, l.max_series, l.max_breakdown), (732, 1000, 10, 50));
        assert_eq!((l.max_rows, l.max_filters, l.max_concurrent_per_caller), (1000, 30, 4));
        assert_eq!((l.max_memory_bytes, l.max_rows_to_read), (4 << 30, 2_000_000_000));
    }
}
