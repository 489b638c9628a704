//! Who is calling: the signed-in user of a public API request (`Authorization: Bearer <access
//! token>`), the client address for rate limits, and the guard of the internal API.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_common::config::ExposeSecret;
use cairn_common::http::ApiError;
use cairn_common::server::{client_address, TrustedProxies};
use uuid::Uuid;

use crate::db::DbResultExt;
use crate::state::AppState;
use crate::tokens::constant_time_eq;

/// The bearer credential of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// A signed-in user: a valid access token of a live session.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: i64,
    pub session_id: Uuid,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("sign in: send Authorization: Bearer <access token>"))?;
        let invalid = || ApiError::unauthorized("the access token is invalid or expired; refresh it or sign in again");
        let claims = state.signer.verify(token).ok_or_else(invalid)?;
        let user_id = claims.user_id().ok_or_else(invalid)?;
        if !session_is_live(state, claims.sid, user_id).await? {
            return Err(invalid());
        }
        Ok(Caller { user_id, session_id: claims.sid })
    }
}

/// True while the session exists, belongs to the user, and is neither revoked nor expired.
pub async fn session_is_live(state: &AppState, sid: Uuid, user_id: i64) -> Result<bool, ApiError> {
    let live: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now()
           AND created_at > now() - $3::interval",
    )
    .bind(sid)
    .bind(user_id)
    .bind(format!("{} seconds", state.session_max_age.as_secs()))
    .fetch_optional(&state.db)
    .await
    .db()?;
    Ok(live.is_some())
}

/// The client's address: the peer, or behind trusted proxies the rightmost untrusted
/// `X-Forwarded-For` entry (see [`cairn_common::server::client_address`]).
pub fn client_ip(headers: &HeaderMap, peer: Option<SocketAddr>, trusted: &TrustedProxies) -> IpAddr {
    match peer {
        Some(p) => client_address(headers, p.ip(), trusted),
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// The client of a request: its address (for rate limits) and user agent (kept with sessions).
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: IpAddr,
    pub user_agent: String,
}

impl FromRequestParts<Arc<AppState>> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let user_agent =
            parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        Ok(Client { ip: client_ip(&parts.headers, peer, &state.trusted_proxies), user_agent })
    }
}

/// The error code of a refused internal token: unlike `unauthorized` (the credential being
/// checked is invalid), it tells the calling service that its own configuration is wrong.
pub use cairn_auth_client::INTERNAL_UNAUTHORIZED;

/// Guards `/internal/*`: when `CAIRN_INTERNAL_TOKEN` is set, it must be the bearer credential.
pub async fn require_internal_token(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.internal_token {
        let ok = bearer(request.headers()).is_some_and(|given| constant_time_eq(given, expected.expose_secret()));
        if !ok {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                INTERNAL_UNAUTHORIZED,
                "internal endpoints need Authorization: Bearer <CAIRN_INTERNAL_TOKEN>",
            )
            .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn reads_bearer_credentials() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer  abc "));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer xyz"));
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwYXNz"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn the_client_cannot_choose_its_address() {
        let trusted = TrustedProxies::parse("X", "10.0.0.0/8").unwrap();
        let ingress: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(client_ip(&h, Some(ingress), &trusted), ingress.ip());
        // The client wrote 198.51.100.1 itself; the ingress appended what it saw.
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1, 203.0.113.9, 10.0.0.2"));
        assert_eq!(client_ip(&h, Some(ingress), &trusted), "203.0.113.9".parse::<IpAddr>().unwrap());
        // A client that connects directly gets no say at all.
        let direct: SocketAddr = "203.0.113.50:4000".parse().unwrap();
        assert_eq!(client_ip(&h, Some(direct), &trusted), direct.ip());
        assert_eq!(client_ip(&h, Some(ingress), &TrustedProxies::default()), ingress.ip(), "nobody trusted");
    }
}
