//! Property-based fuzzing of what capture does with untrusted bytes (run with `make fuzz` for
//! longer: `PROPTEST_CASES`). Every generated request goes through the whole router — body
//! decoding (JSON, form, base64, gzip), query parameters, keys, validation — with a sink that
//! accepts everything; the answer must be 2xx or 4xx, never a panic or a 5xx, and no request may
//! make capture allocate more than a fixed bound (a counting allocator measures the peak).
//!
//! The tests of this binary take [`SERIAL`] so that the allocation counter sees one at a time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use cairn_capture::budget::MemoryBudget;
use cairn_capture::keys::StaticKeys;
use cairn_capture::limiter::{KeyRateLimiter, UnknownKeyGate};
use cairn_capture::metrics::CaptureMetrics;
use cairn_capture::payload::{decode, Budget, Limits};
use cairn_capture::router::{router, AppState, ROUTES};
use cairn_capture::sink::{EventSink, SinkError};
use cairn_common::event::CapturedEvent;
use cairn_common::server::TrustedProxies;
use proptest::prelude::*;
use tower::ServiceExt;

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Accept;

#[async_trait]
impl EventSink for Accept {
    async fn send(&self, _events: Vec<CapturedEvent>, _request_id: Option<&str>) -> Result<(), SinkError> {
        Ok(())
    }
}

const LIMITS: Limits =
    Limits { max_event_bytes: 64 * 1024, max_batch_bytes: 1 << 20, max_events: 1000, max_values: 100_000 };

fn state() -> Arc<AppState> {
    let mut registry = prometheus_client::registry::Registry::default();
    Arc::new(AppState {
        keys: Arc::new(StaticKeys::parse("phc_ok=1").unwrap()),
        sink: Arc::new(Accept),
        limiter: KeyRateLimiter::new(0, 0, cairn_capture::limiter::Replicas::fixed(1)),
        unknown_keys: UnknownKeyGate::new(0, 0, Duration::from_secs(60), 10),
        trusted_proxies: TrustedProxies::default(),
        body_timeout: Duration::from_secs(5),
        budget: MemoryBudget::new(64 << 20, Duration::from_millis(100)),
        limits: LIMITS,
        max_future: time::Duration::hours(23),
        metrics: Arc::new(CaptureMetrics::register(&mut registry)),
    })
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(b);
    e.finish().unwrap_or_default()
}

/// JSON-shaped text: the characters JSON is made of, so that decoding goes deep.
fn jsonish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\\[\\]{}\":,0-9a-z_$.eE+\\-\\\\ ]{0,300}",
        // Valid envelopes and events with odd values.
        (any::<bool>(), "[a-z$_]{0,12}", "[ -~]{0,40}", prop::collection::vec(any::<i64>(), 0..20)).prop_map(
            |(batch, event, distinct, nums)| {
                let e = serde_json::json!({"event": event, "distinct_id": distinct, "properties": {"n": nums, "token": "phc_ok"}});
                if batch {
                    serde_json::json!({"api_key": "phc_ok", "batch": [e.clone(), e]}).to_string()
                } else {
                    e.to_string()
                }
            }
        ),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        jsonish().prop_map(String::into_bytes),
        jsonish().prop_map(|s| gzip(s.as_bytes())),
        jsonish().prop_map(|s| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(s).into_bytes()
        }),
        jsonish().prop_map(|s| {
            use base64::Engine;
            format!("data={}", base64::engine::general_purpose::STANDARD.encode(s)).into_bytes()
        }),
        // A bomb: small compressed, large expanded.
        (1usize..200_000).prop_map(|n| gzip(format!("[{}{{}}]", "{},".repeat(n)).as_bytes())),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "(compression=(gzip-js|gzip|base64|lz64|)|api_key=phc_ok|token=[a-z_]{0,8}|_=[0-9-]{0,15}|[a-z%=&]{0,30})(&(compression=gzip-js|ver=1|_=1))?",
    ]
}

#[test]
fn capture_answers_every_request_with_2xx_or_4xx_in_bounded_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = router(state());
    let routes: Vec<&str> = ROUTES.to_vec();
    let config = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(
        route in 0..routes.len(),
        q in query(),
        content_type in prop_oneof![Just("application/json"), Just("application/x-www-form-urlencoded"), Just("text/plain"), Just("")],
        encoding in prop_oneof![Just(None), Just(Some("gzip")), Just(Some("br"))],
        bearer in prop_oneof![Just(None), Just(Some("phc_ok")), Just(Some("phc_other"))],
        data in body(),
    )| {
        let uri = if q.is_empty() { routes[route].to_string() } else { format!("{}?{q}", routes[route]) };
        let mut req = Request::post(&uri);
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let Ok(req) = req.body(Body::from(data.clone())) else { return Ok(()) };
        let before = CURRENT.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let status = rt.block_on(app.clone().oneshot(req)).map(|r| r.status().as_u16()).unwrap_or(0);
        let peak = PEAK.load(Ordering::Relaxed) - before;
        *statuses.lock().unwrap().entry(status).or_default() += 1;
        prop_assert!((200..500).contains(&status), "{uri}: {status}");
        // The body (≤ 1 MiB decoded), its spans, and at most the value budget's worth of values.
        prop_assert!(peak < 24 << 20, "{uri}: a {}-byte request allocated {peak} bytes", data.len());
    });
    println!("answers by status: {:?}", statuses.lock().unwrap());
}

#[test]
fn decoding_never_panics_and_values_stay_within_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(data in body(), compression in prop_oneof![Just(None), Just(Some("gzip-js")), Just(Some("base64"))], form in any::<bool>())| {
        if let Ok(p) = decode(&bytes::Bytes::from(data), None, compression, form, LIMITS) {
            let mut budget = Budget::new(LIMITS.max_values);
            let _ = p.events(&mut budget);
        }
    });
}
