//! Every route of the auth service, in one table that builds the router and that the OpenAPI
//! test reads ([`routes`]), plus request metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use cairn_common::http::ApiError;

use crate::api::{account, organizations, personal_keys, projects, write_keys};
use crate::extract::require_internal_token;
use crate::internal;
use crate::metrics::RequestLabels;
use crate::revocations;
use crate::state::AppState;

type S = Arc<AppState>;

/// One route: method, path (axum syntax, which is also OpenAPI's), handler.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    handler: MethodRouter<S>,
}

fn ep<H, T>(method: &'static str, path: &'static str, handler: H) -> Endpoint
where
    H: Handler<T, S>,
    T: 'static,
{
    let filter = match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PATCH" => MethodFilter::PATCH,
        "PUT" => MethodFilter::PUT,
        _ => MethodFilter::DELETE,
    };
    Endpoint { method, path, handler: on(filter, handler) }
}

/// The public API (`/api/v1`).
pub fn public_endpoints() -> Vec<Endpoint> {
    vec![
        ep("POST", "/api/v1/signup", account::signup),
        ep("POST", "/api/v1/login", account::login),
        ep("POST", "/api/v1/token/refresh", account::refresh),
        ep("POST", "/api/v1/logout", account::logout),
        ep("POST", "/api/v1/logout/all", account::logout_all),
        ep("POST", "/api/v1/password", account::change_password),
        ep("POST", "/api/v1/invitations/accept", organizations::accept_invitation),
        ep("GET", "/api/v1/me", account::me),
        ep("GET", "/api/v1/organizations", organizations::list),
        ep("POST", "/api/v1/organizations", organizations::create),
        ep("GET", "/api/v1/organizations/{id}", organizations::get),
        ep("PATCH", "/api/v1/organizations/{id}", organizations::update),
        ep("DELETE", "/api/v1/organizations/{id}", organizations::delete),
        ep("GET", "/api/v1/organizations/{id}/members", organizations::list_members),
        ep("POST", "/api/v1/organizations/{id}/members", organizations::add_member),
        ep("PATCH", "/api/v1/organizations/{id}/members/{user_id}", organizations::update_member),
        ep("DELETE", "/api/v1/organizations/{id}/members/{user_id}", organizations::remove_member),
        ep("GET", "/api/v1/organizations/{id}/invitations", organizations::list_invitations),
        ep("DELETE", "/api/v1/organizations/{id}/invitations/{invitation_id}", organizations::revoke_invitation),
        ep("POST", "/api/v1/organizations/{id}/projects", projects::create),
        ep("GET", "/api/v1/projects", projects::list),
        ep("GET", "/api/v1/projects/{id}", projects::get),
        ep("PATCH", "/api/v1/projects/{id}", projects::update),
        ep("DELETE", "/api/v1/projects/{id}", projects::delete),
        ep("GET", "/api/v1/projects/{id}/write-keys", write_keys::list),
        ep("POST", "/api/v1/projects/{id}/write-keys", write_keys::create),
        ep("DELETE", "/api/v1/projects/{id}/write-keys/{key_id}", write_keys::revoke),
        ep("GET", "/api/v1/personal-keys", personal_keys::list),
        ep("POST", "/api/v1/personal-keys", personal_keys::create),
        ep("DELETE", "/api/v1/personal-keys/{id}", personal_keys::revoke),
    ]
}

/// The internal API (`/internal/v1`), behind `CAIRN_INTERNAL_TOKEN`.
pub fn internal_endpoints() -> Vec<Endpoint> {
    vec![
        ep("POST", "/internal/v1/write-keys/resolve", internal::resolve_write_key),
        ep("POST", "/internal/v1/authenticate", internal::authenticate),
        ep("POST", "/internal/v1/revocations", revocations::feed),
    ]
}

/// Served by [`cairn_common::telemetry::admin_router`].
pub const ADMIN_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Every `(method, path)` the service answers.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    let mut r: Vec<_> =
        public_endpoints().iter().chain(internal_endpoints().iter()).map(|e| (e.method, e.path)).collect();
    r.extend(ADMIN_ROUTES.iter().map(|p| ("GET", *p)));
    r
}

fn build(endpoints: Vec<Endpoint>) -> Router<S> {
    endpoints.into_iter().fold(Router::new(), |r, e| r.route(e.path, e.handler))
}

/// The API router (without the admin routes).
pub fn router(state: S) -> Router {
    let internal =
        build(internal_endpoints()).route_layer(middleware::from_fn_with_state(state.clone(), require_internal_token));
    build(public_endpoints())
        .merge(internal)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Counts and times every request by matched route, method and status.
async fn record(State(state): State<S>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = crate::metrics::method_label(request.method());
    let response = next.run(request).await.into_response();
    let labels = RequestLabels { route, method, status: response.status().as_u16() };
    state.metrics.requests.get_or_create(&labels).inc();
    state.metrics.request_seconds.observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// schemas/openapi/auth.yaml documents exactly the routes that the service answers.
    #[test]
    fn openapi_lists_every_route() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/openapi/auth.yaml");
        let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (p, item) in doc["paths"].as_mapping().unwrap() {
            for (m, _) in item.as_mapping().unwrap() {
                let m = m.as_str().unwrap();
                if ["get", "post", "patch", "put", "delete"].contains(&m) {
                    documented.push((m.to_uppercase(), p.as_str().unwrap().to_string()));
                }
            }
        }
        documented.sort();
        let mut served: Vec<(String, String)> =
            routes().into_iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn every_route_is_listed_once() {
        let r = routes();
        let unique: std::collections::HashSet<_> = r.iter().collect();
        assert_eq!(unique.len(), r.len());
        assert!(r.iter().all(|(m, _)| ["GET", "POST", "PATCH", "DELETE"].contains(m)));
    }
}
