//! Project write keys (`phc_…`): what SDKs send to capture. Members list them (prefix only);
//! admins and owners create and revoke them. The plaintext is returned once, at creation.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_auth_client::Role;
use cairn_common::http::ApiError;
use serde::Deserialize;
use sqlx::PgConnection;

use crate::db::{project_role, require, ApiResult, DbResultExt};
use crate::extract::Caller;
use crate::keys::{display_prefix, new_write_key};
use crate::model::{WriteKey, WRITE_KEY_COLUMNS};
use crate::state::AppState;
use crate::tokens::digest_hex;
use crate::validate;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateWriteKey {
    #[serde(default)]
    name: Option<String>,
}

/// Creates a write key; the answer carries the plaintext.
pub async fn insert_write_key(
    conn: &mut PgConnection,
    project_id: i64,
    name: &str,
    created_by: i64,
) -> ApiResult<WriteKey> {
    let key = new_write_key();
    let mut row: WriteKey = sqlx::query_as(&format!(
        "INSERT INTO write_keys (project_id, name, key_hash, display_prefix, created_by)
         VALUES ($1, $2, $3, $4, $5) RETURNING {WRITE_KEY_COLUMNS}"
    ))
    .bind(project_id)
    .bind(name)
    .bind(digest_hex(&key))
    .bind(display_prefix(&key))
    .bind(created_by)
    .fetch_one(conn)
    .await
    .db()?;
    row.key = Some(key);
    Ok(row)
}

/// `GET /api/v1/projects/{id}/write-keys`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<WriteKey>>> {
    project_role(&state.db, id, caller.user_id).await?;
    let keys = sqlx::query_as(&format!("SELECT {WRITE_KEY_COLUMNS} FROM write_keys WHERE project_id = $1 ORDER BY id"))
        .bind(id)
        .fetch_all(&state.db)
        .await
        .db()?;
    Ok(Json(keys))
}

/// `POST /api/v1/projects/{id}/write-keys` (admin+). The body may be empty.
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let (_, role) = project_role(&state.db, id, caller.user_id).await?;
    require(role, Role::Admin, "creating write keys")?;
    let req: CreateWriteKey = if body.iter().all(u8::is_ascii_whitespace) {
        CreateWriteKey::default()
    } else {
        cairn_common::http::parse_json(&body)?
    };
    let name = req.name.unwrap_or_default();
    validate::name("name", &name, false)?;
    let mut conn = state.db.acquire().await.db()?;
    let key = insert_write_key(&mut conn, id, &name, caller.user_id).await?;
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

/// `DELETE /api/v1/projects/{id}/write-keys/{key_id}` (admin+): capture refuses the key within
/// its cache TTL (at most a minute).
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, key_id)): Path<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let (_, role) = project_role(&state.db, id, caller.user_id).await?;
    require(role, Role::Admin, "revoking write keys")?;
    let done =
        sqlx::query("UPDATE write_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 AND project_id = $2")
            .bind(key_id)
            .bind(id)
            .execute(&state.db)
            .await
            .db()?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("write key"));
    }
    tracing::info!(project_id = id, key_id, user_id = caller.user_id, "write key revoked");
    Ok(StatusCode::NO_CONTENT)
}
