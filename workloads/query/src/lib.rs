//! `cairn-query`: answers from the events in ClickHouse (trends, funnels, retention, the events
//! explorer) and keeps saved insights and dashboards in PostgreSQL. Every request is
//! authenticated through the auth service and scoped to one project the caller may read.
//!
//! - [`routes`]: the HTTP API and its route list.
//! - [`caller`]: credentials → principal → per-project permission.
//! - [`trends`], [`funnels`], [`retention`], [`explorer`]: the analyses.
//! - [`persons`]: distinct ids resolved to persons (every analysis counts persons);
//!   [`persons_api`]: the persons list and one person.
//! - [`filters`], [`formula`], [`timerange`]: property filters, formulas, dates and buckets.
//! - [`sql`], [`engine`]: statements with bound parameters only, run with a time limit.
//! - [`insights`]: insights and dashboards in PostgreSQL.
//! - [`gateway`]: the rest of `/api/` forwarded to the auth service (one public API).

pub mod activity;
pub mod apidocs;
pub mod caller;
pub mod cohorts;
pub mod config;
pub mod dashboard;
pub mod deletions;
pub mod engine;
pub mod event_changes;
pub mod event_exports;
pub mod explorer;
pub mod export;
pub mod filters;
pub mod formula;
pub mod funnels;
pub mod gateway;
pub mod insights;
pub mod jobs;
pub mod lifecycle;
pub mod materialized;
pub mod metrics;
pub mod paths;
pub mod persons;
pub mod persons_api;
pub mod retention;
pub mod routes;
pub mod s3;
pub mod sample_data;
pub mod sessions;
pub mod sql;
pub mod stickiness;
pub mod timerange;
pub mod trends;
pub mod user_sql;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, Method};
use cairn_auth_client::AuthClient;
use cairn_common::telemetry::{admin_router, Health};
use prometheus_client::registry::Registry;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::QueryConfig;
use crate::engine::Engine;
use crate::metrics::QueryMetrics;
use crate::routes::AppState;
use crate::sql::EventsSource;

