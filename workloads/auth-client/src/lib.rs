//! The auth service as its callers see it: the shared types of its internal API ([`Principal`],
//! [`ResolvedWriteKey`], [`Role`], [`Permission`]) and [`AuthClient`], which asks
//! `cairn-auth`'s `/internal/v1/*` endpoints and caches the answers.
//!
//! Caching: answers are cached by the SHA-256 of the credential (never the plaintext), positive
//! ones for `cache_ttl` (at most 60 s, so a revoked key or session stops working within a
//! minute), negative ones for `negative_ttl`. When the auth service cannot be reached, a positive
//! answer is served for up to `stale_for` after it was fetched, so a short auth outage does not
//! stop ingestion or queries; with nothing usable cached the call fails with
//! [`AuthClientError::Unavailable`]. An access token is never cached past its own expiry.
//!
//! Revocations reach the caches at once: [`AuthClient::follow_revocations`] long-polls the auth
//! service's feed (`POST /internal/v1/revocations`) and drops the entries each revocation names (a
//! write key, a project, a personal key, a session, a user's rights), typically within
//! milliseconds of the commit. An answer fetched while a revocation was being applied is used
//! once and not kept. While the feed cannot be reached, `cache_ttl` still bounds how long a
//! revoked credential works.
//!
//! The cache is moka's (bounded by `CAIRN_AUTH_CACHE_SIZE`, TinyLFU admission, so a flood of
//! unknown keys cannot push out the keys in use). Concurrent lookups of one credential are merged:
//! one calls the auth service, the others wait for its answer; after a failed call, callers of
//! that credential get the stale answer (or the error) for a second without calling again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use cairn_common::config::catalogue::{AUTH_CACHE_SIZE, AUTH_CACHE_TTL_SECS, AUTH_URL, INTERNAL_TOKEN};
use cairn_common::config::{ConfigError, ExposeSecret, SecretString, Source};

/// A member's role in an organisation, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    /// The name stored in `memberships.role` and used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// 3 for owners down to 0 for viewers.
    pub fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Member => 1,
            Role::Viewer => 0,
        }
    }

    /// True when this role is `other` or more powerful.
    pub fn at_least(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }

    /// What the role may do in every project of its organisation.
    pub fn permissions(self) -> &'static [Permission] {
        match self {
            Role::Viewer => &[Permission::QueryRead],
            Role::Member => &[Permission::QueryRead, Permission::InsightsWrite],
            Role::Admin | Role::Owner => {
                &[Permission::QueryRead, Permission::InsightsWrite, Permission::PersonsDelete, Permission::EventsWrite]
            }
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; expected owner, admin, member or viewer"))
    }
}

/// Something a principal may do in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// Run queries and read insights and dashboards.
    #[serde(rename = "query:read")]
    QueryRead,
    /// Create, change and delete insights and dashboards.
    #[serde(rename = "insights:write")]
    InsightsWrite,
    /// Delete persons with all their events (deletion on request); owners and admins.
    #[serde(rename = "persons:delete")]
    PersonsDelete,
    /// Update and delete stored events (`PUT`/`DELETE …/events/{uuid}`); owners and admins.
    #[serde(rename = "events:write")]
    EventsWrite,
}

impl Permission {
    pub const ALL: [Permission; 4] =
        [Permission::QueryRead, Permission::InsightsWrite, Permission::PersonsDelete, Permission::EventsWrite];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::QueryRead => "query:read",
            Permission::InsightsWrite => "insights:write",
            Permission::PersonsDelete => "persons:delete",
            Permission::EventsWrite => "events:write",
        }
    }
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            format!("unknown scope {s:?}; expected query:read, insights:write, persons:delete or events:write")
        })
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// An access token of a login session.
    Session,
    /// A personal API key (`phx_…`).
    PersonalKey,
}

/// One project a principal may act in, and what it may do there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectGrant {
    pub id: i64,
    pub organization_id: i64,
    /// The user's role in the project's organisation.
    pub role: Role,
    /// For a session, the role's permissions; for a personal key, those ∩ the key's scopes.
    pub permissions: Vec<Permission>,
}

/// Who is calling, as `POST /internal/v1/authenticate` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    pub user_id: i64,
    pub kind: PrincipalKind,
    /// The session of an access token.
    pub session_id: Option<uuid::Uuid>,
    /// The id of a personal key.
    pub key_id: Option<i64>,
    /// Every project the principal may act in; a project not listed is not visible to it.
    pub projects: Vec<ProjectGrant>,
}

