//! Capture's HTTP routes: Cairn's own (`/capture`, `/batch`) and PostHog's ingestion contract
//! (`/e`, `/batch`, `/i/v0/e`, `/track`), all accepting every payload shape that [`payload`]
//! decodes.
//!
//! A request is all-or-nothing: if any event in it is invalid, none is written and the 400 lists
//! the invalid events' indexes, fields and reasons (the first [`MAX_FIELD_ERRORS`], and how many
//! there were in all). A 200 means Kafka has acknowledged every event.
//!
//! What a request costs before its key is known is bounded: the body (at most
//! `max_batch_bytes` after decompression), its split into at most `max_events` spans, and — when
//! the key is not given outside the events — the first events up to one that carries it. Keys not
//! known to be valid are rate-limited per client address before they are looked up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use cairn_common::event::{validate_event, CapturedEvent, FieldError, ValidationContext};
use cairn_common::server::{client_address, TrustedProxies};
use cairn_common::trace::RequestId;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::budget::{MemoryBudget, Reserved, BYTES_PER_VALUE};
use crate::error::CaptureError;
use crate::keys::KeyResolver;
use crate::limiter::{KeyRateLimiter, Limited, UnknownKeyGate};
use crate::metrics::{CaptureMetrics, RequestLabels};
use crate::payload::{decode, Budget, Limits, PayloadError};
use crate::sink::EventSink;

/// The most field errors a 400 lists (the total count is given too).
pub const MAX_FIELD_ERRORS: usize = 100;

pub struct AppState {
    pub keys: Arc<dyn KeyResolver>,
    pub sink: Arc<dyn EventSink>,
    pub limiter: KeyRateLimiter,
    /// Lookups of unproven keys per client address.
    pub unknown_keys: UnknownKeyGate,
    /// Whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// How long reading a body may take (a slow client holds a connection no longer).
    pub body_timeout: Duration,
    /// The memory all requests in flight may use together.
    pub budget: MemoryBudget,
    pub limits: Limits,
    pub max_future: time::Duration,
    pub metrics: Arc<CaptureMetrics>,
}

/// Every ingestion route (served with and without a trailing slash).
pub use cairn_common::event::CAPTURE_ROUTES as ROUTES;

pub fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new();
    for route in ROUTES {
        r = r.route(route, post(ingest)).route(&format!("{route}/"), post(ingest));
    }
    r.with_state(state)
}

async fn ingest(
    State(app): State<Arc<AppState>>,
    path: MatchedPath,
    Query(query): Query<HashMap<String, String>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let client = peer.map(|Extension(ConnectInfo(p))| client_address(&headers, p.ip(), &app.trusted_proxies));
    let request_id = request_id.as_ref().map(|Extension(id)| id.as_str());
    let response = match handle(&app, &query, &headers, client, request_id, body).await {
        Ok(accepted) => {
            app.metrics.count_events("accepted", accepted);
            (StatusCode::OK, Json(json!({"status": 1, "accepted": accepted}))).into_response()
        }
        Err((err, events)) => {
            app.metrics.count_events(err.outcome(), events.max(1));
            if matches!(err, CaptureError::Sink(_) | CaptureError::Keys(_)) {
                tracing::warn!(error = %err, events, "capture request not accepted");
            } else {
                tracing::debug!(error = %err, "capture request refused");
            }
            err.into_response()
        }
    };
    let route = path.as_str().trim_end_matches('/').to_string();
    app.metrics.requests.get_or_create(&RequestLabels { route, status: response.status().as_u16() }).inc();
    app.metrics.request_seconds.observe(started.elapsed().as_secs_f64());
    response
}

