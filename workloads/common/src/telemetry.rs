//! Telemetry: JSON logs, Prometheus metrics, liveness and readiness.
//!
//! Every service calls [`init_tracing`] first, registers its metrics in one
//! [`prometheus_client::registry::Registry`], reports the state of its dependencies through a
//! [`Health`], and serves [`admin_router`]: `/metrics`, `/healthz` (the process is alive) and
//! `/readyz` (every dependency check passes; 503 with the failing ones otherwise).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber: JSON lines on stdout, filtered by `CAIRN_LOG` (or
/// `RUST_LOG`), `info` by default. `CAIRN_LOG_FORMAT=text` gives human-readable lines instead.
pub fn init_tracing(service: &'static str) {
    let filter = std::env::var("CAIRN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,rdkafka=warn".to_string());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let text = std::env::var("CAIRN_LOG_FORMAT").map(|f| f == "text").unwrap_or(false);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let result =
        if text { builder.try_init() } else { builder.json().flatten_event(true).with_current_span(false).try_init() };
    if result.is_ok() {
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
    }
}

/// The state of one dependency check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckState {
    pub ready: bool,
    pub detail: String,
}

/// Readiness of a service: a set of named checks, each ready or not. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    checks: Arc<RwLock<BTreeMap<&'static str, CheckState>>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check, not ready until [`Health::set`] says so.
    pub fn register(&self, name: &'static str) {
        self.set(name, false, "starting");
    }

    /// Records the state of a check.
    pub fn set(&self, name: &'static str, ready: bool, detail: impl Into<String>) {
        let detail = detail.into();
        if let Ok(mut checks) = self.checks.write() {
            let changed = checks.get(name).map(|c| c.ready != ready).unwrap_or(true);
            if changed {
                if ready {
                    tracing::info!(check = name, %detail, "dependency ready");
                } else {
                    tracing::warn!(check = name, %detail, "dependency not ready");
                }
            }
            checks.insert(name, CheckState { ready, detail });
        }
    }

    /// True when every check is ready.
    pub fn is_ready(&self) -> bool {
        self.checks.read().map(|c| c.values().all(|s| s.ready)).unwrap_or(false)
    }

    /// True when the named check is registered and ready.
    pub fn check(&self, name: &str) -> bool {
        self.checks.read().map(|c| c.get(name).map(|s| s.ready).unwrap_or(false)).unwrap_or(false)
    }

    fn snapshot(&self) -> BTreeMap<&'static str, CheckState> {
        self.checks.read().map(|c| c.clone()).unwrap_or_default()
    }
}

/// Runs the blocking `probe` until `stop` and records its result in `health` under `check`:
/// every 5 s while it succeeds, every 500 ms while it fails, so that a dependency coming back is
/// noticed within a second. `probe` returns a detail text either way.
pub fn spawn_probe<F>(health: Health, check: &'static str, stop: tokio_util::sync::CancellationToken, probe: F)
where
    F: Fn() -> Result<String, String> + Send + Sync + 'static,
{
    let probe = Arc::new(probe);
    tokio::spawn(async move {
        loop {
            let p = Arc::clone(&probe);
            let result = tokio::task::spawn_blocking(move || p()).await.unwrap_or_else(|e| Err(e.to_string()));
            let pause = match result {
                Ok(detail) => {
                    health.set(check, true, detail);
                    std::time::Duration::from_secs(5)
                }
                Err(reason) => {
                    health.set(check, false, reason);
                    std::time::Duration::from_millis(500)
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    });
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    health: Health,
}

/// `/metrics`, `/healthz` and `/readyz`, to merge into a service's router or serve on their own.
pub fn admin_router(registry: Arc<Registry>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AdminState { registry, health })
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let checks = state.health.snapshot();
    let ready = checks.values().all(|c| c.ready);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({"status": if ready { "ready" } else { "not ready" }, "checks": checks})))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_is() {
        let h = Health::new();
        assert!(h.is_ready(), "no checks means nothing to wait for");
        h.register("kafka");
        h.register("clickhouse");
        assert!(!h.is_ready());
        h.set("kafka", true, "connected");
        assert!(!h.is_ready());
        assert!(h.check("kafka"));
        h.set("clickhouse", true, "ok");
        assert!(h.is_ready());
        h.set("kafka", false, "all brokers down");
        assert!(!h.is_ready());
    }
}