impl Principal {
    /// True when the principal holds `permission` in project `project_id`.
    pub fn can(&self, project_id: i64, permission: Permission) -> bool {
        self.project(project_id).is_some_and(|p| p.permissions.contains(&permission))
    }

    /// The principal's grant in project `id`, if it has one.
    pub fn project(&self, id: i64) -> Option<&ProjectGrant> {
        self.projects.iter().find(|p| p.id == id)
    }
}

/// A write key's project, as `POST /internal/v1/write-keys/resolve` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedWriteKey {
    pub project_id: i64,
    pub key_id: i64,
}

/// What a revocation names (`credential_revocations.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// A write key (its id) was revoked or deleted.
    WriteKey,
    /// A project (its id) was deleted: its write keys, and every grant in it.
    Project,
    /// A personal key (its id) was revoked, changed or deleted.
    PersonalKey,
    /// A login session (its uuid) was revoked or deleted.
    Session,
    /// A user's (their id) rights changed, or the user is gone.
    User,
}

impl std::str::FromStr for RevocationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown revocation kind {s:?}"))
    }
}

/// One row of the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub seq: i64,
    pub kind: RevocationKind,
    /// The id (or session uuid) it names, as text.
    pub subject: String,
}

/// An answer of `POST /internal/v1/revocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationFeed {
    /// Where to continue from (`since` of the next call).
    pub cursor: u64,
    /// The rows written at or after the previous cursor (their seqs are `have` of the next call).
    pub revocations: Vec<Revocation>,
    /// Too much changed to list: drop every cached answer.
    pub reset: bool,
}

/// How long the auth service keeps revocations; a follower whose last answer is older (half of
/// it, for margin) drops its caches and starts again from the head.
pub const REVOCATIONS_KEPT_FOR: Duration = Duration::from_secs(86_400);

/// How long a poll of the revocation feed is held by the auth service when nothing happens.
const FEED_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Error)]
pub enum AuthClientError {
    #[error("the auth service is unavailable: {0}")]
    Unavailable(String),
    #[error("the auth service answered {status}: {body}")]
    Unexpected { status: u16, body: String },
}

/// The `error` code with which the auth service refuses a missing or wrong internal token (a 401
/// that, unlike `unauthorized`, is about the caller's configuration, not the credential).
pub const INTERNAL_UNAUTHORIZED: &str = "internal_unauthorized";

/// The longest `cache_ttl` accepted: a revoked credential must stop working within a minute.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(60);

/// How a service reaches the auth service (`Debug` never shows the internal token).
#[derive(Debug, Clone)]
pub struct AuthClientConfig {
    /// `CAIRN_AUTH_URL`: the auth service's base URL (default `http://127.0.0.1:18002`).
    pub url: String,
    /// `CAIRN_INTERNAL_TOKEN`: sent as `Authorization: Bearer` to the internal endpoints.
    pub internal_token: Option<SecretString>,
    /// `CAIRN_AUTH_CACHE_TTL_SECS`: how long a positive answer is trusted (default 30, at most 60).
    pub cache_ttl: Duration,
    /// How long "unknown credential" is remembered (5 s).
    pub negative_ttl: Duration,
    /// How long after it was fetched a positive answer is still served while the auth service
    /// cannot be reached (10 minutes).
    pub stale_for: Duration,
    /// Most credentials kept in each cache (`CAIRN_AUTH_CACHE_SIZE`, default 100 000).
    pub max_entries: usize,
    /// Timeout of one call to the auth service (2 s).
    pub timeout: Duration,
}

impl AuthClientConfig {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        let cache_ttl = AUTH_CACHE_TTL_SECS.secs(env)?;
        if cache_ttl > MAX_CACHE_TTL {
            return Err(AUTH_CACHE_TTL_SECS.invalid(
                &cache_ttl.as_secs().to_string(),
                "at most 60: a revoked key or session must stop working within a minute",
            ));
        }
        Ok(Self {
            url: AUTH_URL.string(env),
            internal_token: INTERNAL_TOKEN.secret_value(env),
            cache_ttl,
            negative_ttl: Duration::from_secs(5),
            stale_for: Duration::from_secs(600),
            max_entries: AUTH_CACHE_SIZE.parse(env)?,
            timeout: Duration::from_secs(2),
        })
    }
}

