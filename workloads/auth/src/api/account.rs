//! Accounts: signup, login, token refresh, logout (of one session or all), password change, and
//! who am I.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_common::http::{ApiError, JsonBody};
use serde::Deserialize;
use serde_json::json;

use crate::api::write_keys::insert_write_key;
use crate::db::{is_unique_violation, ApiResult, DbResultExt};
use crate::extract::{Caller, Client};
use crate::model::{Organization, Project, User, PROJECT_COLUMNS, USER_COLUMNS};
use crate::state::AppState;
use crate::{password, sessions, validate};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    organization_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

fn rate_limited(wait: std::time::Duration) -> ApiError {
    ApiError::too_many_requests("too many attempts; wait before trying again", wait)
}

/// Runs argon2 on the hashing pool (bounded concurrency, memory allocated once per worker);
/// 503 when every worker stays busy.
async fn hashing<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut [argon2::Block]) -> T + Send + 'static,
) -> ApiResult<T> {
    state.hasher.run(f).await.map_err(|e| {
        state.metrics.hashing_busy.inc();
        tracing::debug!(error = %e, "password hashing refused");
        ApiError::unavailable("too many sign-ins at once; retry in a moment")
    })
}

/// `POST /api/v1/signup`: a user, an organisation they own, its first project "Default" with one
/// write key, and a session.
pub async fn signup(
    State(state): State<Arc<AppState>>,
    client: Client,
    JsonBody(req): JsonBody<SignupRequest>,
) -> ApiResult<Response> {
    state.limiter.check_ip(client.ip).map_err(rate_limited)?;
    validate::email("email", &req.email)?;
    password::check_policy(&req.password, &req.email).map_err(|w| ApiError::invalid("password", w.to_string()))?;
    let name = req.name.unwrap_or_default();
    validate::name("name", &name, false)?;
    let org_name = match req.organization_name {
        Some(n) => n,
        None if name.trim().is_empty() => "My organization".to_string(),
        None => format!("{}'s organization", name.trim()),
    };
    validate::name("organization_name", &org_name, true)?;

    let pw = req.password;
    let hash = hashing(&state, move |m| password::hash_with(&pw, m)).await?.map_err(ApiError::internal)?;

    let mut tx = state.db.begin().await.db()?;
    let user: User = match sqlx::query_as(&format!(
        "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) RETURNING {USER_COLUMNS}"
    ))
    .bind(&req.email)
    .bind(&name)
    .bind(&hash)
    .fetch_one(&mut *tx)
    .await
    {
        Ok(u) => u,
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict("an account with this email already exists").with_field("email"))
        }
        Err(e) => return Err(crate::db::db_error(e)),
    };
    let organization: Organization = sqlx::query_as(
        "INSERT INTO organizations (name) VALUES ($1) RETURNING id, name, created_at, 'owner'::text AS role",
    )
    .bind(&org_name)
    .fetch_one(&mut *tx)
    .await
    .db()?;
    sqlx::query("INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(organization.id)
        .bind(user.id)
        .execute(&mut *tx)
        .await
        .db()?;
    let project: Project = sqlx::query_as(&format!(
        "INSERT INTO projects (organization_id, name) VALUES ($1, 'Default') RETURNING {PROJECT_COLUMNS}"
    ))
    .bind(organization.id)
    .fetch_one(&mut *tx)
    .await
    .db()?;
    let write_key = insert_write_key(&mut tx, project.id, "Default", user.id).await?;
    let tokens = sessions::create(&mut tx, &state, user.id, &client.user_agent).await?;
    tx.commit().await.db()?;
    tracing::info!(user_id = user.id, organization_id = organization.id, project_id = project.id, "signed up");

    let mut body = serde_json::to_value(&tokens).map_err(ApiError::internal)?;
    body["user"] = json!(user);
    body["organization"] = json!(organization);
    body["project"] = json!(project);
    body["write_key"] = json!(write_key);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /api/v1/login`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    client: Client,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Response> {
    let limited = state.limiter.check_ip(client.ip).and_then(|()| state.limiter.check_email(&req.email));
    if let Err(wait) = limited {
        state.metrics.login("rate_limited");
        return Err(rate_limited(wait));
    }
    let found: Option<(i64, String)> =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE lower(email) = lower($1)")
            .bind(&req.email)
            .fetch_optional(&state.db)
            .await
            .db()?;
    // Unknown emails cost a verification too, so timing does not tell which emails exist.
    let (user_id, hash) = match found {
        Some((id, hash)) => (Some(id), hash),
        None => (None, state.dummy_hash.clone()),
    };
    let pw = req.password;
    let matches = hashing(&state, move |m| password::verify_with(&pw, &hash, m)).await?;
    let Some(user_id) = user_id.filter(|_| matches) else {
        state.metrics.login("invalid_credentials");
        return Err(ApiError::unauthorized("invalid email or password"));
    };
    let mut conn = state.db.acquire().await.db()?;
    let tokens = sessions::create(&mut conn, &state, user_id, &client.user_agent).await?;
    let user: User = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await
        .db()?;
    state.metrics.login("success");
    tracing::info!(user_id, "logged in");
    let mut body = serde_json::to_value(&tokens).map_err(ApiError::internal)?;
    body["user"] = json!(user);
    Ok(Json(body).into_response())
}

/// `POST /api/v1/token/refresh`.
pub async fn refresh(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> ApiResult<Response> {
    let tokens = sessions::refresh(&state, &req.refresh_token).await?;
    Ok(Json(tokens).into_response())
}

/// `POST /api/v1/logout`: revokes the caller's session.
pub async fn logout(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<StatusCode> {
    sessions::revoke(&state, caller.session_id).await?;
    tracing::info!(user_id = caller.user_id, session = %caller.session_id, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/logout/all`: ends every session of the caller, this one included.
pub async fn logout_all(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<StatusCode> {
    let ended = sessions::revoke_all(&state, caller.user_id, None).await?;
    tracing::info!(user_id = caller.user_id, sessions = ended, "logged out everywhere");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/password`: changes the caller's password (the current one is required) and ends
/// every other session of theirs.
pub async fn change_password(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    client: Client,
    JsonBody(req): JsonBody<PasswordChange>,
) -> ApiResult<StatusCode> {
    state.limiter.check_ip(client.ip).map_err(rate_limited)?;
    let (email, hash): (String, String) = sqlx::query_as("SELECT email, password_hash FROM users WHERE id = $1")
        .bind(caller.user_id)
        .fetch_optional(&state.db)
        .await
        .db()?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    state.limiter.check_email(&email).map_err(rate_limited)?;
    let current = req.current_password;
    let matches = hashing(&state, move |m| password::verify_with(&current, &hash, m)).await?;
    if !matches {
        return Err(ApiError::invalid("current_password", "is not the account's password"));
    }
    password::check_policy(&req.new_password, &email).map_err(|w| ApiError::invalid("new_password", w.to_string()))?;
    let new = req.new_password;
    let new_hash = hashing(&state, move |m| password::hash_with(&new, m)).await?.map_err(ApiError::internal)?;
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(caller.user_id)
        .bind(new_hash)
        .execute(&state.db)
        .await
        .db()?;
    let ended = sessions::revoke_all(&state, caller.user_id, Some(caller.session_id)).await?;
    tracing::info!(user_id = caller.user_id, other_sessions_ended = ended, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/me`: the user, their organisations with their role, and every project they see.
pub async fn me(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Response> {
    let user: Option<User> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(caller.user_id)
        .fetch_optional(&state.db)
        .await
        .db()?;
    let user = user.ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let organizations = crate::api::organizations::list_for(&state, caller.user_id).await?;
    let projects = crate::api::projects::list_for(&state, caller.user_id).await?;
    Ok(Json(json!({"user": user, "organizations": organizations, "projects": projects})).into_response())
}