/// Runs the service until SIGTERM/SIGINT.
pub async fn run(cfg: QueryConfig) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = cairn_common::shutdown::on_signal();
    let mut registry = Registry::default();
    let metrics = Arc::new(QueryMetrics::register(&mut registry));
    let health = Health::new();

    let pg = cairn_postgres::pool(&cfg.postgres)?;
    if cfg.postgres.migrate_on_start {
        // Auth usually applies the schema first; either service may, the lock makes it once.
        let pg = pg.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                match cairn_postgres::migrate(&pg).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "PostgreSQL migrations not applied yet; retrying")
                    }
                }
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(2)) => {} }
            }
        });
    }

    let ch = cairn_common::clickhouse::client(&cfg.clickhouse);
    spawn_readiness(health.clone(), shutdown.clone(), ch.clone(), pg.clone());
    // Funnels read events_by_person only once its backfill is done (asked every 30 s).
    let by_person = engine::ByPersonReady::default();
    by_person.set(false);
    {
        let (by_person, ch, stop) = (by_person.clone(), ch.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                match by_person.refresh(&ch).await {
                    Ok(ready) => tracing::debug!(ready, "events_by_person readiness"),
                    Err(e) => tracing::debug!(error = %e, "cannot tell whether events_by_person is complete"),
                }
                match materialized::refresh(&ch).await {
                    Ok(n) => tracing::debug!(columns = n, "property columns"),
                    Err(e) => tracing::debug!(error = %e, "cannot read the property columns"),
                }
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(30)) => {} }
            }
        });
    }

    let job_runner = Arc::new(jobs::Jobs::new(cfg.jobs.clone(), metrics.jobs.clone()));
    let state = Arc::new(AppState {
        engine: Engine {
            ch,
            source: EventsSource::new(cfg.read_final),
            limits: cfg.limits.clone(),
            timeout: cfg.timeout,
            by_person: by_person.clone(),
            changed: Default::default(),
            comment: None,
        },
        pg,
        auth: AuthClient::new(cfg.auth.clone())?,
        metrics,
        slots: caller::CallerSlots::new(cfg.limits.max_concurrent_per_caller),
        // Event updates and deletions go to Kafka: a change is acknowledged within the query
        // timeout, and at most 10 s.
        changes: event_changes::EventsProducer::new(&cfg.kafka, cfg.timeout.min(Duration::from_secs(10))),
        jobs: job_runner.clone(),
        export: cfg.export.clone(),
        exports: cfg.exports.clone(),
    });
    // Scheduled event exports: every replica takes turns (a lease per export).
    {
        let mut engine = state.engine.clone();
        engine.timeout = cfg.export.timeout;
        let runner = Arc::new(event_exports::Runner {
            cfg: cfg.exports.clone(),
            kafka: cfg.kafka.clone(),
            pg: state.pg.clone(),
            engine,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(cfg.export.timeout)
                .build()
                .map_err(|e| std::io::Error::other(format!("the HTTP client for exports: {e}")))?,
            owner: format!("query-{}", uuid::Uuid::new_v4().simple()),
        });
        let stop = shutdown.clone();
        tokio::spawn(runner.run(stop));
    }
    // Revoked sessions and keys, deleted projects and changed roles leave the cache at once.
    {
        let (auth, stop) = (state.auth.clone(), shutdown.clone());
        tokio::spawn(async move { auth.follow_revocations(stop).await });
    }
    // Query jobs that ended a day ago are deleted.
    {
        let (pg, stop) = (state.pg.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                match jobs::delete_old(&pg).await {
                    Ok(n) if n > 0 => tracing::info!(jobs = n, "old query jobs deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e.message, "cannot delete old query jobs"),
                }
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(600)) => {} }
            }
        });
    }
    // Cohort sizes older than an hour are counted again, a few at a time.
    {
        let (state, stop) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(600)) => {} }
                match cohorts::refresh_stale(&state.engine, &state.pg, Duration::from_secs(3600), 20).await {
                    Ok(n) if n > 0 => tracing::info!(cohorts = n, "cohort sizes recomputed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e.message, "cannot recompute cohort sizes"),
                }
            }
        });
    }
    let dashboard = match &cfg.dashboard_dir {
        Some(dir) => {
            tracing::info!(dir = %dir.display(), "serving the dashboard at /");
            Some(dashboard::Dashboard::new(dir)?)
        }
        None => None,
    };
    let unrouted = Unrouted { gateway: gateway::Gateway::new(&cfg.auth.url)?, dashboard };
    let fallback = axum::Router::new().fallback(answer_unrouted).with_state(unrouted);
    // The dashboard is served from the same origin; other pages may call the API only from the
    // configured origins, with their bearer token (never cookies: the API does not use them).
    let origins: Vec<axum::http::HeaderValue> = cfg.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(Duration::from_secs(86400));
    let app = routes::router(state, fallback).layer(cors);
    let admin = admin_router(Arc::new(registry), health);
    tracing::info!(addr = %cfg.addr, clickhouse = %cfg.clickhouse.url, "query listening");
    let served =
        cairn_common::server::serve_service(cfg.addr, app, admin, cfg.admin_addr, cfg.server.clone(), shutdown.clone())
            .await;
    // The jobs running here stop with the replica (recorded failed, to be run again) and their
    // statements are killed, rather than running on in ClickHouse for minutes.
    job_runner.stop_all(Duration::from_secs(3)).await;
    served?;
    tracing::info!("query stopped");
    Ok(())
}

/// What answers the requests that no API route matched.
#[derive(Clone)]
struct Unrouted {
    gateway: gateway::Gateway,
    dashboard: Option<dashboard::Dashboard>,
}

/// The rest of `/api/` goes to auth; other GETs get the dashboard when it is served; else 404.
async fn answer_unrouted(
    axum::extract::State(u): axum::extract::State<Unrouted>,
    req: axum::http::Request<axum::body::Body>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req.uri().path().starts_with("/api/") {
        return gateway::forward(&u.gateway, req).await;
    }
    match &u.dashboard {
        Some(d) if matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD) => {
            match d.clone().serve(req).await {
                Ok(res) => res.into_response(),
                Err(never) => match never {},
            }
        }
        _ => cairn_common::http::ApiError::not_found("route").into_response(),
    }
}

/// Ready while ClickHouse and PostgreSQL answer.
fn spawn_readiness(
    health: Health,
    stop: tokio_util::sync::CancellationToken,
    ch: clickhouse::Client,
    pg: sqlx::PgPool,
) {
    health.register("clickhouse");
    health.register("postgres");
    tokio::spawn(async move {
        loop {
            match cairn_common::clickhouse::ping(&ch).await {
                Ok(()) => health.set("clickhouse", true, "ok"),
                Err(e) => health.set("clickhouse", false, e.to_string()),
            }
            match cairn_postgres::ping(&pg).await {
                Ok(()) => health.set("postgres", true, "ok"),
                Err(e) => health.set("postgres", false, e.to_string()),
            }
            let pause = if health.is_ready() { Duration::from_secs(5) } else { Duration::from_millis(500) };
            tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(pause) => {} }
        }
    });
}
