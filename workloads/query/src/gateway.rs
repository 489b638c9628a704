//! One public API: the query service answers `/api/v1/…` for its own routes and forwards the
//! rest of `/api/` (signup, login, organisations, projects, keys) to the auth service, so that
//! clients and the Ingress use one base URL. `/internal/` is never forwarded.

use axum::body::Body;
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

/// Forwards an `/api/…` request that no query route matched; anything else is 404.
pub async fn forward(gw: &Gateway, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let path = uri.path();
    if !path.starts_with("/api/") || path.contains("/../") {
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
    // The client's address as the Ingress reported it, for auth's per-address login limits.
    if let Some(v) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
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
