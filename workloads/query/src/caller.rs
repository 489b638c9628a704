//! Who is asking: every request carries `Authorization: Bearer <access token or personal key>`,
//! which the auth service turns into a [`Principal`] (cached briefly by [`AuthClient`]). Access
//! is per project: a project the caller has no grant for answers 404 (its existence is not
//! revealed), a grant without the needed permission 403.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use cairn_auth_client::{AuthClient, Permission, Principal};
use cairn_common::http::ApiError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The authenticated caller. It holds one of its user's request slots for as long as the request
/// is handled (see [`CallerSlots`]).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal, pub Option<Arc<OwnedSemaphorePermit>>);

/// Anything that can authenticate a credential (the app state).
pub trait HasAuth {
    fn auth(&self) -> &AuthClient;
    /// Per-user request slots, when requests are limited.
    fn slots(&self) -> Option<&CallerSlots> {
        None
    }
}

/// At most `per_caller` requests at once per user (or personal key's user): one caller cannot
/// take all of query's connections to ClickHouse, or all of ClickHouse.
pub struct CallerSlots {
    per_caller: usize,
    slots: Mutex<HashMap<i64, Arc<Semaphore>>>,
}

impl CallerSlots {
    pub fn new(per_caller: usize) -> Self {
        Self { per_caller: per_caller.max(1), slots: Mutex::new(HashMap::new()) }
    }

    /// A slot of `user`, or 429 when all of theirs are taken.
    pub fn take(&self, user: i64) -> Result<OwnedSemaphorePermit, ApiError> {
        let busy = || {
            ApiError::too_many_requests(
                "too many requests of yours are running; wait for one to finish",
                Duration::from_secs(1),
            )
        };
        let semaphore = {
            let mut slots = self.slots.lock().map_err(|_| busy())?;
            if slots.len() > 10_000 {
                // Forget users with nothing running.
                let per_caller = self.per_caller;
                slots.retain(|_, s| s.available_permits() < per_caller);
            }
            slots.entry(user).or_insert_with(|| Arc::new(Semaphore::new(self.per_caller))).clone()
        };
        semaphore.try_acquire_owned().map_err(|_| busy())
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: HasAuth + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("send an access token or personal API key as Authorization: Bearer <credential>")
        })?;
        let credential = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer <credential>"))?;
        match state.auth().authenticate(credential).await {
            Ok(Some(p)) => {
                let slot = match state.slots() {
                    Some(slots) => Some(Arc::new(slots.take(p.user_id)?)),
                    None => None,
                };
                Ok(Caller(p, slot))
            }
            Ok(None) => Err(ApiError::unauthorized("the credential is invalid, expired or revoked")),
            Err(e) => {
                tracing::warn!(error = %e, "cannot authenticate a request");
                Err(ApiError::unavailable("credentials cannot be checked right now; try again shortly"))
            }
        }
    }
}

/// A positive integer id from a path segment; 400 naming `field` otherwise.
pub fn path_id(text: &str, field: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::invalid(field, "expected a positive integer id"))
}

impl Caller {
    /// The project named by the path segment `project_id`, if the caller may use it for
    /// `permission`.
    pub fn project(&self, project_id: &str, permission: Permission) -> Result<u64, ApiError> {
        let project_id = path_id(project_id, "project_id")?;
        let grant = self.0.project(project_id).ok_or_else(|| ApiError::not_found("project"))?;
        if !grant.permissions.contains(&permission) {
            return Err(ApiError::forbidden(format!(
                "this credential lacks the {} permission on this project",
                permission.as_str()
            )));
        }
        u64::try_from(project_id).map_err(|_| ApiError::not_found("project"))
    }

    pub fn user_id(&self) -> i64 {
        self.0.user_id
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[test]
    fn each_user_has_its_own_slots() {
        let slots = CallerSlots::new(2);
        let a1 = slots.take(1).unwrap();
        let _a2 = slots.take(1).unwrap();
        let refused = slots.take(1).unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        assert!(slots.take(2).is_ok(), "another user is not affected");
        drop(a1);
        assert!(slots.take(1).is_ok(), "a finished request frees its slot");
    }
}
