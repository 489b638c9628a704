//! The event model.
//!
//! [`CapturedEvent`] is the canonical form of an event once capture has validated it: it is the
//! value of every record on the events topic (JSON, documented in `schemas/kafka-event.schema.json`)
//! and what the consumer turns into a ClickHouse row. [`validate`] turns what a client sent into
//! that form, or into a list of [`FieldError`]s.

mod validate;

pub use validate::{validate_event, FieldError, ValidationContext, MAX_DISTINCT_ID_CHARS, MAX_EVENT_NAME_CHARS};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// The HTTP routes capture serves events on (each also with a trailing slash): Cairn's own and
/// PostHog's ingestion contract. The operator routes exactly these paths to capture.
pub const CAPTURE_ROUTES: &[&str] = &["/capture", "/batch", "/e", "/i/v0/e", "/track"];

/// The numeric id of a project; every event and every query belongs to exactly one.
pub type ProjectId = u64;

/// A validated event, as written to Kafka by capture and read back by the consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapturedEvent {
    /// The event's identity: the client's when it sent one, else a UUIDv7 assigned by capture.
    /// Storage deduplicates on it, so a redelivered record is never counted twice.
    pub uuid: Uuid,
    /// The project, resolved from the API key.
    pub project_id: ProjectId,
    /// The event name, e.g. `$pageview` or `signed_up`.
    pub event: String,
    /// Who did it.
    pub distinct_id: String,
    /// Free-form properties (a JSON object).
    pub properties: Map<String, Value>,
    /// When it happened, after clock-skew correction.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// When capture received it.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

impl CapturedEvent {
    /// The Kafka record key: project and distinct_id, so that one person's events stay in order
    /// on one partition.
    pub fn kafka_key(&self) -> String {
        kafka_key(self.project_id, &self.distinct_id)
    }
}

/// The Kafka record key for a project's distinct_id.
pub fn kafka_key(project_id: ProjectId, distinct_id: &str) -> String {
    format!("{project_id}:{distinct_id}")
}

/// A new time-ordered event id (UUIDv7), for events that arrive without one.
pub fn new_event_uuid() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn round_trips_through_json_with_millisecond_timestamps() {
        let event = CapturedEvent {
            uuid: Uuid::parse_str("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b").unwrap(),
            project_id: 7,
            event: "signed_up".into(),
            distinct_id: "user-1".into(),
            properties: serde_json::from_str(r#"{"plan":"pro","seats":3}"#).unwrap(),
            timestamp: datetime!(2026-11-26 10:00:00.123 UTC),
            received_at: datetime!(2026-11-26 10:00:01.5 UTC),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""timestamp":"2026-11-26T10:00:00.123Z""#), "{json}");
        let back: CapturedEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
        assert_eq!(event.kafka_key(), "7:user-1");
    }
}