/// A client of the auth service's internal API, with caches. Cheap to clone.
#[derive(Clone)]
pub struct AuthClient {
    http: reqwest::Client,
    base: String,
    internal_token: Option<SecretString>,
    principals: Arc<Cache<Principal>>,
    write_keys: Arc<Cache<ResolvedWriteKey>>,
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClient").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct AuthenticateRequest<'a> {
    credential: &'a str,
}

#[derive(Serialize)]
struct ResolveRequest<'a> {
    key: &'a str,
}

impl AuthClient {
    pub fn new(cfg: AuthClientConfig) -> Result<Self, AuthClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.timeout.min(Duration::from_secs(1)))
            .timeout(cfg.timeout)
            // No idle connections kept: answers are cached, so calls are few, and a connection
            // made before the auth service was up (a Service without endpoints yet, found
            // answering 404 on a fresh cluster) must not serve the calls after it.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| AuthClientError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        let policy = CachePolicy {
            ttl: cfg.cache_ttl.min(MAX_CACHE_TTL),
            negative_ttl: cfg.negative_ttl.min(MAX_CACHE_TTL),
            stale_for: cfg.stale_for,
            max_entries: cfg.max_entries.max(1),
        };
        Ok(Self {
            http,
            base: cfg.url.trim_end_matches('/').to_string(),
            internal_token: cfg.internal_token,
            principals: Arc::new(Cache::new(policy)),
            write_keys: Arc::new(Cache::new(policy)),
        })
    }

    /// Follows the auth service's revocation feed until `stop`, dropping the cached answers each
    /// revocation names. Run it once per client (capture and query spawn it at start).
    pub async fn follow_revocations(&self, stop: tokio_util::sync::CancellationToken) {
        // The cursor and the seqs of the last answer; None before the first.
        let mut position: Option<(u64, Vec<i64>)> = None;
        let mut last_answer = Instant::now();
        let mut backoff = cairn_common::retry::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut failing = false;
        loop {
            if position.is_some() && last_answer.elapsed() > REVOCATIONS_KEPT_FOR / 2 {
                tracing::warn!("the revocation feed was out of reach for too long; dropping every cached credential");
                self.forget_all();
                position = None;
            }
            let answer = tokio::select! {
                _ = stop.cancelled() => return,
                a = self.poll_revocations(position.as_ref()) => a,
            };
            match answer {
                Ok(feed) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("the revocation feed is reachable again");
                    }
                    backoff.reset();
                    last_answer = Instant::now();
                    if position.is_none() || feed.reset {
                        // Anything cached before the first answer (or past a gap) may be revoked.
                        self.forget_all();
                    }
                    for r in &feed.revocations {
                        self.apply(r).await;
                    }
                    if !feed.revocations.is_empty() {
                        tracing::debug!(revocations = feed.revocations.len(), "applied revocations");
                    }
                    position = Some((feed.cursor, feed.revocations.iter().map(|r| r.seq).collect()));
                    if feed.reset {
                        // Over a thousand rows are not yet behind the cursor (a mass revocation
                        // while an older transaction runs): every poll would reset again at once.
                        tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "cannot follow the revocation feed; cached credentials now expire by their TTL only");
                    }
                    if !backoff.wait(&stop).await {
                        return;
                    }
                }
            }
        }
    }

    async fn poll_revocations(&self, position: Option<&(u64, Vec<i64>)>) -> Result<RevocationFeed, AuthClientError> {
        let body = match position {
            None => serde_json::json!({}),
            Some((since, have)) => {
                serde_json::json!({"since": since, "have": have, "wait_ms": FEED_WAIT.as_millis() as u64})
            }
        };
        let url = format!("{}/internal/v1/revocations", self.base);
        let mut req = self.http.post(url).json(&body).timeout(FEED_WAIT + Duration::from_secs(10));
        if let Some(token) = &self.internal_token {
            req = req.bearer_auth(token.expose_secret());
        }
        let resp = req.send().await.map_err(|e| AuthClientError::Unavailable(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let mut body = resp.text().await.unwrap_or_default();
            body.truncate(512);
            return Err(AuthClientError::Unexpected { status, body });
        }
        resp.json::<RevocationFeed>()
            .await
            .map_err(|e| AuthClientError::Unexpected { status, body: format!("undecodable answer: {e}") })
    }

    /// Drops the cached answers `r` names.
    async fn apply(&self, r: &Revocation) {
        let id = r.subject.parse::<i64>().ok();
        match r.kind {
            RevocationKind::WriteKey => self.write_keys.forget(|k| Some(k.key_id) == id).await,
            RevocationKind::Project => {
                self.write_keys.forget(|k| Some(k.project_id) == id).await;
                self.principals.forget(|p| p.projects.iter().any(|g| Some(g.id) == id)).await;
            }
            RevocationKind::PersonalKey => self.principals.forget(|p| p.key_id.is_some() && p.key_id == id).await,
            RevocationKind::Session => {
                let sid = r.subject.parse::<uuid::Uuid>().ok();
                self.principals.forget(|p| p.session_id.is_some() && p.session_id == sid).await
            }
            RevocationKind::User => self.principals.forget(|p| Some(p.user_id) == id).await,
        }
    }

    fn forget_all(&self) {
        self.write_keys.forget_all();
        self.principals.forget_all();
    }

    /// Who `credential` (an access token or a personal key) is: `Ok(None)` when it is invalid,
    /// expired or revoked.
    #[tracing::instrument(name = "auth.authenticate", skip_all)]
    pub async fn authenticate(&self, credential: &str) -> Result<Option<Principal>, AuthClientError> {
        let digest = digest(credential);
        let hard_expiry = token_expiry(credential);
        let body = AuthenticateRequest { credential };
        cached(&self.principals, digest, Instant::now(), hard_expiry, || {
            self.call("/internal/v1/authenticate", &body, 401, "unauthorized")
        })
        .await
    }

    /// The project of a write key: `Ok(None)` when it is unknown or revoked.
    #[tracing::instrument(name = "auth.resolve_write_key", skip_all)]
    pub async fn resolve_write_key(&self, key: &str) -> Result<Option<ResolvedWriteKey>, AuthClientError> {
        let digest = digest(key);
        let body = ResolveRequest { key };
        cached(&self.write_keys, digest, Instant::now(), None, || {
            self.call("/internal/v1/write-keys/resolve", &body, 404, "not_found")
        })
        .await
    }

    /// POSTs `body`; 200 → `Some`, `absent_status` → `None`, anything else is an error.
    async fn call<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        absent_status: u16,
        absent_code: &str,
    ) -> Result<Option<T>, AuthClientError> {
        let mut req = self.http.post(format!("{}{}", self.base, path)).json(body);
        if let Some(token) = &self.internal_token {
            req = req.bearer_auth(token.expose_secret());
        }
        let resp = req.send().await.map_err(|e| AuthClientError::Unavailable(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        if status == 200 {
            return resp
                .json::<T>()
                .await
                .map(Some)
                .map_err(|e| AuthClientError::Unexpected { status, body: format!("undecodable answer: {e}") });
        }
        let mut body = resp.text().await.unwrap_or_default();
        body.truncate(512);
        // "Unknown credential" only when the auth service says so: a 404 or 401 from anything
        // else (a proxy, a server reached by a mistaken name) is an error, not a refusal that
        // would make capture answer 401 to every event.
        if status == absent_status && error_code(&body).as_deref() == Some(absent_code) {
            return Ok(None);
        }
        if status >= 500 {
            return Err(AuthClientError::Unavailable(format!("{status}: {body}")));
        }
        Err(AuthClientError::Unexpected { status, body })
    }
}

/// The `error` code of an auth service's answer (`not_found`, `unauthorized`, or
/// [`INTERNAL_UNAUTHORIZED`] when CAIRN_INTERNAL_TOKEN differs between the services), if the body
/// is one.
fn error_code(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body).ok()?.get("error")?.as_str().map(str::to_string)
}

