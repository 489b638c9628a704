//! API keys → projects.
//!
//! Capture asks a [`KeyResolver`] which project a write key belongs to. [`StaticKeys`] answers
//! from configuration (`CAIRN_CAPTURE_API_KEYS`, for bootstrapping and development);
//! [`AuthKeys`] asks the auth service (through [`AuthClient`]'s cache, which the revocation feed
//! empties of a key as soon as it is revoked; `CAIRN_AUTH_CACHE_TTL_SECS`, at most 60 s, bounds it
//! while the feed is out of reach); [`LayeredKeys`] tries the static
//! keys first, then the auth service.

use std::collections::HashMap;

use async_trait::async_trait;
use cairn_auth_client::{AuthClient, AuthClientError};
use cairn_common::event::ProjectId;
use thiserror::Error;

/// Why a key could not be looked up (not: the key is unknown, which is `Ok(None)`).
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("the key store is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait KeyResolver: Send + Sync + 'static {
    /// The project of a write key, or `None` when the key is unknown or revoked.
    async fn resolve(&self, key: &str) -> Result<Option<ProjectId>, KeyError>;
}

/// Keys from configuration: `key=project_id` pairs separated by commas.
#[derive(Debug, Default)]
pub struct StaticKeys {
    keys: HashMap<String, ProjectId>,
}

/// A malformed `CAIRN_CAPTURE_API_KEYS` entry.
#[derive(Debug, Error)]
#[error("CAIRN_CAPTURE_API_KEYS entry {entry_index} is not key=project_id with a numeric project id above 0")]
pub struct KeyConfigError {
    pub entry_index: usize,
}

impl StaticKeys {
    pub fn parse(spec: &str) -> Result<Self, KeyConfigError> {
        let mut keys = HashMap::new();
        for (i, entry) in spec.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let (key, project) = entry.split_once('=').ok_or(KeyConfigError { entry_index: i })?;
            let project: ProjectId = project.trim().parse().map_err(|_| KeyConfigError { entry_index: i })?;
            // Project 0 is the operator's heartbeat project: only its own key writes there.
            if project == cairn_common::event::HEARTBEAT_PROJECT_ID {
                return Err(KeyConfigError { entry_index: i });
            }
            let key = key.trim();
            if key.is_empty() {
                return Err(KeyConfigError { entry_index: i });
            }
            keys.insert(key.to_string(), project);
        }
        Ok(Self { keys })
    }

    /// Adds the operator's heartbeat key: its events go to the internal heartbeat project.
    pub fn with_heartbeat(mut self, key: Option<&str>) -> Self {
        if let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) {
            self.keys.insert(key.to_string(), cairn_common::event::HEARTBEAT_PROJECT_ID);
        }
        self
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[async_trait]
impl KeyResolver for StaticKeys {
    async fn resolve(&self, key: &str) -> Result<Option<ProjectId>, KeyError> {
        Ok(self.keys.get(key).copied())
    }
}

/// Write keys resolved by the auth service.
#[derive(Debug, Clone)]
pub struct AuthKeys {
    client: AuthClient,
}

impl AuthKeys {
    pub fn new(client: AuthClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl KeyResolver for AuthKeys {
    async fn resolve(&self, key: &str) -> Result<Option<ProjectId>, KeyError> {
        match self.client.resolve_write_key(key).await {
            // A negative project id would be a bug in auth; treat the key as unknown.
            Ok(found) => Ok(found.and_then(|k| ProjectId::try_from(k.project_id).ok())),
            Err(e @ (AuthClientError::Unavailable(_) | AuthClientError::Unexpected { .. })) => {
                Err(KeyError::Unavailable(e.to_string()))
            }
        }
    }
}

/// Static keys first, then (when configured) the auth service.
pub struct LayeredKeys {
    pub fixed: StaticKeys,
    pub auth: Option<Box<dyn KeyResolver>>,
}

#[async_trait]
impl KeyResolver for LayeredKeys {
    async fn resolve(&self, key: &str) -> Result<Option<ProjectId>, KeyError> {
        if let Some(project) = self.fixed.resolve(key).await? {
            return Ok(Some(project));
        }
        match &self.auth {
            Some(auth) => auth.resolve(key).await,
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_auth_client::AuthClientConfig;
    use std::time::Duration;

    #[tokio::test]
    async fn static_keys_resolve_first_and_auth_unreachable_is_unavailable() {
        // Nothing listens on port 9 of localhost: the auth service is unreachable.
        let client = AuthClient::new(AuthClientConfig {
            url: "http://127.0.0.1:9".into(),
            internal_token: None,
            cache_ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            stale_for: Duration::from_secs(600),
            max_entries: 100,
            timeout: Duration::from_millis(500),
        })
        .unwrap();
        let keys =
            LayeredKeys { fixed: StaticKeys::parse("phc_dev=1").unwrap(), auth: Some(Box::new(AuthKeys::new(client))) };
        assert_eq!(keys.resolve("phc_dev").await.unwrap(), Some(1));
        assert!(matches!(keys.resolve("phc_other").await, Err(KeyError::Unavailable(_))));
        let only_static = LayeredKeys { fixed: StaticKeys::parse("phc_dev=1").unwrap(), auth: None };
        assert_eq!(only_static.resolve("phc_other").await.unwrap(), None);
    }

    #[tokio::test]
    async fn parses_pairs_and_resolves() {
        let k = StaticKeys::parse(" phc_a=1, phc_b = 22 ,").unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.resolve("phc_a").await.unwrap(), Some(1));
        assert_eq!(k.resolve("phc_b").await.unwrap(), Some(22));
        assert_eq!(k.resolve("phc_c").await.unwrap(), None);
        assert!(StaticKeys::parse("phc_a").is_err());
        assert!(StaticKeys::parse("phc_a=x").is_err());
        assert!(StaticKeys::parse("=3").is_err());
        assert!(StaticKeys::parse("").unwrap().is_empty());
    }
}
