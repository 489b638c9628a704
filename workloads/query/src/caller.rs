//! Who is asking: every request carries `Authorization: Bearer <access token or personal key>`,
//! which the auth service turns into a [`Principal`] (cached briefly by [`AuthClient`]). Access
//! is per project: a project the caller has no grant for answers 404 (its existence is not
//! revealed), a grant without the needed permission 403.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use cairn_common::auth_client::{AuthClient, Permission, Principal};
use cairn_common::http::ApiError;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

/// Anything that can authenticate a credential (the app state).
pub trait HasAuth {
    fn auth(&self) -> &AuthClient;
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
            Ok(Some(p)) => Ok(Caller(p)),
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
