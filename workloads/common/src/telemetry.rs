//! Telemetry: JSON logs, traces (OTLP), Prometheus metrics, liveness and readiness.
//!
//! Every service calls [`init_or_exit`] first (logs, and spans exported to an OpenTelemetry
//! collector when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; see [`crate::trace`] for how a trace
//! follows a request through Kafka), registers its metrics in one
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, ExposeSecret, SecretString, Source};

/// What telemetry reads (the [`crate::config::Section::Telemetry`] settings): the log filter
/// and format, and where traces go.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The log filter (`EnvFilter` syntax) as given; an invalid one is logged and `info` used.
    pub filter: String,
    /// Human-readable lines instead of JSON.
    pub text: bool,
    /// Where spans are exported; `None`: nowhere.
    pub otlp: Option<OtlpConfig>,
}

/// OTLP/HTTP export of spans.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The full URL spans are posted to (`…/v1/traces`).
    pub traces_url: String,
    /// Headers sent with every export (values are secrets: an API key, say).
    pub headers: Vec<(String, SecretString)>,
    pub timeout: Duration,
    pub service_name: String,
    /// The share of traces started here that are recorded (parent-based).
    pub sample_ratio: f64,
    pub schedule_delay: Duration,
    pub max_queue_size: usize,
}

impl TelemetryConfig {
    /// Reads every telemetry setting from `env`; `service` is the default `service.name`.
    pub fn from_source(service: &str, env: &dyn Source) -> Result<Self, ConfigError> {
        use crate::config::catalogue::*;
        let filter = LOG.value(env).or_else(|| RUST_LOG.value(env)).unwrap_or_else(|| LOG.string(env));
        let text = LOG_FORMAT.string(env).trim().eq_ignore_ascii_case("text");
        // Every setting is read (and so checked) whether or not export is on.
        let base = OTEL_EXPORTER_OTLP_ENDPOINT.value(env);
        let full = OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.value(env);
        let headers = match OTEL_EXPORTER_OTLP_HEADERS.secret_value(env) {
            Some(h) => {
                parse_headers(h.expose_secret()).map_err(|reason| OTEL_EXPORTER_OTLP_HEADERS.invalid("", reason))?
            }
            None => Vec::new(),
        };
        let timeout = OTEL_EXPORTER_OTLP_TIMEOUT.millis(env)?;
        let service_name = OTEL_SERVICE_NAME.value(env).unwrap_or_else(|| service.to_string());
        let sample_ratio: f64 = OTEL_TRACES_SAMPLER_ARG.parse(env)?;
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(OTEL_TRACES_SAMPLER_ARG.invalid(&sample_ratio.to_string(), "must be between 0 and 1"));
        }
        let schedule_delay = OTEL_BSP_SCHEDULE_DELAY.millis(env)?;
        let max_queue_size: usize = OTEL_BSP_MAX_QUEUE_SIZE.parse(env)?;
        if max_queue_size == 0 {
            return Err(OTEL_BSP_MAX_QUEUE_SIZE.invalid("0", "must be at least 1"));
        }
        let traces_url = match (full, base) {
            (Some(url), _) => Some(check_url(&OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, url)?),
            (None, Some(url)) => {
                let url = check_url(&OTEL_EXPORTER_OTLP_ENDPOINT, url)?;
                Some(format!("{}/v1/traces", url.trim_end_matches('/')))
            }
            (None, None) => None,
        };
        let otlp = traces_url.map(|traces_url| OtlpConfig {
            traces_url,
            headers,
            timeout,
            service_name,
            sample_ratio,
            schedule_delay,
            max_queue_size,
        });
        Ok(Self { filter, text, otlp })
    }
}

