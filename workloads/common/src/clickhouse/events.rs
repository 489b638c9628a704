//! The events table's row, as the consumer inserts it.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::CapturedEvent;

/// The table that holds events (created by `schemas/clickhouse/0001_events.sql`).
pub const EVENTS_TABLE: &str = "events";

/// The events again, ordered by person, for funnels (`schemas/clickhouse/0002_events_by_person.sql`;
/// filled by a materialized view on `events`).
pub const EVENTS_BY_PERSON_TABLE: &str = "events_by_person";

/// Each event's receipts by project and time, for scheduled exports
/// (`schemas/clickhouse/0008_events_received.sql`; filled by a materialized view on `events`).
pub const EVENTS_RECEIVED_TABLE: &str = "events_received";

/// One row of the events table. `ingested_at` is left to its DEFAULT (the server's clock).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub uuid: Uuid,
    pub project_id: u64,
    pub event: String,
    pub distinct_id: String,
    /// The properties object as JSON text.
    pub properties: String,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub timestamp: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub received_at: OffsetDateTime,
}

/// The view of a Kafka record that [`EventRow::from_record`] decodes: like [`CapturedEvent`], but
/// borrowing the properties' JSON text instead of parsing it.
#[derive(Deserialize)]
struct RecordView<'a> {
    uuid: Uuid,
    project_id: u64,
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    distinct_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    properties: &'a serde_json::value::RawValue,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    received_at: OffsetDateTime,
}

/// Why a record's value is not an event.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the value is not a Cairn event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the event has {0}")]
    Invalid(&'static str),
}

impl EventRow {
    /// Decodes a record value of the events topic (see `schemas/kafka-event.schema.json`)
    /// straight into a row: the properties' JSON text is kept as capture wrote it (compact), not
    /// parsed and written again.
    pub fn from_record(value: &[u8]) -> Result<Self, RecordError> {
        let v: RecordView<'_> = serde_json::from_slice(value)?;
        if v.event.is_empty() {
            return Err(RecordError::Invalid("an empty event name"));
        }
        if v.distinct_id.is_empty() {
            return Err(RecordError::Invalid("an empty distinct_id"));
        }
        let properties = v.properties.get();
        if !properties.starts_with('{') {
            return Err(RecordError::Invalid("properties that are not a JSON object"));
        }
        Ok(Self {
            uuid: v.uuid,
            project_id: v.project_id,
            event: v.event.into_owned(),
            distinct_id: v.distinct_id.into_owned(),
            properties: properties.to_string(),
            timestamp: v.timestamp,
            received_at: v.received_at,
        })
    }
}

/// A row as an events-topic record, as capture writes them (for the dead-letter topic).
#[derive(Serialize)]
struct RecordOut<'a> {
    uuid: Uuid,
    project_id: u64,
    event: &'a str,
    distinct_id: &'a str,
    properties: &'a serde_json::value::RawValue,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    received_at: OffsetDateTime,
}

impl EventRow {
    /// The row as a record of the events topic (`schemas/kafka-event.schema.json`).
    pub fn to_record(&self) -> Result<Vec<u8>, serde_json::Error> {
        let raw = serde_json::value::RawValue::from_string(self.properties.clone())?;
        let out = RecordOut {
            uuid: self.uuid,
            project_id: self.project_id,
            event: &self.event,
            distinct_id: &self.distinct_id,
            properties: &raw,
            timestamp: self.timestamp,
            received_at: self.received_at,
        };
        serde_json::to_vec(&out)
    }
}

impl From<CapturedEvent> for EventRow {
    fn from(e: CapturedEvent) -> Self {
        Self {
            uuid: e.uuid,
            project_id: e.project_id,
            properties: serde_json::Value::Object(e.properties).to_string(),
            event: e.event,
            distinct_id: e.distinct_id,
            timestamp: e.timestamp,
            received_at: e.received_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_decodes_to_the_same_row_as_the_event() {
        let event: CapturedEvent = serde_json::from_str(
            r#"{"uuid":"0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b","project_id":9,"event":"e\"q","distinct_id":"d","properties":{"b":[1,{"c":null}],"a":"\u00e9"},"timestamp":"2026-01-01T00:00:00.5Z","received_at":"2026-01-01T00:00:01Z"}"#,
        )
        .unwrap();
        let bytes = serde_json::to_vec(&event).unwrap();
        assert_eq!(EventRow::from_record(&bytes).unwrap(), EventRow::from(event));
        assert!(EventRow::from_record(b"nope").is_err());
        let empty = br#"{"uuid":"0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b","project_id":9,"event":"","distinct_id":"d","properties":{},"timestamp":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:01Z"}"#;
        assert!(matches!(EventRow::from_record(empty), Err(RecordError::Invalid(_))));
        let row = EventRow::from_record(&bytes).unwrap();
        assert_eq!(EventRow::from_record(&row.to_record().unwrap()).unwrap(), row, "a row written back as a record");
    }
}
