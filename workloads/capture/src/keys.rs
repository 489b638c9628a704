//! API keys → projects.
//!
//! Capture asks a [`KeyResolver`] which project a write key belongs to. Until the auth service
//! exists, [`StaticKeys`] answers from configuration (`CAIRN_CAPTURE_API_KEYS`); the auth service
//! will back the same trait (with a cache) later.

use std::collections::HashMap;

use async_trait::async_trait;
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
#[error("CAIRN_CAPTURE_API_KEYS entry {entry_index} is not key=project_id with a numeric project id")]
pub struct KeyConfigError {
    pub entry_index: usize,
}

impl StaticKeys {
    pub fn parse(spec: &str) -> Result<Self, KeyConfigError> {
        let mut keys = HashMap::new();
        for (i, entry) in spec.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let (key, project) = entry.split_once('=').ok_or(KeyConfigError { entry_index: i })?;
            let project: ProjectId = project.trim().parse().map_err(|_| KeyConfigError { entry_index: i })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(KeyConfigError { entry_index: i });
            }
            keys.insert(key.to_string(), project);
        }
        Ok(Self { keys })
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

#[cfg(test)]
mod tests {
    use super::*;

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
