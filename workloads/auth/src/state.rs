//! What every handler shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::limits::LoginLimiter;
use crate::metrics::AuthMetrics;
use crate::tokens::TokenSigner;

pub struct AppState {
    pub db: PgPool,
    pub signer: TokenSigner,
    pub refresh_ttl: Duration,
    /// A session ends this long after it began, however often it is refreshed.
    pub session_max_age: Duration,
    /// How long an invitation can be accepted.
    pub invitation_ttl: Duration,
    pub limiter: LoginLimiter,
    pub metrics: Arc<AuthMetrics>,
    /// `CAIRN_INTERNAL_TOKEN`.
    pub internal_token: Option<cairn_common::config::SecretString>,
    /// Whose `X-Forwarded-For` names the client.
    pub trusted_proxies: cairn_common::server::TrustedProxies,
    /// Password hashing, with bounded concurrency and memory.
    pub hasher: crate::hashing::HashPool,
    /// A hash verified when the email is unknown, so a login takes as long either way.
    pub dummy_hash: String,
    pub usage: UsageThrottle,
    /// Bumped on each `cairn_revocations` notification: wakes the held polls of the revocation feed.
    pub revocations: tokio::sync::watch::Sender<u64>,
    /// The longest a revocation poll is held: 25 s, or half of `CAIRN_HTTP_REQUEST_TIMEOUT_MS`.
    pub feed_max_wait: Duration,
}

/// Which key's `last_used_at` to touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Write,
    Personal,
}

/// Limits `last_used_at` writes to one per key per minute from this process (the UPDATE itself
/// also skips rows touched within the minute, across replicas).
#[derive(Default)]
pub struct UsageThrottle {
    seen: Mutex<HashMap<(KeyKind, i64), Instant>>,
}

pub const USAGE_INTERVAL: Duration = Duration::from_secs(60);

impl UsageThrottle {
    /// True when the key's use should be written now.
    pub fn due(&self, kind: KeyKind, id: i64, now: Instant) -> bool {
        let Ok(mut seen) = self.seen.lock() else { return false };
        if seen.len() > 100_000 {
            seen.retain(|_, t| now.duration_since(*t) < USAGE_INTERVAL);
        }
        match seen.get(&(kind, id)) {
            Some(t) if now.duration_since(*t) < USAGE_INTERVAL => false,
            _ => {
                seen.insert((kind, id), now);
                true
            }
        }
    }
}

/// Records that a key was used, at most once a minute, without delaying the answer.
pub fn touch_key(state: &Arc<AppState>, kind: KeyKind, id: i64) {
    if !state.usage.due(kind, id, Instant::now()) {
        return;
    }
    let db = state.db.clone();
    let sql = match kind {
        KeyKind::Write => {
            "UPDATE write_keys SET last_used_at = now() WHERE id = $1
             AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"
        }
        KeyKind::Personal => {
            "UPDATE personal_keys SET last_used_at = now() WHERE id = $1
             AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"
        }
    };
    tokio::spawn(async move {
        if let Err(e) = sqlx::query(sql).bind(id).execute(&db).await {
            tracing::debug!(error = %e, "cannot record a key's last use");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_written_once_a_minute_per_key() {
        let u = UsageThrottle::default();
        let t0 = Instant::now();
        assert!(u.due(KeyKind::Write, 1, t0));
        assert!(!u.due(KeyKind::Write, 1, t0 + Duration::from_secs(59)));
        assert!(u.due(KeyKind::Personal, 1, t0), "another kind of key");
        assert!(u.due(KeyKind::Write, 2, t0));
        assert!(u.due(KeyKind::Write, 1, t0 + Duration::from_secs(61)));
    }
}
