//! The events table's row, as the consumer inserts it.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::CapturedEvent;

/// The table that holds events (created by `schemas/clickhouse/0001_events.sql`).
pub const EVENTS_TABLE: &str = "events";

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
