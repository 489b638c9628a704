//! Capture's HTTP routes: Cairn's own (`/capture`, `/batch`) and PostHog's ingestion contract
//! (`/e`, `/batch`, `/i/v0/e`, `/track`), all accepting every payload shape that [`payload`]
//! decodes.
//!
//! A request is all-or-nothing: if any event in it is invalid, none is written and the 400 lists
//! every invalid event's index, field and reason. A 200 means Kafka has acknowledged every event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use cairn_common::event::{validate_event, CapturedEvent, FieldError, ValidationContext};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::error::CaptureError;
use crate::keys::KeyResolver;
use crate::limiter::KeyRateLimiter;
use crate::metrics::{CaptureMetrics, RequestLabels};
use crate::payload::{decode, Limits, Payload, PayloadError};
use crate::sink::EventSink;

pub struct AppState {
    pub keys: Arc<dyn KeyResolver>,
    pub sink: Arc<dyn EventSink>,
    pub limiter: KeyRateLimiter,
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
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let response = match handle(&app, &query, &headers, body).await {
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
    body: Body,
) -> Result<usize, (CaptureError, usize)> {
    let bytes = read_body(body, app.limits.max_batch_bytes).await.map_err(|e| (e.into(), 0))?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let payload = decode(
        &bytes,
        headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()),
        query.get("compression").map(String::as_str),
        content_type.starts_with("application/x-www-form-urlencoded"),
        app.limits,
    )
    .map_err(|e| (e.into(), 0))?;
    let n = payload.events.len();
    if n == 0 {
        return Err((CaptureError::EmptyBatch, 0));
    }

    let key = request_key(headers, query, &payload).map_err(|e| (e, n))?;
    let project_id = app.keys.resolve(&key).await.map_err(|e| (e.into(), n))?.ok_or((CaptureError::UnknownKey, n))?;

    app.limiter.check(&key, n).map_err(|wait| (CaptureError::RateLimited(wait), n))?;

    let ctx = ValidationContext {
        project_id,
        now: OffsetDateTime::now_utc(),
        sent_at: payload.sent_at.or_else(|| query_sent_at(query)),
        max_future: app.max_future,
    };
    let events = validate_all(payload, &ctx).map_err(|e| (e, n))?;
    app.sink.send(events).await.map_err(|e| (e.into(), n))?;
    Ok(n)
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, PayloadError> {
    axum::body::to_bytes(body, limit.saturating_add(1)).await.map_err(|e| {
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

/// The request's API key: `Authorization: Bearer`, the query, the body, or the events'
/// properties (PostHog's web SDK puts `token` there). Every key found must be the same one.
fn request_key(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    payload: &Payload,
) -> Result<String, CaptureError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|k| k.trim().to_string());
    let request_keys = [
        bearer.as_deref(),
        query.get("api_key").map(String::as_str),
        query.get("token").map(String::as_str),
        payload.key.as_deref(),
    ];
    let event_keys = payload.events.iter().map(event_key);
    let mut key: Option<&str> = None;
    for k in request_keys.into_iter().chain(event_keys).flatten().filter(|k| !k.is_empty()) {
        match key {
            None => key = Some(k),
            Some(a) if a != k => return Err(CaptureError::MixedKeys),
            Some(_) => {}
        }
    }
    key.map(str::to_string).ok_or(CaptureError::MissingKey)
}

fn event_key(event: &Value) -> Option<&str> {
    fn str_of(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    str_of(event.get("api_key"))
        .or_else(|| str_of(event.get("token")))
        .or_else(|| str_of(event.get("properties").and_then(|p| p.get("token"))))
}

fn validate_all(payload: Payload, ctx: &ValidationContext) -> Result<Vec<CapturedEvent>, CaptureError> {
    let total = payload.events.len();
    let mut events = Vec::with_capacity(total);
    let mut errors: Vec<FieldError> = Vec::new();
    let mut invalid = 0;
    for (i, raw) in payload.events.into_iter().enumerate() {
        let index = payload.is_batch.then_some(i);
        match validate_event(index, raw, ctx) {
            Ok(e) => events.push(e),
            Err(mut errs) => {
                invalid += 1;
                errors.append(&mut errs);
            }
        }
    }
    if invalid > 0 {
        return Err(CaptureError::Invalid { invalid, total, errors });
    }
    Ok(events)
}

/// How long an idle key's rate-limit state is kept before [`KeyRateLimiter::forget_idle`].
pub const LIMITER_SWEEP: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Payload;

    fn payload(key: Option<&str>, events: Vec<Value>) -> Payload {
        Payload { events, is_batch: true, key: key.map(String::from), sent_at: None }
    }

    #[test]
    fn one_key_wherever_it_is_given_and_never_two() {
        let mut headers = HeaderMap::new();
        let none = HashMap::new();
        let query: HashMap<String, String> = [("token".to_string(), "phc_a".to_string())].into();
        let ev = |k: &str| serde_json::json!({"event": "e", "properties": {"token": k}});
        assert_eq!(request_key(&headers, &query, &payload(None, vec![])).unwrap(), "phc_a");
        assert_eq!(request_key(&headers, &none, &payload(None, vec![ev("phc_b")])).unwrap(), "phc_b");
        assert!(matches!(request_key(&headers, &none, &payload(None, vec![])), Err(CaptureError::MissingKey)));
        assert!(
            matches!(request_key(&headers, &query, &payload(Some("phc_a"), vec![ev("phc_a")])), Ok(k) if k == "phc_a")
        );
        assert!(matches!(request_key(&headers, &query, &payload(Some("phc_b"), vec![])), Err(CaptureError::MixedKeys)));
        assert!(matches!(
            request_key(&headers, &query, &payload(None, vec![ev("phc_a"), ev("phc_c")])),
            Err(CaptureError::MixedKeys)
        ));
        headers.insert(header::AUTHORIZATION, "Bearer phc_z".parse().unwrap());
        assert_eq!(request_key(&headers, &none, &payload(Some(""), vec![])).unwrap(), "phc_z");
        assert!(
            matches!(request_key(&headers, &none, &payload(Some("phc_a"), vec![])), Err(CaptureError::MixedKeys)),
            "bearer and body disagree"
        );
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