/// Returns the number of accepted events, or the error with the number of events it concerned.
async fn handle(
    app: &AppState,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    request_id: Option<&str>,
    body: Body,
) -> Result<usize, (CaptureError, usize)> {
    // Memory is reserved before each large allocation: the body, the decoded body, the values.
    let mut reserved = Reserved::default();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(app.limits.max_batch_bytes)
        .min(app.limits.max_batch_bytes);
    app.budget.reserve(&mut reserved, declared).await.map_err(|_| (CaptureError::Busy, 0))?;
    let bytes = read_body(body, app.limits.max_batch_bytes, app.body_timeout).await.map_err(|e| (e.into(), 0))?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let payload = decode(
        &bytes,
        headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()),
        query.get("compression").map(String::as_str),
        content_type.starts_with("application/x-www-form-urlencoded"),
        app.limits,
    )
    .map_err(|e| (e.into(), 0))?;
    drop(bytes);
    let n = payload.len();
    if n == 0 {
        return Err((CaptureError::EmptyBatch, 0));
    }
    app.budget.reserve(&mut reserved, payload.decoded_len()).await.map_err(|_| (CaptureError::Busy, n))?;
    let values = payload.max_possible_values(app.limits.max_values);
    app.budget.reserve(&mut reserved, values * BYTES_PER_VALUE).await.map_err(|_| (CaptureError::Busy, n))?;

    // The key, before the events are built: from the request, else from the first events (only
    // as many as it takes to find one).
    let mut budget = Budget::new(app.limits.max_values);
    let mut built: Vec<Value> = Vec::with_capacity(n);
    let key = match request_key(headers, query, payload.key.as_deref()).map_err(|e| (e, n))? {
        Some(k) => k,
        None => loop {
            let Some(i) = (built.len() < n).then_some(built.len()) else {
                return Err((CaptureError::MissingKey, n));
            };
            let event = payload.event(i, &mut budget).map_err(|e| (e.into(), n))?;
            let found = event_key(&event).map(str::to_string);
            built.push(event);
            if let Some(k) = found {
                break k;
            }
        },
    };
    if let Some(ip) = client {
        app.unknown_keys.admit(&key, ip).map_err(|wait| (CaptureError::KeyGuessing(wait), n))?;
    }
    let project_id = app.keys.resolve(&key).await.map_err(|e| (e.into(), n))?.ok_or((CaptureError::UnknownKey, n))?;
    app.unknown_keys.valid(&key);
    app.limiter.check(&key, n).map_err(|limited| {
        let e = match limited {
            Limited::Wait(wait) => CaptureError::RateLimited(wait),
            Limited::LargerThanBurst { burst } => CaptureError::LargerThanBurst { events: n, burst },
        };
        (e, n)
    })?;

    // Now the events, within the request's budget of JSON values; each key they carry must be
    // the request's.
    while built.len() < n {
        let event = payload.event(built.len(), &mut budget).map_err(|e| (e.into(), n))?;
        built.push(event);
    }
    if built.iter().filter_map(event_key).any(|k| k != key) {
        return Err((CaptureError::MixedKeys, n));
    }
    let ctx = ValidationContext {
        project_id,
        now: OffsetDateTime::now_utc(),
        sent_at: payload.sent_at.or_else(|| query_sent_at(query)),
        max_future: app.max_future,
    };
    let events = validate_all(built, payload.is_batch, &ctx).map_err(|e| (e, n))?;
    app.sink.send(events, request_id).await.map_err(|e| (e.into(), n))?;
    Ok(n)
}

async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, PayloadError> {
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit.saturating_add(1)));
    let Ok(result) = read.await else {
        return Err(PayloadError::BadEncoding {
            encoding: "HTTP body",
            detail: format!("not received within {timeout:?}"),
        });
    };
    result.map_err(|e| {
        let too_large =
            std::error::Error::source(&e).map(|s| s.is::<http_body_util::LengthLimitError>()).unwrap_or(false)
                || e.to_string().contains("length limit");
        if too_large {
            PayloadError::BodyTooLarge { limit }
        } else {
            PayloadError::BadEncoding { encoding: "HTTP body", detail: e.to_string() }
        }
    })
}

/// PostHog's SDKs send their clock as `_` (milliseconds since the epoch) in the query.
fn query_sent_at(query: &HashMap<String, String>) -> Option<OffsetDateTime> {
    let ms: i128 = query.get("_")?.parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok()
}