/// An `http://` URL with a host (export over TLS goes through a collector beside Cairn).
fn check_url(setting: &crate::config::Setting, url: String) -> Result<String, ConfigError> {
    let url = url.trim().to_string();
    let uri: axum::http::Uri =
        url.parse().map_err(|e: axum::http::uri::InvalidUri| setting.invalid(&url, e.to_string()))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => Ok(url),
        (Some("https"), _) => Err(setting.invalid(
            &url,
            "https is not supported: export to a collector in the cluster over http, and let it forward over TLS",
        )),
        _ => Err(setting.invalid(&url, "must be an http:// URL with a host")),
    }
}

/// `name=value,…`, values percent-decoded (the W3C Baggage format OpenTelemetry uses).
fn parse_headers(text: &str) -> Result<Vec<(String, SecretString)>, String> {
    let mut out = Vec::new();
    for (i, pair) in text.split(',').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        let (name, value) = pair.split_once('=').ok_or_else(|| format!("entry {} has no `=`", i + 1))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            return Err(format!("entry {} has no valid header name", i + 1));
        }
        let value = percent_decode(value.trim()).ok_or_else(|| format!("entry {} has a malformed %-escape", i + 1))?;
        out.push((name.to_ascii_lowercase(), SecretString::from(value)));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The running telemetry: keeps the span exporter alive; [`Telemetry::shutdown`] (or dropping
/// it) sends what is still queued, within the export timeout.
#[must_use = "dropping it stops the export of spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued and stops exporting.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // The provider joins its export thread: allowed on a runtime's worker only this way.
            let shut = || provider.shutdown();
            let result = match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(shut)
                }
                _ => shut(),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "spans still queued could not be exported at exit");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether spans are exported (set once, by [`init_tracing`]): the code that carries trace
/// context through Kafka skips its work when they are not.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Installs the global subscriber as [`TelemetryConfig`] says: JSON lines on stdout (or text),
/// filtered by `CAIRN_LOG`, and, with an OTLP endpoint, every span above the filter exported.
/// When the telemetry settings are invalid, logs are still installed (at their filter) and the
/// error returned; [`init_or_exit`] is what binaries call.
pub fn init_tracing(service: &'static str) -> Result<Telemetry, ConfigError> {
    init_from(service, &crate::config::ProcessEnv)
}

/// [`init_tracing`], or the process exits with the error logged.
pub fn init_or_exit(service: &'static str) -> Telemetry {
    match init_tracing(service) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "invalid telemetry configuration");
            std::process::exit(1);
        }
    }
}

fn init_from(service: &'static str, env: &dyn Source) -> Result<Telemetry, ConfigError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let (config, invalid) = match TelemetryConfig::from_source(service, env) {
        Ok(c) => (c, None),
        Err(e) => {
            let logs_only = TelemetryConfig::from_source(service, &LogsOnly(env)).ok();
            (logs_only.unwrap_or(TelemetryConfig { filter: "info".into(), text: false, otlp: None }), Some(e))
        }
    };
    let (filter, bad_filter) = match EnvFilter::try_new(&config.filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    type Base = tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>;
    let fmt: Box<dyn Layer<Base> + Send + Sync> = if config.text {
        tracing_subscriber::fmt::layer().with_target(true).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(true)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    };
    let (provider, export_error) = match &config.otlp {
        Some(otlp) => match tracer_provider(otlp) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    let otel = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(p.tracer(service)).with_tracked_inactivity(false)
    });
    let installed = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init().is_ok();
    if installed && provider.is_some() {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    if installed {
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
        if let Some(e) = bad_filter {
            tracing::warn!(filter = %config.filter, error = %e, "the log filter (CAIRN_LOG or RUST_LOG) is invalid; logging at info");
        }
        if let Some(otlp) = config.otlp.as_ref().filter(|_| provider.is_some()) {
            tracing::info!(url = %otlp.traces_url, service_name = %otlp.service_name, sample_ratio = otlp.sample_ratio, "exporting spans (OTLP/HTTP)");
        }
    }
    if let Some(e) = invalid {
        return Err(e);
    }
    if let Some(e) = export_error {
        return Err(ConfigError::Invalid {
            name: crate::config::catalogue::OTEL_EXPORTER_OTLP_ENDPOINT.name.to_string(),
            value: config.otlp.map(|o| o.traces_url).unwrap_or_default(),
            reason: e,
        });
    }
    Ok(Telemetry { provider: if installed { provider } else { None } })
}