type Digest32 = [u8; 32];

fn digest(credential: &str) -> Digest32 {
    Sha256::digest(credential.as_bytes()).into()
}

/// When a JWT access token expires (its unverified `exp` claim), so a cached principal never
/// outlives its token. `None` for anything that is not a JWT carrying `exp`.
fn token_expiry(credential: &str) -> Option<SystemTime> {
    let mut parts = credential.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(exp))
}

#[derive(Debug, Clone, Copy)]
struct CachePolicy {
    ttl: Duration,
    negative_ttl: Duration,
    stale_for: Duration,
    max_entries: usize,
}

/// After a failed call, how long callers of the same credential get the stale answer (or the
/// error) without asking again: a queue of requests does not wait out one timeout each, and a
/// struggling auth service is not hammered.
const FAILURE_HOLD: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Entry<V> {
    /// The last answer the auth service gave (`Some(None)`: an unknown credential), if any.
    answer: Option<Option<V>>,
    /// Trusted without asking until then.
    fresh_until: Instant,
    /// A positive answer is served while the auth service is unreachable until then.
    stale_until: Instant,
    /// The last call failed: until the instant, callers get the stale answer or this error.
    failed: Option<(Instant, AuthClientError)>,
}

impl<V: Clone> Entry<V> {
    fn answered(value: Option<V>, now: Instant, hard_expiry: Option<Instant>, policy: &CachePolicy) -> Self {
        let (ttl, stale) = match value {
            Some(_) => (policy.ttl, policy.stale_for.max(policy.ttl)),
            None => (policy.negative_ttl, policy.negative_ttl),
        };
        let cap = |t: Instant| hard_expiry.map_or(t, |h| t.min(h));
        Entry { answer: Some(value), fresh_until: cap(now + ttl), stale_until: cap(now + stale), failed: None }
    }

