//! PostgreSQL: connection settings, the pool, and the schema's migrations.
//!
//! The schema lives once, in `schemas/postgres/NNNN_name.sql`, embedded at build time. Auth and
//! query both apply it at start (sqlx takes an advisory lock, so replicas starting together apply
//! each migration once) or through `cairn-auth migrate`; applied versions and checksums are kept
//! in `_sqlx_migrations`, and a changed file that was already applied is refused.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use thiserror::Error;

use cairn_common::config::catalogue::{POSTGRES_MAX_CONNECTIONS, POSTGRES_MIGRATE, POSTGRES_URL};
use cairn_common::config::{ConfigError, ExposeSecret, SecretString, Source};

/// The embedded migrations of `schemas/postgres`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../schemas/postgres");

/// Where a service finds PostgreSQL.
#[derive(Clone)]
pub struct PostgresConfig {
    /// `CAIRN_POSTGRES_URL`: a libpq-style URL, e.g. `postgres://user:pass@host:5432/cairn`.
    pub url: SecretString,
    /// `CAIRN_POSTGRES_MAX_CONNECTIONS`.
    pub max_connections: u32,
    /// `CAIRN_POSTGRES_MIGRATE`: apply the migrations at start (default true).
    pub migrate_on_start: bool,
}

impl std::fmt::Debug for PostgresConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_url(self.url.expose_secret()))
            .field("max_connections", &self.max_connections)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

impl PostgresConfig {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            url: SecretString::from(POSTGRES_URL.string(env)),
            max_connections: POSTGRES_MAX_CONNECTIONS.parse(env)?,
            migrate_on_start: POSTGRES_MIGRATE.bool(env)?,
        })
    }

    /// The URL with any password replaced, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }
}

/// The URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Error)]
pub enum PostgresError {
    #[error("invalid CAIRN_POSTGRES_URL: {0}")]
    InvalidUrl(sqlx::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(sqlx::Error),
    #[error("PostgreSQL migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A pool that connects lazily: a service starts (and reports not-ready) while PostgreSQL is down.
pub fn pool(config: &PostgresConfig) -> Result<PgPool, PostgresError> {
    let options: PgConnectOptions = config.url.expose_secret().parse().map_err(PostgresError::InvalidUrl)?;
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options.application_name("cairn")))
}

/// Applies every migration not applied yet.
pub async fn migrate(pool: &PgPool) -> Result<(), PostgresError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// A database error as an API caller sees it: 503 when PostgreSQL cannot be reached, 500
/// otherwise (the detail goes to the log, not to the caller).
pub fn api_error(e: sqlx::Error) -> cairn_common::http::ApiError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            tracing::warn!(error = %e, "PostgreSQL unavailable");
            cairn_common::http::ApiError::unavailable("the database is unavailable; retry shortly")
        }
        other => cairn_common::http::ApiError::internal(format!("PostgreSQL: {other}")),
    }
}

/// `SELECT 1`, for readiness.
pub async fn ping(pool: &PgPool) -> Result<(), PostgresError> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ()).map_err(PostgresError::Connect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn migrations_are_embedded_in_order() {
        let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert!(versions.len() >= 2, "{versions:?}");
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    }
}
