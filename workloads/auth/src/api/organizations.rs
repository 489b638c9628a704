//! Organisations and their members.
//!
//! Rules: any member reads; admins and owners rename the organisation and manage members; only
//! owners grant or take away the owner role and delete the organisation; an organisation always
//! keeps at least one owner (409). Anyone may leave an organisation (unless they are its last
//! owner). People join by invitation: an admin invites an email and gets a one-time token to
//! pass on; the person with that email accepts it once signed in. Inviting answers the same
//! whether or not the email has an account, and nobody becomes a member without accepting.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_auth_client::Role;
use cairn_common::http::{ApiError, JsonBody};
use serde::Deserialize;
use sqlx::PgConnection;

use crate::db::{org_role, parse_role, require, ApiResult, DbResultExt};
use crate::extract::Caller;
use crate::model::{Member, Organization};
use crate::state::AppState;
use crate::validate;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    email: String,
    role: Role,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    role: Role,
}

/// Every organisation `user_id` belongs to, with their role.
pub async fn list_for(state: &AppState, user_id: i64) -> ApiResult<Vec<Organization>> {
    sqlx::query_as(
        "SELECT o.id, o.name, o.created_at, m.role FROM organizations o
         JOIN memberships m ON m.organization_id = o.id WHERE m.user_id = $1 ORDER BY o.id",
    )
    .bind(user_id)
    .fetch_all(&state.db)
    .await
    .db()
}

async fn fetch(state: &AppState, org_id: i64, user_id: i64) -> ApiResult<Organization> {
    let org: Option<Organization> = sqlx::query_as(
        "SELECT o.id, o.name, o.created_at, m.role FROM organizations o
         JOIN memberships m ON m.organization_id = o.id AND m.user_id = $2 WHERE o.id = $1",
    )
    .bind(org_id)
    .bind(user_id)
    .fetch_optional(&state.db)
    .await
    .db()?;
    org.ok_or_else(|| ApiError::not_found("organization"))
}

/// `GET /api/v1/organizations`.
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Vec<Organization>>> {
    Ok(Json(list_for(&state, caller.user_id).await?))
}

/// `POST /api/v1/organizations`: the caller becomes its owner.
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateOrganization>,
) -> ApiResult<Response> {
    validate::name("name", &req.name, true)?;
    let mut tx = state.db.begin().await.db()?;
    let org: Organization = sqlx::query_as(
        "INSERT INTO organizations (name) VALUES ($1) RETURNING id, name, created_at, 'owner'::text AS role",
    )
    .bind(&req.name)
    .fetch_one(&mut *tx)
    .await
    .db()?;
    sqlx::query("INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(org.id)
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    Ok((StatusCode::CREATED, Json(org)).into_response())
}

/// `GET /api/v1/organizations/{id}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<Organization>> {
    Ok(Json(fetch(&state, id, caller.user_id).await?))
}

/// `PATCH /api/v1/organizations/{id}` (admin+).
pub async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
    JsonBody(req): JsonBody<UpdateOrganization>,
) -> ApiResult<Json<Organization>> {
    let role = org_role(&state.db, id, caller.user_id).await?;
    require(role, Role::Admin, "changing the organization")?;
    if let Some(name) = &req.name {
        validate::name("name", name, true)?;
        sqlx::query("UPDATE organizations SET name = $2 WHERE id = $1")
            .bind(id)
            .bind(name)
            .execute(&state.db)
            .await
            .db()?;
    }
    Ok(Json(fetch(&state, id, caller.user_id).await?))
}

