//! The event model.
//!
//! [`CapturedEvent`] is the canonical form of an event once capture has validated it: it is the
//! value of every record on the events topic (JSON, documented in `schemas/kafka-event.schema.json`)
//! and what the consumer turns into a ClickHouse row. [`validate`] turns what a client sent (the
//! contract: [`ClientEvent`], `schemas/event.schema.json`) into that form, or into a list of
//! [`FieldError`]s.

mod validate;
mod wire;

pub use validate::{validate_event, FieldError, ValidationContext, MAX_DISTINCT_ID_CHARS, MAX_EVENT_NAME_CHARS};
pub use wire::{client_event_schema, ClientEvent, DistinctId, Unset, CLIENT_EVENT_DESCRIPTION};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// The HTTP routes capture serves events on (each also with a trailing slash): Cairn's own and
/// PostHog's ingestion contract. The operator routes exactly these paths to capture.
pub const CAPTURE_ROUTES: &[&str] = &["/capture", "/batch", "/e", "/i/v0/e", "/track"];

/// The numeric id of a project; every event and every query belongs to exactly one.
pub type ProjectId = u64;

/// The internal project of the operator's heartbeats (`$cairn_heartbeat` events sent through
/// capture and read back from ClickHouse to prove the data path works). Project ids start at 1,
/// so no user owns it and no analysis, export or API call of a project ever reads it.
pub const HEARTBEAT_PROJECT_ID: ProjectId = 0;

/// The heartbeat's event name.
pub const HEARTBEAT_EVENT: &str = "$cairn_heartbeat";

/// A validated event, as written to Kafka by capture and read back by the consumer.
///
/// Its JSON schema, `schemas/kafka-event.schema.json`, is generated from this type
/// ([`kafka_record_schema`]; `make docs` writes it, a test fails when it is stale).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Cairn events topic record", description = KAFKA_RECORD_DESCRIPTION)]
pub struct CapturedEvent {
    /// The event's identity: the client's when it sent one, else a UUIDv7 assigned by capture.
    /// Storage deduplicates on it, so a redelivered record is never counted twice.
    pub uuid: Uuid,
    /// The project, resolved from the API key.
    pub project_id: ProjectId,
    /// The event name, e.g. `$pageview` or `signed_up`.
    #[schemars(length(min = 1, max = 200))]
    pub event: String,
    /// Who did it.
    #[schemars(length(min = 1, max = 200))]
    pub distinct_id: String,
    /// Free-form properties (a JSON object); PostHog's `$set` and `$set_once` are kept here under
    /// those keys.
    pub properties: Map<String, Value>,
    /// When it happened (RFC 3339, UTC, millisecond precision), after clock-skew correction.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub timestamp: OffsetDateTime,
    /// When capture received it (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub received_at: OffsetDateTime,
}

/// What the schema of the events topic's records says about them as a whole.
pub const KAFKA_RECORD_DESCRIPTION: &str = "The value of every record that capture writes to the events topic (CAIRN_KAFKA_TOPIC), UTF-8 JSON. The record key is \"<project_id>:<distinct_id>\", so one person's events stay in order on one partition. Readers must ignore unknown fields: fields may be added, never removed or retyped. The topic also carries changes to stored events, produced by the query service with the event's own key: records with an \"op\" field (\"update\" or \"delete\"), which a reader of captured events skips (workloads/common/src/clickhouse/changes.rs). Records that do not match go to the dead-letter topic (CAIRN_KAFKA_DEAD_LETTER_TOPIC) with headers cairn-dlq-reason, cairn-dlq-topic, cairn-dlq-partition and cairn-dlq-offset. Capture sets the header cairn-request-id on each record: the id of the HTTP request that brought it (answered to the client in X-Request-Id); dead letters keep it. When traces are exported, capture also sets traceparent (W3C trace context of that request). CAIRN_CAPTURE_RECORD_HEADERS=false turns both off.";

/// The JSON schema of the events topic's records, as `schemas/kafka-event.schema.json` holds it.
pub fn kafka_record_schema() -> String {
    let mut schema = schemars::schema_for!(CapturedEvent);
    schema.insert("$id".into(), "https://cairn.dev/schemas/kafka-event.schema.json".into());
    // Readers must ignore unknown fields: fields may be added, never removed or retyped.
    schema.insert("additionalProperties".into(), true.into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
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

    /// The checked-in schema of the events topic is what the type generates: run `make docs`
    /// after changing [`CapturedEvent`].
    #[test]
    fn checked_in_kafka_record_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/kafka-event.schema.json");
        let generated = kafka_record_schema();
        if std::env::var_os("CAIRN_WRITE_DOCS").is_some() {
            std::fs::write(path, &generated).unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(on_disk == generated, "schemas/kafka-event.schema.json is stale: run `make docs`");
        let schema: Value = serde_json::from_str(&generated).unwrap();
        let required: Vec<&str> = schema["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(required, ["uuid", "project_id", "event", "distinct_id", "properties", "timestamp", "received_at"]);
        assert_eq!(schema["properties"]["timestamp"]["format"], "date-time");
        assert_eq!(schema["properties"]["uuid"]["format"], "uuid");
        assert_eq!(schema["properties"]["event"]["maxLength"], MAX_EVENT_NAME_CHARS as u64);
        assert_eq!(schema["properties"]["distinct_id"]["maxLength"], MAX_DISTINCT_ID_CHARS as u64);
    }
}
