//! Request ids and request spans.
//!
//! Every API request (capture, query, auth) runs inside a `request` span that carries its id,
//! method and path; JSON log lines written while it runs carry the span's fields, so one
//! request's lines can be found together. The id is the caller's `X-Request-Id` when it is a
//! plausible one (at most 64 characters of letters, digits and `-_.:`), else a new UUIDv7; it is
//! answered in `X-Request-Id`. Capture puts it on every record it produces (Kafka header
//! [`KAFKA_HEADER`]), so the consumer's log lines about a record (a dead letter, say) name the
//! request that brought it.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The HTTP header of the request id, in both directions.
pub const HEADER: &str = "x-request-id";

/// The Kafka header capture sets on each record: the id of the request that brought it.
pub const KAFKA_HEADER: &str = "cairn-request-id";

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
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
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
}
