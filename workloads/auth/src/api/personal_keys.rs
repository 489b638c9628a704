//! Personal keys (`phx_…`): secret keys for the query API on behalf of their user, narrowed to
//! some scopes and optionally some projects, optionally expiring. Each user manages their own.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_auth_client::Permission;
use cairn_common::http::{ApiError, JsonBody};
use serde::Deserialize;

use crate::db::{ApiResult, DbResultExt};
use crate::extract::Caller;
use crate::keys::{display_prefix, new_personal_key};
use crate::model::{PersonalKey, PERSONAL_KEY_COLUMNS};
use crate::state::AppState;
use crate::tokens::digest_hex;
use crate::validate;

/// The longest lifetime a key may be given.
pub const MAX_EXPIRES_IN_DAYS: u32 = 3650;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePersonalKey {
    name: String,
    /// `None`: every project the user can read, now and later.
    #[serde(default)]
    project_ids: Option<Vec<i64>>,
    scopes: Vec<Permission>,
    #[serde(default)]
    expires_in_days: Option<u32>,
}

/// `GET /api/v1/personal-keys`: the caller's keys.
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Vec<PersonalKey>>> {
    let keys =
        sqlx::query_as(&format!("SELECT {PERSONAL_KEY_COLUMNS} FROM personal_keys WHERE user_id = $1 ORDER BY id"))
            .bind(caller.user_id)
            .fetch_all(&state.db)
            .await
            .db()?;
    Ok(Json(keys))
}

/// `POST /api/v1/personal-keys`: the answer carries the plaintext, once.
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(req): JsonBody<CreatePersonalKey>,
) -> ApiResult<Response> {
    validate::name("name", &req.name, true)?;
    if req.scopes.is_empty() {
        return Err(ApiError::invalid(
            "scopes",
            "must name at least one of query:read, insights:write, persons:delete, events:write",
        ));
    }
    let mut scopes: Vec<&str> = req.scopes.iter().map(|p| p.as_str()).collect();
    scopes.sort_unstable();
    scopes.dedup();
    if let Some(days) = req.expires_in_days {
        if days == 0 || days > MAX_EXPIRES_IN_DAYS {
            return Err(ApiError::invalid("expires_in_days", format!("must be between 1 and {MAX_EXPIRES_IN_DAYS}")));
        }
    }
    if let Some(ids) = &req.project_ids {
        let readable: Vec<i64> = sqlx::query_scalar(
            "SELECT p.id FROM projects p JOIN memberships m ON m.organization_id = p.organization_id
             WHERE m.user_id = $1 AND p.id = ANY($2)",
        )
        .bind(caller.user_id)
        .bind(ids)
        .fetch_all(&state.db)
        .await
        .db()?;
        if let Some((i, _)) = ids.iter().enumerate().find(|(_, id)| !readable.contains(id)) {
            return Err(ApiError::invalid(format!("project_ids[{i}]"), "is not a project you can read"));
        }
    }
    let key = new_personal_key();
    let mut row: PersonalKey = sqlx::query_as(&format!(
        "INSERT INTO personal_keys (user_id, name, key_hash, display_prefix, project_ids, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(days => $7)) RETURNING {PERSONAL_KEY_COLUMNS}"
    ))
    .bind(caller.user_id)
    .bind(&req.name)
    .bind(digest_hex(&key))
    .bind(display_prefix(&key))
    .bind(&req.project_ids)
    .bind(&scopes)
    .bind(req.expires_in_days.map(|d| d as i32))
    .fetch_one(&state.db)
    .await
    .db()?;
    row.key = Some(key);
    tracing::info!(user_id = caller.user_id, key_id = row.id, "personal key created");
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

/// `DELETE /api/v1/personal-keys/{id}`: the query service refuses the key within its cache TTL.
pub async fn revoke(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let done =
        sqlx::query("UPDATE personal_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(caller.user_id)
            .execute(&state.db)
            .await
            .db()?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("personal key"));
    }
    tracing::info!(user_id = caller.user_id, key_id = id, "personal key revoked");
    Ok(StatusCode::NO_CONTENT)
}
