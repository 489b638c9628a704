//! Capture's errors and how each is answered: a status code and a JSON body that names the
//! field and the reason, `{"error": code, "message": text, "errors": [{index, field, reason}]}`.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_common::event::FieldError;
use serde_json::json;
use thiserror::Error;

use crate::keys::KeyError;
use crate::payload::PayloadError;
use crate::sink::SinkError;

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("no API key: send it as api_key or token in the body or query, or as Authorization: Bearer")]
    MissingKey,
    #[error("the API key is not valid")]
    UnknownKey,
    #[error("the request carries different API keys (in the Authorization header, the query, the body or the events); send one project's events per request")]
    MixedKeys,
    #[error("the batch is empty")]
    EmptyBatch,
    #[error("{invalid} of {total} events are invalid; none were accepted")]
    Invalid { invalid: usize, total: usize, errors: Vec<FieldError> },
    #[error("rate limit exceeded for this API key")]
    RateLimited(Duration),
    #[error("events were not accepted: {0}")]
    Sink(#[from] SinkError),
    #[error("API keys cannot be checked right now: {0}")]
    Keys(#[from] KeyError),
}

impl CaptureError {
    /// The outcome label for `cairn_capture_events_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Payload(PayloadError::BodyTooLarge { .. } | PayloadError::EventTooLarge { .. }) => "too_large",
            Self::Payload(_) | Self::EmptyBatch | Self::Invalid { .. } | Self::MixedKeys => "invalid",
            Self::MissingKey | Self::UnknownKey => "unauthorized",
            Self::RateLimited(_) => "rate_limited",
            Self::Sink(_) | Self::Keys(_) => "unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Payload(PayloadError::BodyTooLarge { .. } | PayloadError::EventTooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Payload(_) | Self::EmptyBatch | Self::Invalid { .. } | Self::MixedKeys => StatusCode::BAD_REQUEST,
            Self::MissingKey | Self::UnknownKey => StatusCode::UNAUTHORIZED,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Sink(SinkError::Encode(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Sink(_) | Self::Keys(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Payload(PayloadError::BodyTooLarge { .. } | PayloadError::EventTooLarge { .. }) => {
                "payload_too_large"
            }
            Self::Payload(PayloadError::InvalidJson(_) | PayloadError::Empty) => "invalid_json",
            Self::Payload(_) => "invalid_payload",
            Self::MissingKey | Self::UnknownKey => "unauthorized",
            Self::MixedKeys | Self::EmptyBatch => "invalid_payload",
            Self::Invalid { .. } => "invalid_events",
            Self::RateLimited(_) => "rate_limited",
            Self::Sink(_) | Self::Keys(_) => "unavailable",
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid { errors, .. } => errors.clone(),
            Self::Payload(PayloadError::EventTooLarge { index, limit }) => {
                vec![FieldError::new(Some(*index), "", format!("exceeds {limit} bytes"))]
            }
            Self::Payload(PayloadError::InvalidField { field, reason }) => {
                vec![FieldError::new(None, field, reason.clone())]
            }
            Self::Payload(PayloadError::UnsupportedCompression(_)) => {
                vec![FieldError::new(None, "compression", self.to_string())]
            }
            Self::Payload(p) => vec![FieldError::new(None, "body", p.to_string())],
            Self::MissingKey | Self::UnknownKey | Self::MixedKeys => {
                vec![FieldError::new(None, "api_key", self.to_string())]
            }
            Self::EmptyBatch => vec![FieldError::new(None, "batch", "must contain at least one event")],
            _ => Vec::new(),
        }
    }
}

impl IntoResponse for CaptureError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({"error": self.code(), "message": self.to_string(), "errors": self.field_errors()});
        let mut response = (status, Json(body)).into_response();
        let retry_after = match &self {
            Self::RateLimited(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            Self::Sink(SinkError::Encode(_)) => None,
            Self::Sink(_) | Self::Keys(_) => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
