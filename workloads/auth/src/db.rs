//! PostgreSQL errors as API errors, and the membership look-ups every resource checks first.
//!
//! Access rule: a resource of an organisation the caller does not belong to answers 404 (its
//! existence is not revealed); a member whose role is too low gets 403.

use cairn_auth_client::Role;
use cairn_common::http::ApiError;
use sqlx::PgPool;

pub type ApiResult<T> = Result<T, ApiError>;

/// A database error as the caller sees it (503 when PostgreSQL cannot be reached, else 500).
pub use cairn_postgres::api_error as db_error;

/// True when `e` is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "23505")
}

pub trait DbResultExt<T> {
    fn db(self) -> ApiResult<T>;
}

impl<T> DbResultExt<T> for Result<T, sqlx::Error> {
    fn db(self) -> ApiResult<T> {
        self.map_err(db_error)
    }
}

pub fn parse_role(text: &str) -> ApiResult<Role> {
    text.parse::<Role>().map_err(ApiError::internal)
}

/// The caller's role in organisation `org_id`; 404 when they are not a member (or it does not
/// exist).
pub async fn org_role(db: &PgPool, org_id: i64, user_id: i64) -> ApiResult<Role> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE organization_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(db)
            .await
            .db()?;
    match role {
        Some(r) => parse_role(&r),
        None => Err(ApiError::not_found("organization")),
    }
}

/// The organisation of project `project_id` and the caller's role there; 404 when the caller
/// cannot see it.
pub async fn project_role(db: &PgPool, project_id: i64, user_id: i64) -> ApiResult<(i64, Role)> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT p.organization_id, m.role FROM projects p
         JOIN memberships m ON m.organization_id = p.organization_id AND m.user_id = $2
         WHERE p.id = $1",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_optional(db)
    .await
    .db()?;
    match row {
        Some((org, r)) => Ok((org, parse_role(&r)?)),
        None => Err(ApiError::not_found("project")),
    }
}

/// 403 unless `role` is `min` or more.
pub fn require(role: Role, min: Role, action: &str) -> ApiResult<()> {
    if role.at_least(min) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("{action} requires the {min} role or higher; you are {role}")))
    }
}
