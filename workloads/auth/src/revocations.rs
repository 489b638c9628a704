//! The revocation feed, `GET /internal/v1/revocations`: what capture and query must drop from
//! their credential caches (`schemas/postgres/0008_credential_revocations.sql` records it, by
//! triggers, in the transaction that takes the right away).
//!
//! A long poll, `POST {"since": cursor, "have": [seq, …], "wait_ms": n}`. `since` is the feed's
//! cursor, a snapshot's xmin: sequence order is not commit order, and a row whose transaction
//! commits after a later one's must not be skipped. The answer holds every row written by a
//! transaction at or after the cursor, and the next cursor (this snapshot's xmin: every
//! transaction below it has ended, so no row below it can still appear). `have` lists the rows of
//! the previous answer: the poll is answered at once when a row not in it is there, else when a
//! `cairn_revocations` notification brings one (LISTEN, one connection per process), or after
//! `wait_ms`. A row may come in two answers; dropping a cache entry twice does no harm. More than
//! [`PAGE`] rows: `reset` tells the caller to drop its whole cache.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use cairn_auth_client::{Revocation, RevocationFeed, RevocationKind};
use cairn_common::http::{ApiError, JsonBody};
use serde::Deserialize;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::db::{ApiResult, DbResultExt};
use crate::state::AppState;

/// Most rows in one answer; more, and the caller is told to drop everything.
pub const PAGE: i64 = 1000;
/// The longest a poll is held (less when half of `CAIRN_HTTP_REQUEST_TIMEOUT_MS` is less).
pub const MAX_WAIT: Duration = Duration::from_secs(25);
/// A held poll looks again this often, in case a notification was lost (the LISTEN connection
/// was being re-established).
const RECHECK: Duration = Duration::from_secs(1);
/// Rows are kept this long (pruned hourly); a caller whose last answer is older drops its caches
/// and starts again from the head.
pub const KEPT_FOR: Duration = cairn_auth_client::REVOCATIONS_KEPT_FOR;
/// The notification channel the triggers signal.
pub const CHANNEL: &str = "cairn_revocations";
/// The cursor: the oldest transaction still running (nothing below it can still appear).
const XMIN: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedRequest {
    /// The cursor of the previous answer; absent on the first call.
    #[serde(default)]
    since: Option<u64>,
    /// The seqs of the previous answer's rows.
    #[serde(default)]
    have: Vec<i64>,
    /// How long to hold the poll when nothing is new (milliseconds, at most 25 000; default 0).
    #[serde(default)]
    wait_ms: u64,
}

/// `POST /internal/v1/revocations`.
pub async fn feed(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<FeedRequest>,
) -> ApiResult<Json<RevocationFeed>> {
    if req.have.len() as i64 > PAGE {
        return Err(ApiError::invalid("have", format!("at most {PAGE} seqs")));
    }
    let Some(since) = req.since else { return head(&state.db).await.map(Json) };
    let have: std::collections::HashSet<i64> = req.have.into_iter().collect();
    let wait = Duration::from_millis(req.wait_ms).min(state.feed_max_wait);
    let deadline = tokio::time::Instant::now() + wait;
    let mut woken = state.revocations.subscribe();
    woken.mark_unchanged();
    loop {
        let answer = page(&state.db, since).await?;
        let new = answer.revocations.iter().any(|r| !have.contains(&r.seq));
        if new || answer.reset || tokio::time::Instant::now() >= deadline {
            return Ok(Json(answer));
        }
        // A notification (a commit) or the recheck, whichever comes first; the listener gone
        // (shutdown) leaves the timer.
        let recheck = (tokio::time::Instant::now() + RECHECK).min(deadline);
        tokio::select! {
            changed = woken.changed() => if changed.is_err() { tokio::time::sleep_until(recheck).await },
            _ = tokio::time::sleep_until(recheck) => {}
        }
    }
}

/// The cursor to start from, with nothing to apply (the caller's cache starts empty).
async fn head(db: &PgPool) -> ApiResult<RevocationFeed> {
    let cursor: String = sqlx::query_scalar(XMIN).fetch_one(db).await.db()?;
    Ok(RevocationFeed { cursor: parse_xid(&cursor)?, revocations: Vec::new(), reset: false })
}

/// The rows written by transactions at or after `since`, and the next cursor: this snapshot's
/// xmin (every transaction below it has ended, so nothing below it can still appear).
async fn page(db: &PgPool, since: u64) -> ApiResult<RevocationFeed> {
    let mut tx = db.begin().await.db()?;
    // One snapshot for the rows and the cursor: a row committed between them is not skipped.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await.db()?;
    let cursor: String = sqlx::query_scalar(XMIN).fetch_one(&mut *tx).await.db()?;
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, kind, subject FROM credential_revocations WHERE tx >= $1::text::xid8 ORDER BY seq LIMIT $2",
    )
    .bind(since.to_string())
    .bind(PAGE + 1)
    .fetch_all(&mut *tx)
    .await
    .db()?;
    tx.commit().await.db()?;
    let cursor = parse_xid(&cursor)?.max(since);
    if rows.len() as i64 > PAGE {
        return Ok(RevocationFeed { cursor, revocations: Vec::new(), reset: true });
    }
    let revocations = rows
        .into_iter()
        .filter_map(|(seq, kind, subject)| match kind.parse::<RevocationKind>() {
            Ok(kind) => Some(Revocation { seq, kind, subject }),
            Err(e) => {
                tracing::error!(seq, kind, error = %e, "unknown revocation kind; skipped");
                None
            }
        })
        .collect();
    Ok(RevocationFeed { cursor, revocations, reset: false })
}

fn parse_xid(text: &str) -> ApiResult<u64> {
    text.parse::<u64>().map_err(|e| ApiError::internal(format!("unexpected transaction id {text:?}: {e}")))
}

/// Listens on [`CHANNEL`] and bumps `notify` for each notification (and after each reconnect, in
/// case one was missed), until `stop`.
pub fn spawn_listener(db: PgPool, notify: watch::Sender<u64>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut backoff = cairn_common::retry::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match listen(&db, &notify, &stop).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "revocation listener lost its connection; reconnecting"),
            }
            notify.send_modify(|n| *n += 1);
            if !backoff.wait(&stop).await {
                return;
            }
        }
    });
}

async fn listen(db: &PgPool, notify: &watch::Sender<u64>, stop: &CancellationToken) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(db).await?;
    // A lost connection is an error here rather than a silent reconnect that could miss rows.
    listener.ignore_pool_close_event(false);
    listener.listen(CHANNEL).await?;
    notify.send_modify(|n| *n += 1);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            n = listener.try_recv() => match n? {
                Some(_) => notify.send_modify(|n| *n += 1),
                None => return Err(sqlx::Error::PoolClosed),
            }
        }
    }
}

/// Deletes rows older than [`KEPT_FOR`], a minute after start and then hourly.
pub fn spawn_pruning(db: PgPool, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut pause = Duration::from_secs(60);
        loop {
            tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(pause) => {} }
            pause = Duration::from_secs(3600);
            let pruned =
                sqlx::query("DELETE FROM credential_revocations WHERE revoked_at < now() - make_interval(secs => $1)")
                    .bind(KEPT_FOR.as_secs_f64())
                    .execute(&db)
                    .await;
            match pruned {
                Ok(r) if r.rows_affected() > 0 => tracing::info!(rows = r.rows_affected(), "pruned old revocations"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not prune old revocations"),
            }
        }
    });
}
