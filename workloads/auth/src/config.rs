//! The auth service's configuration (environment variables; defaults work against `make up`).

use std::net::SocketAddr;
use std::time::Duration;

use cairn_common::config::{env_addr, env_opt, env_parse, ConfigError};
use cairn_common::postgres::PostgresConfig;
use cairn_common::server::{admin_addr_from_env, ServerLimits, TrustedProxies};

/// The shortest accepted `CAIRN_AUTH_TOKEN_SECRET`, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Clone)]
pub struct AuthConfig {
    /// `CAIRN_AUTH_ADDR`: where to listen (default `127.0.0.1:18002`).
    pub addr: SocketAddr,
    pub postgres: PostgresConfig,
    /// `CAIRN_AUTH_TOKEN_SECRET`: the HMAC key of access tokens. Unset: a random key per process
    /// (tokens do not survive a restart and do not work across replicas).
    pub token_secret: Option<Vec<u8>>,
    /// `CAIRN_AUTH_ACCESS_TTL_SECS`: lifetime of an access token (default 900).
    pub access_ttl: Duration,
    /// `CAIRN_AUTH_REFRESH_TTL_SECS`: lifetime of a session without refresh (default 30 days).
    pub refresh_ttl: Duration,
    /// `CAIRN_AUTH_SESSION_MAX_AGE_SECS`: a session ends this long after sign-in, however often
    /// it is refreshed (default 90 days).
    pub session_max_age: Duration,
    /// `CAIRN_AUTH_INVITATION_TTL_SECS`: how long an invitation can be accepted (default 7 days).
    pub invitation_ttl: Duration,
    /// `CAIRN_INTERNAL_TOKEN`: required as `Authorization: Bearer` on `/internal/*` when set.
    pub internal_token: Option<String>,
    /// `CAIRN_AUTH_LOGIN_PER_EMAIL_PER_MINUTE`: login attempts per email (default 5; 0: no limit).
    pub login_per_email_per_minute: u32,
    /// `CAIRN_AUTH_LOGIN_PER_IP_PER_MINUTE`: login and signup attempts per client address
    /// (default 30; 0: no limit).
    pub login_per_ip_per_minute: u32,
    /// `CAIRN_TRUSTED_PROXIES`: whose `X-Forwarded-For` is believed (the Ingress controller, the
    /// query gateway); the client is its rightmost untrusted entry (see `cairn_common::server`).
    pub trusted_proxies: TrustedProxies,
    /// `CAIRN_AUTH_HASH_CONCURRENCY`: password hashes computed at once (argon2 takes 19 MiB and a
    /// core's worth of time each; default 4). Beyond it a login or signup waits up to a second,
    /// then gets 503 with Retry-After.
    pub hash_concurrency: usize,
    /// `CAIRN_HTTP_*`: the listener's limits.
    pub server: ServerLimits,
    /// `CAIRN_ADMIN_ADDR`: serve `/metrics`, `/healthz` and `/readyz` there instead of on `addr`.
    pub admin_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for AuthConfig {
    // Secrets are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("addr", &self.addr)
            .field("postgres", &self.postgres)
            .field("token_secret", &self.token_secret.as_ref().map(|_| "***"))
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("session_max_age", &self.session_max_age)
            .field("invitation_ttl", &self.invitation_ttl)
            .field("internal_token", &self.internal_token.as_ref().map(|_| "***"))
            .field("login_per_email_per_minute", &self.login_per_email_per_minute)
            .field("login_per_ip_per_minute", &self.login_per_ip_per_minute)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("server", &self.server)
            .field("admin_addr", &self.admin_addr)
            .finish()
    }
}

impl AuthConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let token_secret = env_opt("CAIRN_AUTH_TOKEN_SECRET").map(String::into_bytes);
        if let Some(secret) = &token_secret {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(ConfigError::Invalid {
                    name: "CAIRN_AUTH_TOKEN_SECRET".into(),
                    value: "***".into(),
                    reason: format!("must be at least {MIN_SECRET_BYTES} bytes (e.g. openssl rand -hex 32)"),
                });
            }
        }
        let access_secs: u64 = env_parse("CAIRN_AUTH_ACCESS_TTL_SECS", 900u64)?;
        let refresh_secs: u64 = env_parse("CAIRN_AUTH_REFRESH_TTL_SECS", 30 * 24 * 3600u64)?;
        for (name, v) in [("CAIRN_AUTH_ACCESS_TTL_SECS", access_secs), ("CAIRN_AUTH_REFRESH_TTL_SECS", refresh_secs)] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    name: name.into(),
                    value: "0".into(),
                    reason: "must be positive".into(),
                });
            }
        }
        Ok(Self {
            addr: env_addr("CAIRN_AUTH_ADDR", "127.0.0.1:18002")?,
            postgres: PostgresConfig::from_env()?,
            token_secret,
            access_ttl: Duration::from_secs(access_secs),
            refresh_ttl: Duration::from_secs(refresh_secs),
            session_max_age: Duration::from_secs(
                env_parse("CAIRN_AUTH_SESSION_MAX_AGE_SECS", 90 * 24 * 3600u64)?.max(1),
            ),
            invitation_ttl: Duration::from_secs(env_parse("CAIRN_AUTH_INVITATION_TTL_SECS", 7 * 24 * 3600u64)?.max(1)),
            internal_token: env_opt("CAIRN_INTERNAL_TOKEN"),
            login_per_email_per_minute: env_parse("CAIRN_AUTH_LOGIN_PER_EMAIL_PER_MINUTE", 5u32)?,
            login_per_ip_per_minute: env_parse("CAIRN_AUTH_LOGIN_PER_IP_PER_MINUTE", 30u32)?,
            trusted_proxies: TrustedProxies::from_env()?,
            hash_concurrency: env_parse("CAIRN_AUTH_HASH_CONCURRENCY", 4usize)?.max(1),
            server: ServerLimits::from_env()?,
            admin_addr: admin_addr_from_env()?,
        })
    }
}
