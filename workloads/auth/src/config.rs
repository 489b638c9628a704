//! The auth service's configuration (environment variables; defaults work against `make up`).

use std::net::SocketAddr;
use std::time::Duration;

use cairn_common::config::catalogue::*;
use cairn_common::config::{ConfigError, ExposeSecret, ProcessEnv, SecretString, Source};
use cairn_common::server::{admin_addr_from_source, ServerLimits, TrustedProxies};
use cairn_postgres::PostgresConfig;

/// The shortest accepted `CAIRN_AUTH_TOKEN_SECRET`, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// `Debug` never shows the secrets (they are [`SecretString`]s).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `CAIRN_AUTH_ADDR`: where to listen (default `127.0.0.1:18002`).
    pub addr: SocketAddr,
    pub postgres: PostgresConfig,
    /// `CAIRN_AUTH_TOKEN_SECRET`: the HMAC key of access tokens. Unset: a random key per process
    /// (tokens do not survive a restart and do not work across replicas).
    pub token_secret: Option<SecretString>,
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
    pub internal_token: Option<SecretString>,
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

impl AuthConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        let token_secret = AUTH_TOKEN_SECRET.secret_value(env);
        if let Some(secret) = &token_secret {
            if secret.expose_secret().len() < MIN_SECRET_BYTES {
                return Err(AUTH_TOKEN_SECRET
                    .invalid("", format!("must be at least {MIN_SECRET_BYTES} bytes (e.g. openssl rand -hex 32)")));
            }
        }
        let access_ttl = AUTH_ACCESS_TTL_SECS.secs(env)?;
        let refresh_ttl = AUTH_REFRESH_TTL_SECS.secs(env)?;
        for (setting, v) in [(&AUTH_ACCESS_TTL_SECS, access_ttl), (&AUTH_REFRESH_TTL_SECS, refresh_ttl)] {
            if v.is_zero() {
                return Err(setting.invalid("0", "must be positive"));
            }
        }
        Ok(Self {
            addr: AUTH_ADDR.parse(env)?,
            postgres: PostgresConfig::from_source(env)?,
            token_secret,
            access_ttl,
            refresh_ttl,
            session_max_age: AUTH_SESSION_MAX_AGE_SECS.secs(env)?.max(Duration::from_secs(1)),
            invitation_ttl: AUTH_INVITATION_TTL_SECS.secs(env)?.max(Duration::from_secs(1)),
            internal_token: INTERNAL_TOKEN.secret_value(env),
            login_per_email_per_minute: AUTH_LOGIN_PER_EMAIL_PER_MINUTE.parse(env)?,
            login_per_ip_per_minute: AUTH_LOGIN_PER_IP_PER_MINUTE.parse(env)?,
            trusted_proxies: TrustedProxies::from_source(env)?,
            hash_concurrency: AUTH_HASH_CONCURRENCY.parse::<usize>(env)?.max(1),
            server: ServerLimits::from_source(env)?,
            admin_addr: admin_addr_from_source(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_common::config::{read_by_configuration, NoEnv, Recording, Service};

    use super::*;

    #[test]
    fn reads_its_declared_settings_and_no_others() {
        let rec = Recording::new(NoEnv);
        AuthConfig::from_source(&rec).unwrap();
        assert_eq!(rec.read(), read_by_configuration(Service::Auth));
    }

    #[test]
    fn secrets_are_checked_and_never_printed() {
        let env = |secret: &str| -> BTreeMap<&'static str, String> {
            [
                (AUTH_TOKEN_SECRET.name, secret.to_string()),
                (INTERNAL_TOKEN.name, "internal-s3cret".to_string()),
                (POSTGRES_URL.name, "postgres://cairn:pg-s3cret@db/cairn".to_string()),
            ]
            .into_iter()
            .collect()
        };
        let err = AuthConfig::from_source(&env("short-s3cret")).unwrap_err().to_string();
        assert!(err.contains("CAIRN_AUTH_TOKEN_SECRET") && !err.contains("short-s3cret"), "{err}");
        let cfg = AuthConfig::from_source(&env(&"k".repeat(40))).unwrap();
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("kkkk") && !shown.contains("internal-s3cret") && !shown.contains("pg-s3cret"),
            "{shown}"
        );
        let err = AuthConfig::from_source(
            &[(AUTH_ACCESS_TTL_SECS.name, "0".to_string())].into_iter().collect::<BTreeMap<_, _>>(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("CAIRN_AUTH_ACCESS_TTL_SECS"), "{err}");
    }
}