/// The API key the request carries outside its events: `Authorization: Bearer`, the query, or
/// the body's envelope. Every key found must be the same one (the events' keys are checked
/// against it once they are built).
fn request_key(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    envelope_key: Option<&str>,
) -> Result<Option<String>, CaptureError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let request_keys =
        [bearer, query.get("api_key").map(String::as_str), query.get("token").map(String::as_str), envelope_key];
    let mut key: Option<&str> = None;
    for k in request_keys.into_iter().flatten().filter(|k| !k.is_empty()) {
        match key {
            None => key = Some(k),
            Some(a) if a != k => return Err(CaptureError::MixedKeys),
            Some(_) => {}
        }
    }
    Ok(key.map(str::to_string))
}

fn event_key(event: &Value) -> Option<&str> {
    fn str_of(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    str_of(event.get("api_key"))
        .or_else(|| str_of(event.get("token")))
        .or_else(|| str_of(event.get("properties").and_then(|p| p.get("token"))))
}

fn validate_all(
    raw_events: Vec<Value>,
    is_batch: bool,
    ctx: &ValidationContext,
) -> Result<Vec<CapturedEvent>, CaptureError> {
    let total = raw_events.len();
    let mut events = Vec::with_capacity(total);
    let mut errors: Vec<FieldError> = Vec::new();
    let mut invalid = 0;
    let mut error_count = 0;
    for (i, raw) in raw_events.into_iter().enumerate() {
        let index = is_batch.then_some(i);
        match validate_event(index, raw, ctx) {
            Ok(e) => events.push(e),
            Err(errs) => {
                invalid += 1;
                error_count += errs.len();
                let room = MAX_FIELD_ERRORS.saturating_sub(errors.len());
                errors.extend(errs.into_iter().take(room));
            }
        }
    }
    if invalid > 0 {
        return Err(CaptureError::Invalid { invalid, total, error_count, errors });
    }
    Ok(events)
}

/// How long an idle key's rate-limit state is kept before [`KeyRateLimiter::forget_idle`].
pub const LIMITER_SWEEP: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_wherever_it_is_given_and_never_two() {
        let mut headers = HeaderMap::new();
        let none = HashMap::new();
        let query: HashMap<String, String> = [("token".to_string(), "phc_a".to_string())].into();
        assert_eq!(request_key(&headers, &query, None).unwrap().as_deref(), Some("phc_a"));
        assert_eq!(request_key(&headers, &none, None).unwrap(), None, "then the events must carry it");
        assert_eq!(request_key(&headers, &query, Some("phc_a")).unwrap().as_deref(), Some("phc_a"));
        assert!(matches!(request_key(&headers, &query, Some("phc_b")), Err(CaptureError::MixedKeys)));
        headers.insert(header::AUTHORIZATION, "Bearer phc_z".parse().unwrap());
        assert_eq!(request_key(&headers, &none, Some("")).unwrap().as_deref(), Some("phc_z"));
        assert!(
            matches!(request_key(&headers, &none, Some("phc_a")), Err(CaptureError::MixedKeys)),
            "bearer and body disagree"
        );
        let ev = serde_json::json!({"event": "e", "properties": {"token": "phc_b"}});
        assert_eq!(event_key(&ev), Some("phc_b"));
    }

    #[test]
    fn the_error_list_is_bounded() {
        let ctx = ValidationContext {
            project_id: 1,
            now: OffsetDateTime::now_utc(),
            sent_at: None,
            max_future: time::Duration::hours(1),
        };
        let bad: Vec<Value> = (0..1000).map(|_| serde_json::json!({"event": 5})).collect();
        let Err(CaptureError::Invalid { invalid, total, error_count, errors }) = validate_all(bad, true, &ctx) else {
            panic!("not refused")
        };
        assert_eq!((invalid, total), (1000, 1000));
        assert!(error_count >= 1000);
        assert_eq!(errors.len(), MAX_FIELD_ERRORS);
    }

    /// schemas/openapi/capture.yaml documents exactly the routes that capture serves.
    #[test]
    fn openapi_lists_every_route() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/openapi/capture.yaml");
        let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut documented: Vec<String> =
            doc["paths"].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_string()).collect();
        documented.sort();
        let mut served: Vec<String> = ROUTES.iter().flat_map(|r| [r.to_string(), format!("{r}/")]).collect();
        served.extend(["/healthz", "/readyz", "/metrics"].map(String::from));
        served.sort();
        assert_eq!(documented, served);
    }
}
