//! The API's documentation, browsable from the running service: `/api/docs` (a page that renders
//! the OpenAPI documents, no external scripts) and `/api/openapi/{query,auth,capture}.json` (the
//! documents of `schemas/openapi`, converted to JSON at build time). Public: they describe the
//! API, they do not grant anything.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_common::http::ApiError;

const PAGE: &str = include_str!("apidocs/index.html");
const VIEWER: &str = include_str!("apidocs/viewer.js");
const QUERY: &str = include_str!(concat!(env!("OUT_DIR"), "/query.json"));
const AUTH: &str = include_str!(concat!(env!("OUT_DIR"), "/auth.json"));
const CAPTURE: &str = include_str!(concat!(env!("OUT_DIR"), "/capture.json"));

/// The page's scripts and data come from this origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; \
base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

fn answer(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// `GET /api/docs`.
pub async fn page() -> Response {
    answer("text/html; charset=utf-8", PAGE)
}

/// `GET /api/docs/viewer.js`.
pub async fn viewer() -> Response {
    answer("text/javascript; charset=utf-8", VIEWER)
}

/// The embedded document called `name` (`query.json`, `auth.json`, `capture.json`).
pub fn document(name: &str) -> Option<&'static str> {
    match name {
        "query.json" => Some(QUERY),
        "auth.json" => Some(AUTH),
        "capture.json" => Some(CAPTURE),
        _ => None,
    }
}

/// `GET /api/openapi/{name}`.
pub async fn openapi(Path(name): Path<String>) -> Result<Response, ApiError> {
    document(&name)
        .map(|doc| answer("application/json", doc))
        .ok_or_else(|| ApiError::not_found("document (query.json, auth.json or capture.json)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_are_embedded_as_json() {
        for name in ["query.json", "auth.json", "capture.json"] {
            let doc: serde_json::Value = serde_json::from_str(document(name).unwrap_or("")).unwrap_or_default();
            assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{name}");
            assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()), "{name}");
        }
        assert!(document("../secrets").is_none());
        assert!(PAGE.contains("/api/docs/viewer.js") && !PAGE.contains("https://"), "no external scripts");
    }
}
