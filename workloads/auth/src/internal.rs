//! The internal API, `/internal/v1/*`, for capture and query (guarded by `CAIRN_INTERNAL_TOKEN`):
//! write key → project, and credential → [`Principal`].

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use cairn_auth_client::{Permission, Principal, PrincipalKind, ResolvedWriteKey};
use cairn_common::http::{ApiError, JsonBody};
use serde::Deserialize;

use crate::db::{parse_role, ApiResult, DbResultExt};
use crate::extract::session_is_live;
use crate::keys::{PERSONAL_KEY_PREFIX, WRITE_KEY_PREFIX};
use crate::permissions::{grants, KeyLimits, Membership};
use crate::state::{touch_key, AppState, KeyKind};
use crate::tokens::digest_hex;

#[derive(Deserialize)]
pub struct ResolveRequest {
    key: String,
}

#[derive(Deserialize)]
pub struct AuthenticateRequest {
    credential: String,
}

/// `POST /internal/v1/write-keys/resolve`: 404 when the key is unknown or revoked.
pub async fn resolve_write_key(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<ResolveRequest>,
) -> ApiResult<Json<ResolvedWriteKey>> {
    let found: Option<(i64, i64)> =
        sqlx::query_as("SELECT id, project_id FROM write_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(digest_hex(&req.key))
            .fetch_optional(&state.db)
            .await
            .db()?;
    state.metrics.lookup("write_key", found.is_some());
    let (key_id, project_id) = found.ok_or_else(|| ApiError::not_found("write key"))?;
    touch_key(&state, KeyKind::Write, key_id);
    Ok(Json(ResolvedWriteKey { project_id, key_id }))
}

/// `POST /internal/v1/authenticate`: who an access token or personal key is; 401 when it is
/// invalid, expired or revoked, or its user is gone.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<AuthenticateRequest>,
) -> ApiResult<Json<Principal>> {
    let credential = req.credential.trim();
    let (kind, principal) = if credential.starts_with(PERSONAL_KEY_PREFIX) {
        ("personal_key", personal_key_principal(&state, credential).await?)
    } else if credential.starts_with(WRITE_KEY_PREFIX) {
        ("write_key", None)
    } else {
        ("access_token", session_principal(&state, credential).await?)
    };
    state.metrics.lookup(kind, principal.is_some());
    principal.map(Json).ok_or_else(|| ApiError::unauthorized("the credential is invalid, expired or revoked"))
}

async fn memberships(state: &AppState, user_id: i64) -> ApiResult<Vec<Membership>> {
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT p.id, p.organization_id, m.role FROM memberships m
         JOIN projects p ON p.organization_id = m.organization_id WHERE m.user_id = $1 ORDER BY p.id",
    )
    .bind(user_id)
    .fetch_all(&state.db)
    .await
    .db()?;
    rows.into_iter()
        .map(|(project_id, organization_id, role)| {
            Ok(Membership { project_id, organization_id, role: parse_role(&role)? })
        })
        .collect()
}

async fn session_principal(state: &AppState, token: &str) -> ApiResult<Option<Principal>> {
    let Some(claims) = state.signer.verify(token) else { return Ok(None) };
    let Some(user_id) = claims.user_id() else { return Ok(None) };
    if !session_is_live(state, claims.sid, user_id).await? {
        return Ok(None);
    }
    let projects = grants(&memberships(state, user_id).await?, None);
    Ok(Some(Principal { user_id, kind: PrincipalKind::Session, session_id: Some(claims.sid), key_id: None, projects }))
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key_id: i64,
    user_id: i64,
    project_ids: Option<Vec<i64>>,
    scopes: Vec<String>,
}

async fn personal_key_principal(state: &Arc<AppState>, key: &str) -> ApiResult<Option<Principal>> {
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT k.id AS key_id, k.user_id, k.project_ids, k.scopes FROM personal_keys k
         WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())",
    )
    .bind(digest_hex(key))
    .fetch_optional(&state.db)
    .await
    .db()?;
    let Some(KeyRow { key_id, user_id, project_ids, scopes }) = row else { return Ok(None) };
    // Scopes were checked when the key was made; one unknown now (a downgrade) grants nothing.
    let scopes: Vec<Permission> = scopes.iter().filter_map(|s| s.parse().ok()).collect();
    let limits = KeyLimits { project_ids: project_ids.as_deref(), scopes: &scopes };
    let projects = grants(&memberships(state, user_id).await?, Some(&limits));
    touch_key(state, KeyKind::Personal, key_id);
    Ok(Some(Principal { user_id, kind: PrincipalKind::PersonalKey, session_id: None, key_id: Some(key_id), projects }))
}