/// `DELETE /api/v1/organizations/{id}` (owner): its projects and keys go with it.
pub async fn delete(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let role = org_role(&state.db, id, caller.user_id).await?;
    require(role, Role::Owner, "deleting the organization")?;
    sqlx::query("DELETE FROM organizations WHERE id = $1").bind(id).execute(&state.db).await.db()?;
    tracing::info!(organization_id = id, user_id = caller.user_id, "organization deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn members_of(state: &AppState, org_id: i64) -> ApiResult<Vec<Member>> {
    sqlx::query_as(
        "SELECT u.id AS user_id, u.email, u.name, m.role, m.created_at AS joined_at FROM memberships m
         JOIN users u ON u.id = m.user_id WHERE m.organization_id = $1 ORDER BY m.created_at, u.id",
    )
    .bind(org_id)
    .fetch_all(&state.db)
    .await
    .db()
}

/// `GET /api/v1/organizations/{id}/members`.
pub async fn list_members(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<Member>>> {
    org_role(&state.db, id, caller.user_id).await?;
    Ok(Json(members_of(&state, id).await?))
}

/// Locks the organisation's membership for the rest of the transaction and returns the
/// caller's and the target's roles (404 when the caller is not a member, `None` target when
/// the target is not one).
async fn lock_roles(conn: &mut PgConnection, org_id: i64, caller: i64, target: i64) -> ApiResult<(Role, Option<Role>)> {
    let locked: Option<i64> = sqlx::query_scalar("SELECT id FROM organizations WHERE id = $1 FOR UPDATE")
        .bind(org_id)
        .fetch_optional(&mut *conn)
        .await
        .db()?;
    if locked.is_none() {
        return Err(ApiError::not_found("organization"));
    }
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT user_id, role FROM memberships WHERE organization_id = $1 AND user_id IN ($2, $3)")
            .bind(org_id)
            .bind(caller)
            .bind(target)
            .fetch_all(&mut *conn)
            .await
            .db()?;
    let role_of = |id: i64| rows.iter().find(|(u, _)| *u == id).map(|(_, r)| parse_role(r)).transpose();
    let caller_role = role_of(caller)?.ok_or_else(|| ApiError::not_found("organization"))?;
    Ok((caller_role, role_of(target)?))
}

async fn owner_count(conn: &mut PgConnection, org_id: i64) -> ApiResult<i64> {
    sqlx::query_scalar("SELECT count(*) FROM memberships WHERE organization_id = $1 AND role = 'owner'")
        .bind(org_id)
        .fetch_one(conn)
        .await
        .db()
}

fn last_owner() -> ApiError {
    ApiError::conflict("an organization needs at least one owner; make someone else owner first")
}

async fn member(state: &AppState, org_id: i64, user_id: i64) -> ApiResult<Member> {
    members_of(state, org_id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user_id)
        .ok_or_else(|| ApiError::not_found("member"))
}

/// `POST /api/v1/organizations/{id}/members` (admin+; owner to invite an owner): invites an
/// email. Answers 202 with the invitation and its one-time token (shown once; only its digest is
/// kept) — the same whatever the email, so it tells nothing about who has an account.
pub async fn add_member(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
    JsonBody(req): JsonBody<AddMember>,
) -> ApiResult<Response> {
    let role = org_role(&state.db, id, caller.user_id).await?;
    require(role, Role::Admin, "inviting members")?;
    if req.role == Role::Owner {
        require(role, Role::Owner, "inviting an owner")?;
    }
    validate::email("email", &req.email)?;
    let token = format!("cinv_{}", crate::tokens::new_refresh_token());
    let invitation: Invitation = sqlx::query_as(&format!(
        "INSERT INTO invitations (organization_id, email, role, token_hash, invited_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + $6::interval) RETURNING {INVITATION_COLUMNS}"
    ))
    .bind(id)
    .bind(req.email.trim())
    .bind(req.role.as_str())
    .bind(crate::tokens::digest_hex(&token))
    .bind(caller.user_id)
    .bind(format!("{} seconds", state.invitation_ttl.as_secs()))
    .fetch_one(&state.db)
    .await
    .db()?;
    tracing::info!(organization = id, invitation = invitation.id, "invitation created");
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"invitation": invitation, "token": token}))).into_response())
}

/// An invitation as its organisation's admins see it (never its token).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Invitation {
    pub id: i64,
    pub organization_id: i64,
    pub email: String,
    pub role: String,
    pub invited_by: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
}

const INVITATION_COLUMNS: &str = "id, organization_id, email, role, invited_by, created_at, expires_at";

