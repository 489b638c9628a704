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
    #[error("too many requests with API keys that are not valid from this address")]
    KeyGuessing(Duration),
    #[error(
        "the request carries {events} events, more than this key may send at once ({burst}); send smaller batches"
    )]
    LargerThanBurst { events: usize, burst: u32 },
    #[error("the request carries different API keys (in the Authorization header, the query, the body or the events); send one project's events per request")]
    MixedKeys,
    #[error("the batch is empty")]
    EmptyBatch,
    #[error(
        "{invalid} of {total} events are invalid ({error_count} errors; the first are listed); none were accepted"
    )]
    Invalid { invalid: usize, total: usize, error_count: usize, errors: Vec<FieldError> },
    #[error("rate limit exceeded for this API key")]
    RateLimited(Duration),
    #[error("events were not accepted: {0}")]
    Sink(#[from] SinkError),
    #[error("API keys cannot be checked right now: {0}")]
    Keys(#[from] KeyError),
    #[error("capture is busy with other large requests; retry shortly")]
    Busy,
}

impl CaptureError {
    /// The outcome label for `cairn_capture_events_total`.
    fn too_large(&self) -> bool {
        match self {
            Self::Payload(p) => p.is_too_large(),
            Self::LargerThanBurst { .. } | Self::Sink(SinkError::TooLarge { .. }) => true,
            _ => false,
        }
    }

    pub fn outcome(&self) -> &'static str {
        if self.too_large() {
            return "too_large";
        }
        match self {
            Self::Payload(_) | Self::EmptyBatch | Self::Invalid { .. } | Self::MixedKeys => "invalid",
            Self::MissingKey | Self::UnknownKey => "unauthorized",
            Self::RateLimited(_) | Self::KeyGuessing(_) => "rate_limited",
            Self::LargerThanBurst { .. } => "too_large",
            Self::Sink(_) | Self::Keys(_) | Self::Busy => "unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        if self.too_large() {
            return StatusCode::PAYLOAD_TOO_LARGE;
        }
        match self {
            Self::Payload(_) | Self::EmptyBatch | Self::Invalid { .. } | Self::MixedKeys => StatusCode::BAD_REQUEST,
            Self::MissingKey | Self::UnknownKey => StatusCode::UNAUTHORIZED,
            Self::RateLimited(_) | Self::KeyGuessing(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::LargerThanBurst { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Sink(SinkError::Encode(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Sink(_) | Self::Keys(_) | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        if self.too_large() {
            return "payload_too_large";
        }
        match self {
            Self::Payload(PayloadError::InvalidJson(_) | PayloadError::Empty) => "invalid_json",
            Self::Payload(_) => "invalid_payload",
            Self::MissingKey | Self::UnknownKey => "unauthorized",
            Self::MixedKeys | Self::EmptyBatch => "invalid_payload",
            Self::Invalid { .. } => "invalid_events",
            Self::RateLimited(_) | Self::KeyGuessing(_) => "rate_limited",
            Self::LargerThanBurst { .. } => "payload_too_large",
            Self::Sink(_) | Self::Keys(_) | Self::Busy => "unavailable",
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid { errors, .. } => errors.clone(),
            Self::Payload(PayloadError::EventTooLarge { index, limit }) => {
                vec![FieldError::new(Some(*index), "", format!("exceeds {limit} bytes"))]
            }
            Self::Sink(SinkError::TooLarge { index, bytes, limit }) => {
                vec![FieldError::new(Some(*index), "", format!("is {bytes} bytes as stored, more than {limit}"))]
            }
            Self::LargerThanBurst { .. } => vec![FieldError::new(None, "batch", self.to_string())],
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
        let mut body = json!({"error": self.code(), "message": self.to_string(), "errors": self.field_errors()});
        if let Self::Invalid { error_count, .. } = &self {
            body["error_count"] = json!(error_count);
        }
        let mut response = (status, Json(body)).into_response();
        let retry_after = match &self {
            Self::RateLimited(wait) | Self::KeyGuessing(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            Self::Sink(SinkError::Encode(_) | SinkError::TooLarge { .. }) => None,
            Self::Sink(_) | Self::Keys(_) | Self::Busy => Some(1),
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
