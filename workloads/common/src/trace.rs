//! Request ids, request spans, and trace context through Kafka.
//!
//! Every API request (capture, query, auth) runs inside a `request` span that carries its id,
//! method and path; JSON log lines written while it runs carry the span's fields, so one
//! request's lines can be found together. The id is the caller's `X-Request-Id` when it is a
//! plausible one (at most 64 characters of letters, digits and `-_.:`), else a new UUIDv7; it is
//! answered in `X-Request-Id`. Capture puts it on every record it produces (Kafka header
//! [`KAFKA_HEADER`]), so the consumer's log lines about a record (a dead letter, say) name the
//! request that brought it.
//!
//! When spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`, see [`crate::telemetry`]), the
//! request span continues the caller's W3C `traceparent` (a load balancer's or an SDK's trace),
//! its `trace_id` field puts the trace's id on every log line of the request, and capture puts
//! the request span's context on every record it produces (Kafka header [`TRACEPARENT`], the
//! header OpenTelemetry's Kafka instrumentations use). The consumer's `batch` span, which inserts
//! many requests' records at once, links to each of their traces (at most [`MAX_LINKS`]), so a
//! request's trace leads to the insert that stored its events. None of this runs when spans are
//! not exported.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
pub use opentelemetry::trace::SpanContext;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry::exporting;

/// The HTTP header of the request id, in both directions.
pub const HEADER: &str = "x-request-id";

/// The Kafka header capture sets on each record: the id of the request that brought it.
pub const KAFKA_HEADER: &str = "cairn-request-id";

/// The header of W3C trace context, on HTTP requests and on Kafka records.
pub const TRACEPARENT: &str = "traceparent";

/// The most traces one consumer batch span links to (OpenTelemetry's default limit of links per
/// span).
pub const MAX_LINKS: usize = 128;

/// The longest request id accepted from a caller.
pub const MAX_LEN: usize = 64;

/// A request's id, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a caller's id is kept (anything else is replaced, so logs never carry a hostile
/// client's megabyte or control characters).
pub fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new id: a UUIDv7, so ids sort by time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The middleware: assigns the id, runs the request in its span, answers the id, and logs the
/// outcome at debug (errors at their own level where they are handled).
pub async fn trace_requests(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_string)
        .unwrap_or_else(new_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        trace_id = tracing::field::Empty,
    );
    if exporting() {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
        record_trace_id(&span);
    }
    let started = Instant::now();
    let mut res = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = res.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request finished"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, v);
    }
    res
}

/// Puts the span's trace id in its `trace_id` field (declared `Empty`), so that log lines
/// written in it name the trace; nothing when spans are not exported.
pub fn record_trace_id(span: &tracing::Span) {
    if !exporting() {
        return;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

/// The current span's context as a W3C `traceparent` value, when spans are exported and the
/// span is recorded in a trace.
pub fn current_traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = OneHeader(None);
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.0
}

/// The span context a `traceparent` value names, if it is a valid one (anything else, from a
/// hostile or broken producer, is ignored).
pub fn span_context_of(traceparent: &[u8]) -> Option<SpanContext> {
    let value = std::str::from_utf8(traceparent).ok()?;
    let cx = TraceContextPropagator::new().extract(&OneHeaderRef(value));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Links `span` to each of `contexts` (at most [`MAX_LINKS`] are kept by the caller).
pub fn link(span: &tracing::Span, contexts: impl IntoIterator<Item = SpanContext>) {
    for sc in contexts {
        span.add_link(sc);
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A carrier of one `traceparent` (tracestate is not carried through Kafka).
struct OneHeader(Option<String>);

impl Injector for OneHeader {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

struct OneHeaderRef<'a>(&'a str);

impl Extractor for OneHeaderRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::{Extension, Router};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/", get(|Extension(id): Extension<RequestId>| async move { id.0 }))
            .layer(axum::middleware::from_fn(trace_requests))
    }

    async fn call(header: Option<&str>) -> (String, String) {
        let mut req = axum::http::Request::builder().uri("/");
        if let Some(h) = header {
            req = req.header(HEADER, h);
        }
        let res = app().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let answered = res.headers()[HEADER].to_str().unwrap().to_string();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        (answered, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn keeps_a_plausible_id_and_replaces_anything_else() {
        let (answered, seen) = call(Some("lb-7f3a:42")).await;
        assert_eq!((answered.as_str(), seen.as_str()), ("lb-7f3a:42", "lb-7f3a:42"));
        for hostile in ["x".repeat(65), "a b".to_string(), "<script>".to_string(), String::new()] {
            let (answered, seen) = call(Some(&hostile)).await;
            assert_eq!(answered, seen);
            assert_ne!(answered, hostile);
            assert_eq!(answered.len(), 32, "a UUIDv7: {answered}");
        }
        let (a, _) = call(None).await;
        let (b, _) = call(None).await;
        assert_ne!(a, b);
    }

    #[test]
    fn traceparents_are_read_strictly() {
        let good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = span_context_of(good).expect("a valid traceparent");
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(sc.is_sampled());
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736",
            b"\xff\xfe",
            b"",
        ] {
            assert!(span_context_of(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn nothing_is_carried_when_spans_are_not_exported() {
        // No exporting subscriber is installed in unit tests.
        let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
        let _g = span.enter();
        assert_eq!(current_traceparent(), None);
    }
}