/// The OTLP/HTTP exporter behind a bounded batch processor (its own thread; spans beyond the
/// queue are dropped), sampling parent-based.
fn tracer_provider(otlp: &OtlpConfig) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler};
    let headers = otlp.headers.iter().map(|(k, v)| (k.clone(), v.expose_secret().to_string())).collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(otlp.traces_url.clone())
        .with_timeout(otlp.timeout)
        .with_headers(headers)
        .build()
        .map_err(|e| e.to_string())?;
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(otlp.schedule_delay)
                .with_max_queue_size(otlp.max_queue_size)
                .with_max_export_batch_size(otlp.max_queue_size.min(512))
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(otlp.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(otlp.sample_ratio))))
        .with_resource(resource)
        .build())
}

/// `env` without the trace export settings: what logging falls back to when they are invalid.
struct LogsOnly<'a>(&'a dyn Source);

impl Source for LogsOnly<'_> {
    fn value(&self, name: &'static str) -> Option<String> {
        use crate::config::catalogue::{LOG, LOG_FORMAT, RUST_LOG};
        [LOG.name, RUST_LOG.name, LOG_FORMAT.name].contains(&name).then(|| self.0.value(name)).flatten()
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
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{catalogue, Recording, Section};

    fn env(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn telemetry_reads_exactly_the_telemetry_settings() {
        let rec = Recording::new(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]));
        TelemetryConfig::from_source("cairn-capture", &rec).expect("valid");
        let declared: std::collections::BTreeSet<&str> =
            catalogue::ALL.iter().filter(|s| s.section == Section::Telemetry).map(|s| s.name).collect();
        assert_eq!(rec.read(), declared);
    }

    #[test]
    fn no_endpoint_no_export_and_the_traces_url_is_derived_or_given() {
        let none = TelemetryConfig::from_source("cairn-query", &env(&[])).expect("valid");
        assert!(none.otlp.is_none());
        assert_eq!(none.filter, "info,rdkafka=warn");
        let base =
            TelemetryConfig::from_source("cairn-query", &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]))
                .expect("valid")
                .otlp
                .expect("exporting");
        assert_eq!(base.traces_url, "http://c:4318/v1/traces");
        assert_eq!(base.service_name, "cairn-query");
        assert_eq!((base.sample_ratio, base.schedule_delay, base.max_queue_size), (1.0, Duration::from_secs(5), 2048));
        let full = TelemetryConfig::from_source(
            "cairn-query",
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://d:9999/traces"),
                ("OTEL_SERVICE_NAME", "query-eu"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]),
        )
        .expect("valid")
        .otlp
        .expect("exporting");
        assert_eq!(
            (full.traces_url.as_str(), full.service_name.as_str(), full.sample_ratio),
            ("http://d:9999/traces", "query-eu", 0.25)
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_the_variable_and_headers_stay_secret() {
        for (name, value, reason) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318", "https is not supported"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318", "http:// URL"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5", "between 0 and 1"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "at least 1"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key", "no `=`"),
        ] {
            let mut e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
            e.insert(name, value.to_string());
            let err = TelemetryConfig::from_source("cairn-auth", &e).expect_err(value).to_string();
            assert!(err.contains(name) && err.contains(reason), "{err}");
        }
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "X-Api-Key=s3cr%3Dt, tenant = acme"),
        ]);
        let otlp = TelemetryConfig::from_source("cairn-auth", &e).expect("valid").otlp.expect("exporting");
        let headers: Vec<(&str, &str)> = otlp.headers.iter().map(|(k, v)| (k.as_str(), v.expose_secret())).collect();
        assert_eq!(headers, [("x-api-key", "s3cr=t"), ("tenant", "acme")]);
        assert!(!format!("{otlp:?}").contains("s3cr"), "Debug prints no header value");
    }

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
