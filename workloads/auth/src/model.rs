//! The resources as the API shows them (and as PostgreSQL returns them).

use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

pub const USER_COLUMNS: &str = "id, email, name, created_at";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Organization {
    pub id: i64,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The caller's role.
    pub role: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Member {
    pub user_id: i64,
    pub email: String,
    pub name: String,
    pub role: String,
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
    pub timezone: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

pub const PROJECT_COLUMNS: &str = "id, organization_id, name, timezone, created_at";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WriteKey {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub display_prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// The plaintext key: only in the answer that created it.
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

pub const WRITE_KEY_COLUMNS: &str = "id, project_id, name, display_prefix, created_at, last_used_at, revoked_at";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PersonalKey {
    pub id: i64,
    pub name: String,
    pub display_prefix: String,
    /// `null`: every project the user can read.
    pub project_ids: Option<Vec<i64>>,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// The plaintext key: only in the answer that created it.
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

pub const PERSONAL_KEY_COLUMNS: &str =
    "id, name, display_prefix, project_ids, scopes, created_at, last_used_at, expires_at, revoked_at";