/// `GET /api/v1/organizations/{id}/invitations` (admin+): invitations not yet accepted or expired.
pub async fn list_invitations(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<Invitation>>> {
    let role = org_role(&state.db, id, caller.user_id).await?;
    require(role, Role::Admin, "listing invitations")?;
    let list: Vec<Invitation> = sqlx::query_as(&format!(
        "SELECT {INVITATION_COLUMNS} FROM invitations
         WHERE organization_id = $1 AND accepted_at IS NULL AND expires_at > now() ORDER BY id"
    ))
    .bind(id)
    .fetch_all(&state.db)
    .await
    .db()?;
    Ok(Json(list))
}

/// `DELETE /api/v1/organizations/{id}/invitations/{invitation_id}` (admin+): withdraws one.
pub async fn revoke_invitation(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, invitation)): Path<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let role = org_role(&state.db, id, caller.user_id).await?;
    require(role, Role::Admin, "withdrawing invitations")?;
    let done = sqlx::query("DELETE FROM invitations WHERE id = $1 AND organization_id = $2 AND accepted_at IS NULL")
        .bind(invitation)
        .bind(id)
        .execute(&state.db)
        .await
        .db()?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("invitation"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    token: String,
}

/// `POST /api/v1/invitations/accept`: the signed-in caller accepts an invitation sent to their
/// email; they become a member with its role (an existing membership is kept as it is). An
/// unknown, expired, used or someone else's invitation answers the same 404.
pub async fn accept_invitation(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(req): JsonBody<AcceptInvitation>,
) -> ApiResult<Json<Member>> {
    let not_found = || ApiError::not_found("invitation").with_field("token");
    let mut tx = state.db.begin().await.db()?;
    let found: Option<(i64, i64, String)> = sqlx::query_as(
        "UPDATE invitations i SET accepted_at = now(), accepted_by = $2
         FROM users u
         WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.expires_at > now()
           AND u.id = $2 AND lower(u.email) = lower(i.email)
         RETURNING i.id, i.organization_id, i.role",
    )
    .bind(crate::tokens::digest_hex(req.token.trim()))
    .bind(caller.user_id)
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    let (invitation, org_id, role) = found.ok_or_else(not_found)?;
    sqlx::query("INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(org_id)
        .bind(caller.user_id)
        .bind(&role)
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    tracing::info!(organization = org_id, invitation, user_id = caller.user_id, "invitation accepted");
    Ok(Json(member(&state, org_id, caller.user_id).await?))
}

/// `PATCH /api/v1/organizations/{id}/members/{user_id}` (admin+; owner when an owner is
/// involved).
pub async fn update_member(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, target)): Path<(i64, i64)>,
    JsonBody(req): JsonBody<UpdateMember>,
) -> ApiResult<Json<Member>> {
    let mut tx = state.db.begin().await.db()?;
    let (role, current) = lock_roles(&mut tx, id, caller.user_id, target).await?;
    require(role, Role::Admin, "changing roles")?;
    let current = current.ok_or_else(|| ApiError::not_found("member"))?;
    if current == Role::Owner || req.role == Role::Owner {
        require(role, Role::Owner, "granting or taking away the owner role")?;
    }
    if current == Role::Owner && req.role != Role::Owner && owner_count(&mut tx, id).await? <= 1 {
        return Err(last_owner());
    }
    sqlx::query("UPDATE memberships SET role = $3 WHERE organization_id = $1 AND user_id = $2")
        .bind(id)
        .bind(target)
        .bind(req.role.as_str())
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    Ok(Json(member(&state, id, target).await?))
}

/// `DELETE /api/v1/organizations/{id}/members/{user_id}` (admin+, owner to remove an owner, or
/// anyone removing themselves).
pub async fn remove_member(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, target)): Path<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await.db()?;
    let (role, current) = lock_roles(&mut tx, id, caller.user_id, target).await?;
    let leaving = target == caller.user_id;
    if !leaving {
        require(role, Role::Admin, "removing members")?;
    }
    let current = current.ok_or_else(|| ApiError::not_found("member"))?;
    if current == Role::Owner {
        if !leaving {
            require(role, Role::Owner, "removing an owner")?;
        }
        if owner_count(&mut tx, id).await? <= 1 {
            return Err(last_owner());
        }
    }
    sqlx::query("DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2")
        .bind(id)
        .bind(target)
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    Ok(StatusCode::NO_CONTENT)
}