    fn failed(previous: Option<Entry<V>>, now: Instant, error: AuthClientError) -> Self {
        let mut e = previous.unwrap_or(Entry { answer: None, fresh_until: now, stale_until: now, failed: None });
        e.failed = Some((now + FAILURE_HOLD, error));
        e
    }

    /// What a caller gets at `now` without asking: a fresh answer, or within a failure hold the
    /// stale answer or the error. `None`: ask.
    fn settled(&self, now: Instant) -> Option<Result<Option<V>, AuthClientError>> {
        if let (true, Some(answer)) = (now < self.fresh_until, &self.answer) {
            return Some(Ok(answer.clone()));
        }
        match &self.failed {
            Some((until, error)) if now < *until => Some(self.stale_or(now, error)),
            _ => None,
        }
    }

    fn stale_or(&self, now: Instant, error: &AuthClientError) -> Result<Option<V>, AuthClientError> {
        match &self.answer {
            Some(Some(v)) if now < self.stale_until => {
                tracing::warn!(error = %error, "auth service unreachable; serving a cached answer");
                Ok(Some(v.clone()))
            }
            _ => Err(error.clone()),
        }
    }
}

/// A bounded map from credential digest to answer: moka's, whose TinyLFU admission keeps the
/// credentials in use when a flood of unknown ones passes through.
struct Cache<V> {
    policy: CachePolicy,
    entries: moka::future::Cache<Digest32, Entry<V>>,
    /// Bumped before each revocation is applied: an answer fetched across a bump may predate it,
    /// and is used once, not kept.
    generation: AtomicU64,
}

impl<V: Clone + Send + Sync + 'static> Cache<V> {
    fn new(policy: CachePolicy) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(policy.max_entries.max(1) as u64)
            // Nothing is usable after its stale limit: let moka drop it.
            .time_to_live(policy.stale_for.max(policy.ttl).max(policy.negative_ttl) + FAILURE_HOLD)
            .build();
        Self { policy, entries, generation: AtomicU64::new(0) }
    }

    /// Drops every entry whose answer matches `revoked` (unknown-credential answers stay).
    async fn forget(&self, revoked: impl Fn(&V) -> bool) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let doomed: Vec<Arc<Digest32>> = self
            .entries
            .iter()
            .filter(|(_, entry)| matches!(&entry.answer, Some(Some(v)) if revoked(v)))
            .map(|(key, _)| key)
            .collect();
        for key in doomed {
            self.entries.invalidate(&*key).await;
        }
    }

    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
    }
}

