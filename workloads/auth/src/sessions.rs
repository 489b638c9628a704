//! Login sessions: creation (signup, login), refresh-token rotation with reuse detection, and
//! revocation (logout).
//!
//! A refresh token is used once: each refresh replaces its digest and records the one it
//! replaced (`used_refresh_tokens`). Presenting any used token again means two parties hold the
//! session's tokens (one of them stole it), so the whole session is revoked and both must sign in
//! again. A session also ends `CAIRN_AUTH_SESSION_MAX_AGE_SECS` after it began, however often it
//! is refreshed.

use std::time::SystemTime;

use cairn_common::http::ApiError;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::{ApiResult, DbResultExt};
use crate::state::AppState;
use crate::tokens::{digest_hex, new_refresh_token};

/// What signup, login and refresh answer.
#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

fn pair(state: &AppState, user_id: i64, sid: Uuid, refresh_token: String) -> ApiResult<TokenPair> {
    let access_token = state.signer.issue(user_id, sid, SystemTime::now()).map_err(ApiError::internal)?;
    Ok(TokenPair { access_token, refresh_token, token_type: "Bearer", expires_in: state.signer.access_ttl.as_secs() })
}

fn refresh_interval(state: &AppState) -> String {
    format!("{} seconds", state.refresh_ttl.as_secs())
}

fn max_age_interval(state: &AppState) -> String {
    format!("{} seconds", state.session_max_age.as_secs())
}

/// Starts a session for `user_id` (inside the caller's transaction or on a connection).
pub async fn create(conn: &mut PgConnection, state: &AppState, user_id: i64, user_agent: &str) -> ApiResult<TokenPair> {
    let sid = Uuid::new_v4();
    let refresh = new_refresh_token();
    let agent: String = user_agent.chars().take(512).collect();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, refresh_hash, expires_at, user_agent)
         VALUES ($1, $2, $3, now() + $4::interval, $5)",
    )
    .bind(sid)
    .bind(user_id)
    .bind(digest_hex(&refresh))
    .bind(refresh_interval(state))
    .bind(agent)
    .execute(conn)
    .await
    .db()?;
    pair(state, user_id, sid, refresh)
}

/// Exchanges a refresh token for a new pair; the session's expiry slides forward.
pub async fn refresh(state: &AppState, refresh_token: &str) -> ApiResult<TokenPair> {
    let invalid = || ApiError::unauthorized("the refresh token is invalid, expired or revoked; sign in again");
    let presented = digest_hex(refresh_token);
    let next = new_refresh_token();
    let mut tx = state.db.begin().await.db()?;
    let rotated: Option<(Uuid, i64)> = sqlx::query_as(
        "UPDATE sessions SET previous_refresh_hash = refresh_hash, refresh_hash = $2, refreshed_at = now(),
                expires_at = LEAST(now() + $3::interval, created_at + $4::interval)
         WHERE refresh_hash = $1 AND revoked_at IS NULL AND expires_at > now()
           AND created_at > now() - $4::interval
         RETURNING id, user_id",
    )
    .bind(&presented)
    .bind(digest_hex(&next))
    .bind(refresh_interval(state))
    .bind(max_age_interval(state))
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    if let Some((sid, user_id)) = rotated {
        sqlx::query("INSERT INTO used_refresh_tokens (hash, session_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&presented)
            .bind(sid)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        state.metrics.refresh("rotated");
        return pair(state, user_id, sid, next);
    }
    // Any token this session used before (or the one before the current, as recorded by
    // sessions that predate the history table): someone else holds the session's tokens.
    let reused: Option<(Uuid, i64)> = sqlx::query_as(
        "UPDATE sessions SET revoked_at = COALESCE(revoked_at, now())
         WHERE id = (SELECT session_id FROM used_refresh_tokens WHERE hash = $1)
            OR previous_refresh_hash = $1
         RETURNING id, user_id",
    )
    .bind(&presented)
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    tx.commit().await.db()?;
    match reused {
        Some((sid, user_id)) => {
            state.metrics.refresh("reuse_detected");
            tracing::warn!(session = %sid, user_id, "an already used refresh token was presented again; session revoked");
        }
        None => state.metrics.refresh("invalid"),
    }
    Err(invalid())
}

/// Ends a session: its access tokens and refresh token stop working at once.
pub async fn revoke(state: &AppState, sid: Uuid) -> ApiResult<()> {
    sqlx::query("UPDATE sessions SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1")
        .bind(sid)
        .execute(&state.db)
        .await
        .db()?;
    Ok(())
}

/// Ends every session of `user_id` (but `keep`, when given): "log out everywhere", and what a
/// password change does to the other sessions.
pub async fn revoke_all(state: &AppState, user_id: i64, keep: Option<Uuid>) -> ApiResult<u64> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = now()
         WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id <> $2)",
    )
    .bind(user_id)
    .bind(keep)
    .execute(&state.db)
    .await
    .db()?;
    Ok(done.rows_affected())
}
