//! Projects: every member of an organisation reads its projects; admins and owners create,
//! change and delete them. A new project gets one write key, returned in clear once.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_auth_client::Role;
use cairn_common::http::{ApiError, JsonBody};
use serde::Deserialize;
use serde_json::json;

use crate::api::write_keys::insert_write_key;
use crate::db::{org_role, project_role, require, ApiResult, DbResultExt};
use crate::extract::Caller;
use crate::model::{Project, PROJECT_COLUMNS};
use crate::state::AppState;
use crate::validate;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    name: String,
    #[serde(default)]
    timezone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

/// Every project of every organisation `user_id` belongs to.
pub async fn list_for(state: &AppState, user_id: i64) -> ApiResult<Vec<Project>> {
    sqlx::query_as(
        "SELECT p.id, p.organization_id, p.name, p.timezone, p.created_at FROM projects p
         JOIN memberships m ON m.organization_id = p.organization_id WHERE m.user_id = $1 ORDER BY p.id",
    )
    .bind(user_id)
    .fetch_all(&state.db)
    .await
    .db()
}

async fn fetch(state: &AppState, id: i64) -> ApiResult<Project> {
    let p: Option<Project> = sqlx::query_as(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"))
        .bind(id)
        .fetch_optional(&state.db)
        .await
        .db()?;
    p.ok_or_else(|| ApiError::not_found("project"))
}

/// `GET /api/v1/projects`.
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Vec<Project>>> {
    Ok(Json(list_for(&state, caller.user_id).await?))
}

/// `POST /api/v1/organizations/{id}/projects` (admin+).
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(org_id): Path<i64>,
    JsonBody(req): JsonBody<CreateProject>,
) -> ApiResult<Response> {
    let role = org_role(&state.db, org_id, caller.user_id).await?;
    require(role, Role::Admin, "creating projects")?;
    validate::name("name", &req.name, true)?;
    let timezone = req.timezone.unwrap_or_else(|| "UTC".to_string());
    validate::timezone("timezone", &timezone)?;
    let mut tx = state.db.begin().await.db()?;
    let project: Project = sqlx::query_as(&format!(
        "INSERT INTO projects (organization_id, name, timezone) VALUES ($1, $2, $3) RETURNING {PROJECT_COLUMNS}"
    ))
    .bind(org_id)
    .bind(&req.name)
    .bind(&timezone)
    .fetch_one(&mut *tx)
    .await
    .db()?;
    let write_key = insert_write_key(&mut tx, project.id, "Default", caller.user_id).await?;
    tx.commit().await.db()?;
    let mut body = json!(project);
    body["write_key"] = json!(write_key);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/v1/projects/{id}`.
pub async fn get(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<Project>> {
    project_role(&state.db, id, caller.user_id).await?;
    Ok(Json(fetch(&state, id).await?))
}

/// `PATCH /api/v1/projects/{id}` (admin+).
pub async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
    JsonBody(req): JsonBody<UpdateProject>,
) -> ApiResult<Json<Project>> {
    let (_, role) = project_role(&state.db, id, caller.user_id).await?;
    require(role, Role::Admin, "changing projects")?;
    if let Some(name) = &req.name {
        validate::name("name", name, true)?;
    }
    if let Some(tz) = &req.timezone {
        validate::timezone("timezone", tz)?;
    }
    sqlx::query("UPDATE projects SET name = COALESCE($2, name), timezone = COALESCE($3, timezone) WHERE id = $1")
        .bind(id)
        .bind(&req.name)
        .bind(&req.timezone)
        .execute(&state.db)
        .await
        .db()?;
    Ok(Json(fetch(&state, id).await?))
}

/// `DELETE /api/v1/projects/{id}` (admin+): its write keys stop working at once.
pub async fn delete(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let (_, role) = project_role(&state.db, id, caller.user_id).await?;
    require(role, Role::Admin, "deleting projects")?;
    sqlx::query("DELETE FROM projects WHERE id = $1").bind(id).execute(&state.db).await.db()?;
    tracing::info!(project_id = id, user_id = caller.user_id, "project deleted");
    Ok(StatusCode::NO_CONTENT)
}
