//! One public API: the query service answers `/api/v1/…` for its own routes and forwards the
//! rest of `/api/` (signup, login, organisations, projects, keys) to the auth service, so that
//! clients and the Ingress use one base URL. `/internal/` is never forwarded.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_common::http::ApiError;

/// Largest request body forwarded.
const MAX_BODY: usize = 1024 * 1024;

/// Request headers passed on to auth.
const FORWARDED: &[HeaderName] = &[header::AUTHORIZATION, header::CONTENT_TYPE, header::USER_AGENT, header::ACCEPT];

#[derive(Clone)]
pub struct Gateway {
    pub auth_url: String,
    pub http: reqwest::Client,
}

impl Gateway {
    pub fn new(auth_url: &str) -> Result<Self, reqwest::Error> {
        Ok(Self {
            auth_url: auth_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?,
        })
    }
}

/// Whether a request path may be forwarded: under `/api/`, and no segment that a URL parser
/// would resolve or split (`.`, `..`, their percent-encoded forms such as `%2e%2e`, encoded
/// slashes or backslashes): otherwise `/api/%2e%2e/internal/…` would reach auth's internal API.
pub fn forwardable(path: &str) -> bool {
    if !path.starts_with("/api/") || path.contains('\\') {
        return false;
    }
    path.split('/').all(|segment| {
        let lower = segment.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return false;
        }
        let decoded = lower.replace("%2e", ".");
        decoded != "." && decoded != ".."
    })
}

/// Forwards an `/api/…` request that no query route matched; anything else is 404.
pub async fn forward(gw: &Gateway, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let path = uri.path();
    if !forwardable(path) {
        return ApiError::not_found("route").into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is larger than 1 MB")
            .into_response();
    };
    let target = format!("{}{}", gw.auth_url, uri.path_and_query().map(|p| p.as_str()).unwrap_or(path));
    let Ok(method) = reqwest::Method::from_bytes(method.as_str().as_bytes()) else {
        return ApiError::invalid("method", "unsupported method").into_response();
    };
    let mut req = gw.http.request(method, &target).body(body);
    for name in FORWARDED {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            req = req.header(name.as_str(), v);
        }
    }
    // The client's address for auth's per-address limits: what the proxies before us reported,
    // and the address that connected to us, appended (auth believes the rightmost entry that is
    // not a trusted proxy; the query gateway is one).
    let before = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let forwarded = match (before, peer) {
        (Some(b), Some(p)) => Some(format!("{b}, {p}")),
        (Some(b), None) => Some(b.to_string()),
        (None, Some(p)) => Some(p.to_string()),
        (None, None) => None,
    };
    if let Some(v) = forwarded {
        req = req.header("x-forwarded-for", v);
    }
    match req.send().await {
        Ok(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut out = HeaderMap::new();
            for name in [header::CONTENT_TYPE, header::RETRY_AFTER] {
                if let Some(v) = resp
                    .headers()
                    .get(name.as_str())
                    .and_then(|v| axum::http::HeaderValue::from_bytes(v.as_bytes()).ok())
                {
                    out.insert(name, v);
                }
            }
            match resp.bytes().await {
                Ok(bytes) => (status, out, bytes).into_response(),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the auth service's answer");
                    ApiError::unavailable("the auth service did not answer in full").into_response()
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "forwarding to the auth service");
            ApiError::unavailable("the auth service is unreachable; try again shortly").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::forwardable;

    #[test]
    fn dot_segments_in_any_spelling_are_not_forwarded() {
        assert!(forwardable("/api/v1/login"));
        assert!(forwardable("/api/v1/organizations/3/members"));
        for bad in [
            "/internal/v1/authenticate",
            "/api/../internal/v1/authenticate",
            "/api/%2e%2e/internal/v1/authenticate",
            "/api/%2E%2E/internal/v1/authenticate",
            "/api/.%2e/internal/v1/authenticate",
            "/api/%2e./internal",
            "/api/./v1/login",
            "/api/v1%2f..%2finternal",
            "/api/v1/..%5cinternal",
            "/api/v1\\..\\internal",
        ] {
            assert!(!forwardable(bad), "{bad}");
        }
    }
}
