//! Telemetry: JSON logs, Prometheus metrics, liveness and readiness.
//!
//! Every service calls [`init_tracing`] first, registers its metrics in one
//! [`prometheus_client::registry::Registry`], reports the state of its dependencies through a
//! [`Health`], and serves [`admin_router`]: `/metrics`, `/healthz` (every long-running component
//! reported in time; 503 naming the stalled ones otherwise) and `/readyz` (every dependency check
//! passes; 503 with the failing ones otherwise).
//!
//! Liveness is a promise with a deadline, as in PostHog's health registry: a component (the
//! consumer's loop, say) registers with [`Health::liveness`] and calls [`Heartbeat::beat`] at
//! every turn; it is then healthy until the deadline after its last beat. A loop that is stuck —
//! awaiting something that never answers, deadlocked, spinning in one turn — stops beating, and
//! the kubelet restarts the pod. A dependency being down is not a stall: loops that retry beat on
//! every attempt, and readiness, not liveness, says the dependency is missing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

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
    use crate::config::catalogue::{LOG, LOG_FORMAT, RUST_LOG};
    let env = &crate::config::ProcessEnv;
    let spec = LOG.value(env).or_else(|| RUST_LOG.value(env)).unwrap_or_else(|| LOG.string(env));
    let (filter, bad_filter) = match EnvFilter::try_new(&spec) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let text = LOG_FORMAT.string(env).trim().eq_ignore_ascii_case("text");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let result = if text {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    };
    if result.is_ok() {
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
        if let Some(e) = bad_filter {
            tracing::warn!(filter = %spec, error = %e, "the log filter (CAIRN_LOG or RUST_LOG) is invalid; logging at info");
        }
    }
}

/// The state of one dependency check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckState {
    pub ready: bool,
    pub detail: String,
}

/// Readiness of a service (a set of named checks, each ready or not) and the liveness of its
/// long-running components. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    checks: Arc<RwLock<BTreeMap<&'static str, CheckState>>>,
    components: Arc<Mutex<BTreeMap<&'static str, Component>>>,
}

/// A component's deadline and its last beat (nanoseconds since [`epoch`]), which the component
/// writes without a lock: the consumer beats once per record.
#[derive(Debug, Clone)]
struct Component {
    deadline: Duration,
    last_beat: Arc<AtomicU64>,
}

/// The instant that beats are counted from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// A long-running component's promise to report again within its deadline (see the module
/// docs). Cheap to clone; dropping it does not unregister the component.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    deadline: Duration,
    last_beat: Arc<AtomicU64>,
}

impl Heartbeat {
    /// The component is making progress: healthy until `deadline` from now.
    pub fn beat(&self) {
        self.last_beat.store(since_epoch(Instant::now()), Ordering::Relaxed);
    }

    /// How often a loop should beat at least when nothing else wakes it (a quarter of the
    /// deadline), so that an idle component never looks stalled.
    pub fn interval(&self) -> Duration {
        (self.deadline / 4).max(Duration::from_millis(10))
    }
}

/// A component that missed its deadline, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stalled {
    pub component: &'static str,
    /// The component's deadline and how long ago it last reported, in milliseconds.
    pub deadline_ms: u64,
    pub since_last_beat_ms: u64,
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

    /// Registers a long-running component that promises to [`Heartbeat::beat`] at least once per
    /// `deadline`; it is healthy for its first `deadline` from now.
    pub fn liveness(&self, name: &'static str, deadline: Duration) -> Heartbeat {
        let last_beat = Arc::new(AtomicU64::new(since_epoch(Instant::now())));
        if let Ok(mut c) = self.components.lock() {
            c.insert(name, Component { deadline, last_beat: Arc::clone(&last_beat) });
        }
        Heartbeat { deadline, last_beat }
    }

    /// The components whose deadline has passed since their last beat. A poisoned lock (a
    /// thread panicked while holding it) counts as a stall of everything.
    pub fn stalled(&self) -> Vec<Stalled> {
        let now = since_epoch(Instant::now());
        match self.components.lock() {
            Ok(c) => c
                .iter()
                .filter_map(|(name, s)| {
                    let since = Duration::from_nanos(now.saturating_sub(s.last_beat.load(Ordering::Relaxed)));
                    (since > s.deadline).then_some(Stalled {
                        component: name,
                        deadline_ms: s.deadline.as_millis() as u64,
                        since_last_beat_ms: since.as_millis() as u64,
                    })
                })
                .collect(),
            Err(_) => vec![Stalled { component: "health registry", deadline_ms: 0, since_last_beat_ms: 0 }],
        }
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

async fn healthz(State(state): State<AdminState>) -> Response {
    let stalled = state.health.stalled();
    if stalled.is_empty() {
        return Json(serde_json::json!({"status": "ok"})).into_response();
    }
    for s in &stalled {
        tracing::error!(
            component = s.component,
            deadline_ms = s.deadline_ms,
            since_last_beat_ms = s.since_last_beat_ms,
            "component stalled: liveness fails"
        );
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "stalled", "stalled": stalled})))
        .into_response()
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

    #[test]
    fn a_component_that_stops_beating_is_stalled() {
        let h = Health::new();
        assert!(h.stalled().is_empty(), "no components: alive");
        let loop_a = h.liveness("a", Duration::from_millis(50));
        let loop_b = h.liveness("b", Duration::from_secs(60));
        assert!(h.stalled().is_empty(), "healthy for the first deadline");
        std::thread::sleep(Duration::from_millis(80));
        let stalled = h.stalled();
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert_eq!(stalled[0].component, "a");
        assert_eq!(stalled[0].deadline_ms, 50);
        assert!(stalled[0].since_last_beat_ms >= 80, "{stalled:?}");
        loop_a.beat();
        loop_b.beat();
        assert!(h.stalled().is_empty(), "a beat makes it healthy again");
        assert_eq!(loop_a.interval(), Duration::from_micros(12_500));
    }

    #[tokio::test]
    async fn healthz_is_503_naming_the_stalled_component() {
        use tower::ServiceExt;
        let h = Health::new();
        let _beat = h.liveness("pipeline", Duration::from_millis(20));
        let app = admin_router(Arc::new(Registry::default()), h.clone());
        let get = || axum::http::Request::get("/healthz").body(axum::body::Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(get()).await.unwrap().status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let resp = app.oneshot(get()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["stalled"][0]["component"], "pipeline");
    }
}
