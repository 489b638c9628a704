//! cairn-auth: users, organisations, projects, login sessions and API keys.
//!
//! The public API (`/api/v1`, [`api`]) is what people and the dashboard use; the internal API
//! (`/internal/v1`, [`internal`]) answers capture (write key → project) and query (credential →
//! [`cairn_auth_client::Principal`]). Layout: [`router`] (every route, metrics),
//! [`extract`] (who is calling), [`sessions`] (login sessions, refresh rotation), [`password`],
//! [`tokens`] (access and refresh tokens), [`keys`] (API keys), [`permissions`], [`limits`]
//! (login rate limits), [`validate`], [`db`] (errors, membership checks), [`model`].

pub mod api;
pub mod config;
pub mod db;
pub mod extract;
pub mod hashing;
pub mod internal;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod password;
pub mod permissions;
pub mod revocations;
pub mod router;
pub mod sessions;
pub mod state;
pub mod tokens;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use cairn_common::telemetry::{admin_router, Health};
use cairn_postgres::{migrate, ping, pool};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::AuthConfig;
use crate::limits::LoginLimiter;
use crate::metrics::AuthMetrics;
use crate::state::AppState;
use crate::tokens::{random_bytes, TokenSigner};

/// `cairn-auth migrate`: applies the PostgreSQL migrations and returns.
pub async fn migrate_only(cfg: &AuthConfig) -> Result<(), Box<dyn std::error::Error>> {
    let db = pool(&cfg.postgres)?;
    migrate(&db).await?;
    tracing::info!("PostgreSQL migrations applied");
    Ok(())
}

/// Runs the auth service until SIGTERM or SIGINT.
pub async fn run(cfg: AuthConfig) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = cairn_common::shutdown::on_signal();
    let mut registry = Registry::default();
    let metrics = Arc::new(AuthMetrics::register(&mut registry));
    let health = Health::new();

    let secret = match &cfg.token_secret {
        Some(s) => cairn_common::config::ExposeSecret::expose_secret(s).as_bytes().to_vec(),
        None => {
            tracing::warn!(
                "CAIRN_AUTH_TOKEN_SECRET is not set: using a random key for this process only; access tokens \
                 will not survive a restart and will not work across replicas"
            );
            random_bytes::<32>().to_vec()
        }
    };
    if cfg.internal_token.is_none() {
        tracing::warn!("CAIRN_INTERNAL_TOKEN is not set: /internal endpoints are open to anyone who can reach them");
    }

    let db = pool(&cfg.postgres)?;
    health.register("postgres");
    if cfg.postgres.migrate_on_start {
        health.register("migrations");
        spawn_migrations(db.clone(), health.clone(), shutdown.clone());
    }
    {
        let db = db.clone();
        let handle = tokio::runtime::Handle::current();
        cairn_common::telemetry::spawn_probe(health.clone(), "postgres", shutdown.clone(), move || {
            handle.block_on(ping(&db)).map(|()| "reachable".to_string()).map_err(|e| e.to_string())
        });
    }

    let hasher = hashing::HashPool::new(cfg.hash_concurrency, Duration::from_secs(1));
    let dummy = String::from_utf8_lossy(&random_bytes::<24>()).into_owned();
    let dummy_hash = hasher.run(move |m| password::hash_with(&dummy, m)).await??;
    let state = Arc::new(AppState {
        db,
        signer: TokenSigner::new(&secret, cfg.access_ttl),
        refresh_ttl: cfg.refresh_ttl,
        session_max_age: cfg.session_max_age,
        invitation_ttl: cfg.invitation_ttl,
        limiter: LoginLimiter::new(cfg.login_per_email_per_minute, cfg.login_per_ip_per_minute),
        metrics,
        internal_token: cfg.internal_token.clone(),
        trusted_proxies: cfg.trusted_proxies.clone(),
        hasher,
        dummy_hash,
        usage: Default::default(),
        revocations: tokio::sync::watch::Sender::new(0),
        feed_max_wait: revocations::MAX_WAIT.min(cfg.server.request_timeout / 2),
    });
    revocations::spawn_listener(state.db.clone(), state.revocations.clone(), shutdown.clone());
    revocations::spawn_pruning(state.db.clone(), shutdown.clone());
    {
        let state = state.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(60)) => {} }
                state.limiter.forget_idle();
            }
        });
    }

    let app = router::router(state);
    let admin = admin_router(Arc::new(registry), health);
    tracing::info!(addr = %cfg.addr, postgres = %cfg.postgres.redacted_url(), "auth listening");
    cairn_common::server::serve_service(cfg.addr, app, admin, cfg.admin_addr, cfg.server.clone(), shutdown.clone())
        .await?;
    tracing::info!("auth stopped");
    Ok(())
}

/// Applies the migrations, retrying while PostgreSQL cannot be reached; readiness waits for it.
fn spawn_migrations(db: sqlx::PgPool, health: Health, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut backoff = cairn_common::retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        loop {
            match migrate(&db).await {
                Ok(()) => {
                    health.set("migrations", true, "applied");
                    return;
                }
                Err(e) => health.set("migrations", false, e.to_string()),
            }
            if !backoff.wait(&stop).await {
                return;
            }
        }
    });
}