/// The answer for `key`: from the cache while fresh, else from `fetch`. Concurrent callers of one
/// credential are merged: one calls the auth service, the others wait for its answer. When the
/// call fails, a positive answer younger than `stale_for` is served instead of the error.
/// `hard_expiry` (a token's own expiry) caps how long an answer may be used at all.
async fn cached<V, F, Fut>(
    cache: &Cache<V>,
    key: Digest32,
    now: Instant,
    hard_expiry: Option<SystemTime>,
    fetch: F,
) -> Result<Option<V>, AuthClientError>
where
    V: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<V>, AuthClientError>>,
{
    let hard_expiry = hard_expiry.map(|at| match at.duration_since(SystemTime::now()) {
        Ok(left) => now + left,
        Err(_) => now,
    });
    if hard_expiry.is_some_and(|h| now >= h) {
        // An expired access token: no need to ask.
        return Ok(None);
    }
    if let Some(settled) = cache.entries.get(&key).await.and_then(|e| e.settled(now)) {
        return settled;
    }
    let policy = cache.policy;
    // The generation before the call, when this caller made one (u64::MAX: it did not).
    let fetched_at_generation = AtomicU64::new(u64::MAX);
    let fetched_at = &fetched_at_generation;
    // One call per credential at a time (moka runs computations on one key one after another):
    // a caller that queued behind it finds the answer and does not ask again.
    let outcome = cache
        .entries
        .entry(key)
        .and_compute_with(|current| async move {
            let current = current.map(moka::Entry::into_value);
            if current.as_ref().is_some_and(|e| e.settled(now).is_some()) {
                return moka::ops::compute::Op::Nop;
            }
            fetched_at.store(cache.generation.load(Ordering::SeqCst), Ordering::SeqCst);
            match fetch().await {
                Ok(v) => moka::ops::compute::Op::Put(Entry::answered(v, now, hard_expiry, &policy)),
                Err(e) => moka::ops::compute::Op::Put(Entry::failed(current, now, e)),
            }
        })
        .await;
    use moka::ops::compute::CompResult;
    let entry = match outcome {
        CompResult::Inserted(e) | CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => e.into_value(),
        CompResult::StillNone(_) | CompResult::Removed(_) => {
            return Err(AuthClientError::Unavailable("the credential cache lost its answer".into()))
        }
    };
    let before = fetched_at_generation.load(Ordering::SeqCst);
    if before != u64::MAX && before != cache.generation.load(Ordering::SeqCst) {
        // A revocation was applied while the auth service answered: the answer may predate it.
        // Checked after the insert, so that a revocation applied in between cannot miss it.
        cache.entries.invalidate(&key).await;
    }
    entry.settled(now).unwrap_or_else(|| Err(AuthClientError::Unavailable("no answer from the auth service".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CachePolicy {
        CachePolicy {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            stale_for: Duration::from_secs(600),
            max_entries: 100,
        }
    }

    fn key(n: u8) -> Digest32 {
        [n; 32]
    }

    async fn get(
        cache: &Cache<i64>,
        k: Digest32,
        now: Instant,
        answer: Result<Option<i64>, ()>,
    ) -> (Result<Option<i64>, AuthClientError>, bool) {
        let called = std::cell::Cell::new(false);
        let r = cached(cache, k, now, None, || {
            called.set(true);
            async move { answer.map_err(|_| AuthClientError::Unavailable("down".into())) }
        })
        .await;
        (r, called.get())
    }

    #[tokio::test]
    async fn a_revocation_drops_only_the_answers_it_names() {
        let c = Cache::new(policy());
        let now = Instant::now();
        for (k, answer) in [(1, Some(1)), (2, Some(2)), (3, None)] {
            assert!(get(&c, key(k), now, Ok(answer)).await.1);
        }
        c.forget(|v| *v == 1).await;
        assert!(get(&c, key(1), now, Ok(None)).await.1, "the revoked answer is asked again");
        assert!(!get(&c, key(2), now, Ok(Some(2))).await.1, "another is kept");
        assert!(!get(&c, key(3), now, Ok(None)).await.1, "an unknown credential stays unknown");
        c.forget_all();
        assert!(get(&c, key(2), now, Ok(Some(2))).await.1, "all dropped");
    }

    #[tokio::test]
    async fn an_answer_fetched_across_a_revocation_is_used_once_not_kept() {
        let c = Cache::new(policy());
        let now = Instant::now();
        let r = cached(&c, key(1), now, None, || async {
            // A revocation is applied while the auth service answers.
            c.forget(|_: &i64| false).await;
            Ok(Some(7))
        })
        .await;
        assert_eq!(r.ok(), Some(Some(7)), "the caller gets the answer");
        assert!(get(&c, key(1), now, Ok(Some(7))).await.1, "the next caller asks again");
        assert!(!get(&c, key(1), now, Ok(Some(7))).await.1, "an undisturbed answer is kept");
    }

    #[test]
    fn revocation_kinds_read_as_the_database_writes_them() {
        for (text, kind) in [
            ("write_key", RevocationKind::WriteKey),
            ("project", RevocationKind::Project),
            ("personal_key", RevocationKind::PersonalKey),
            ("session", RevocationKind::Session),
            ("user", RevocationKind::User),
        ] {
            assert_eq!(text.parse::<RevocationKind>(), Ok(kind));
        }
        assert!("organization".parse::<RevocationKind>().is_err());
    }

    #[tokio::test]
    async fn positive_answers_are_cached_until_the_ttl() {
        let c = Cache::new(policy());
        let t0 = Instant::now();
        assert_eq!(get(&c, key(1), t0, Ok(Some(7))).await.0.unwrap(), Some(7));
        let (r, called) = get(&c, key(1), t0 + Duration::from_secs(29), Ok(Some(8))).await;
        assert_eq!((r.unwrap(), called), (Some(7), false));
        let (r, called) = get(&c, key(1), t0 + Duration::from_secs(31), Ok(Some(8))).await;
        assert_eq!((r.unwrap(), called), (Some(8), true), "expired: asked again");
        // Revoked: the next fetch after the TTL says None, and None is what callers get.
        let (r, _) = get(&c, key(1), t0 + Duration::from_secs(62), Ok(None)).await;
        assert_eq!(r.unwrap(), None);
    }

    #[tokio::test]
    async fn negative_answers_are_cached_briefly() {
        let c = Cache::new(policy());
        let t0 = Instant::now();
        assert_eq!(get(&c, key(2), t0, Ok(None)).await.0.unwrap(), None);
        let (r, called) = get(&c, key(2), t0 + Duration::from_secs(4), Ok(Some(1))).await;
        assert_eq!((r.unwrap(), called), (None, false));
        let (r, called) = get(&c, key(2), t0 + Duration::from_secs(6), Ok(Some(1))).await;
        assert_eq!((r.unwrap(), called), (Some(1), true));
    }

    #[tokio::test]
    async fn stale_positive_answers_are_served_while_auth_is_down() {
        let c = Cache::new(policy());
        let t0 = Instant::now();
        get(&c, key(3), t0, Ok(Some(9))).await.0.unwrap();
        let (r, called) = get(&c, key(3), t0 + Duration::from_secs(300), Err(())).await;
        assert_eq!((r.unwrap(), called), (Some(9), true));
        let (r, _) = get(&c, key(3), t0 + Duration::from_secs(601), Err(())).await;
        assert!(matches!(r, Err(AuthClientError::Unavailable(_))), "too old to serve");
        // Nothing cached at all: the error.
        assert!(get(&c, key(4), t0, Err(())).await.0.is_err());
        // A negative answer is not served stale.
        get(&c, key(5), t0, Ok(None)).await.0.unwrap();
        assert!(get(&c, key(5), t0 + Duration::from_secs(6), Err(())).await.0.is_err());
    }

    #[tokio::test]
    async fn expired_tokens_are_not_served_from_the_cache() {
        let c = Cache::new(policy());
        let t0 = Instant::now();
        // Expired already: not even asked.
        let past = SystemTime::now() - Duration::from_secs(1);
        let r = cached(&c, key(6), t0, Some(past), || async { Ok(Some(1)) }).await.unwrap();
        assert_eq!(r, None);
        // Cached for at most the token's remaining 10 s, and not served stale past that.
        let exp = SystemTime::now() + Duration::from_secs(10);
        let r = cached(&c, key(7), t0, Some(exp), || async { Ok(Some(1)) }).await.unwrap();
        assert_eq!(r, Some(1));
        let r = cached(&c, key(7), t0 + Duration::from_secs(12), None, || async {
            Err(AuthClientError::Unavailable("down".into()))
        })
        .await;
        assert!(r.is_err(), "{r:?}");
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let c = Cache::new(CachePolicy { max_entries: 10, ..policy() });
        let t0 = Instant::now();
        for n in 0..50u8 {
            get(&c, key(n), t0, Ok(Some(i64::from(n)))).await.0.unwrap();
        }
        c.entries.run_pending_tasks().await;
        assert!(c.entries.entry_count() <= 10, "{}", c.entries.entry_count());
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_credential_ask_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let c = Cache::new(policy());
        let t0 = Instant::now();
        let calls = AtomicUsize::new(0);
        let lookups = (0..20).map(|_| {
            cached(&c, key(9), t0, None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Some(42))
            })
        });
        let answers = futures::future::join_all(lookups).await;
        assert!(answers.iter().all(|a| matches!(a, Ok(Some(42)))), "{answers:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "twenty concurrent misses, one call");
        // An outage: callers within the hold get the stale answer without a call each.
        let later = t0 + Duration::from_secs(31);
        let failing = (0..5).map(|_| {
            cached(&c, key(9), later, None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(AuthClientError::Unavailable("down".into()))
            })
        });
        let answers = futures::future::join_all(failing).await;
        assert!(answers.iter().all(|a| matches!(a, Ok(Some(42)))), "{answers:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one failed call, the others held");
    }

    /// A server that answers every request with `status` and `body`, and its URL.
    async fn answering(status: u16, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = conn.read(&mut buf).await;
                let head =
                    format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(format!("{head}{body}").as_bytes()).await;
            }
        });
        url
    }

    fn client(url: String) -> AuthClient {
        AuthClient::new(AuthClientConfig {
            url,
            internal_token: None,
            cache_ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            stale_for: Duration::from_secs(600),
            max_entries: 10,
            timeout: Duration::from_secs(2),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn only_the_auth_service_s_own_refusal_means_an_unknown_credential() {
        let unknown = client(answering(404, r#"{"error":"not_found","message":"no such write key"}"#).await);
        assert_eq!(unknown.resolve_write_key("phc_a").await.unwrap(), None);
        let refused = client(answering(401, r#"{"error":"unauthorized","message":"x"}"#).await);
        assert_eq!(refused.authenticate("phx_a").await.unwrap(), None);
        // Something else answering (a proxy, a server reached by a mistaken name), or auth
        // refusing the internal token: errors, not "this key is invalid".
        for (status, body) in
            [(404, ""), (404, "<html>not found</html>"), (401, r#"{"error":"internal_unauthorized"}"#)]
        {
            let c = client(answering(status, body).await);
            assert!(c.resolve_write_key("phc_b").await.is_err(), "{status} {body:?}");
            assert!(c.authenticate("phx_b").await.is_err(), "{status} {body:?}");
        }
    }

    #[test]
    fn reads_the_expiry_of_a_jwt_only() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(r#"{"sub":"1","exp":2000000000}"#));
        assert_eq!(token_expiry(&jwt), UNIX_EPOCH.checked_add(Duration::from_secs(2_000_000_000)));
        assert_eq!(token_expiry("phx_abcdef"), None);
        assert_eq!(token_expiry("a.b.c.d"), None);
        assert_eq!(token_expiry("a.!!.c"), None);
    }

    #[test]
    fn principals_check_permissions_per_project() {
        let p = Principal {
            user_id: 1,
            kind: PrincipalKind::Session,
            session_id: None,
            key_id: None,
            projects: vec![ProjectGrant {
                id: 7,
                organization_id: 2,
                role: Role::Viewer,
                permissions: Role::Viewer.permissions().to_vec(),
            }],
        };
        assert!(p.can(7, Permission::QueryRead));
        assert!(!p.can(7, Permission::InsightsWrite));
        assert!(!p.can(8, Permission::QueryRead));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["kind"], "session");
        assert_eq!(json["projects"][0]["role"], "viewer");
        assert_eq!(json["projects"][0]["permissions"][0], "query:read");
        assert_eq!(serde_json::from_value::<Principal>(json).unwrap(), p);
    }

    #[test]
    fn roles_rank_and_parse() {
        assert!(Role::Owner.at_least(Role::Admin));
        assert!(!Role::Member.at_least(Role::Admin));
        assert_eq!("viewer".parse::<Role>().unwrap(), Role::Viewer);
        assert!("root".parse::<Role>().is_err());
        assert_eq!(Role::Member.permissions(), &[Permission::QueryRead, Permission::InsightsWrite]);
        assert_eq!("insights:write".parse::<Permission>().unwrap(), Permission::InsightsWrite);
    }

    #[test]
    fn the_cache_ttl_is_capped_at_a_minute() {
        let env = |ttl: &str| -> std::collections::BTreeMap<&'static str, String> {
            [("CAIRN_AUTH_CACHE_TTL_SECS", ttl.to_string()), ("CAIRN_INTERNAL_TOKEN", "s3cret-internal".to_string())]
                .into_iter()
                .collect()
        };
        assert!(AuthClientConfig::from_source(&env("61")).is_err());
        let cfg = AuthClientConfig::from_source(&env("60")).unwrap();
        assert_eq!(cfg.cache_ttl, Duration::from_secs(60));
        assert_eq!(cfg.internal_token.as_ref().map(|t| t.expose_secret()), Some("s3cret-internal"));
        assert!(!format!("{cfg:?}").contains("s3cret"), "no secrets in Debug");
    }
}
