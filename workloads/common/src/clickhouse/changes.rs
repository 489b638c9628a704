//! Events changed after capture: the record query produces to the events topic for an update or
//! a deletion, the row the consumer appends to `event_changes` (one per version), and the rule
//! that turns the one into the other ([`ChangeRow::apply`]).
//!
//! A change is keyed like its event (`project:distinct_id`), so it lands in the event's partition
//! behind the event itself and behind every earlier change: the consumer applies them in order.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::EventRow;

/// The table of changed versions (created by `schemas/clickhouse/0007_event_changes.sql`).
pub const EVENT_CHANGES_TABLE: &str = "event_changes";

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Update,
    Delete,
}

/// The fields an update sets; an absent field is left as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<OffsetDateTime>,
    /// Properties to set; a `null` value removes the property. Others are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
}

/// A change, as a record of the events topic (`schemas/kafka-event.schema.json`, `op` present).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRecord {
    pub op: ChangeOp,
    pub uuid: Uuid,
    pub project_id: u64,
    /// The event's distinct_id (which a change never alters): the record's Kafka key is the
    /// event's own.
    pub distinct_id: String,
    #[serde(default)]
    pub set: ChangeSet,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
}

/// Why a record is not a change.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("the value is not a Cairn event change: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the change has {0}")]
    Invalid(&'static str),
}

impl ChangeRecord {
    pub fn from_record(value: &[u8]) -> Result<Self, ChangeError> {
        let c: ChangeRecord = serde_json::from_slice(value)?;
        if c.distinct_id.is_empty() {
            return Err(ChangeError::Invalid("an empty distinct_id"));
        }
        if c.set.event.as_deref() == Some("") {
            return Err(ChangeError::Invalid("an empty event name"));
        }
        if c.op == ChangeOp::Delete && c.set != ChangeSet::default() {
            return Err(ChangeError::Invalid("fields to set on a deletion"));
        }
        Ok(c)
    }

    pub fn to_record(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// The Kafka key: the event's.
    pub fn kafka_key(&self) -> String {
        crate::event::kafka_key(self.project_id, &self.distinct_id)
    }
}

/// One version of a changed event: a row of `event_changes`. The capture itself is version 0 (in
/// `events`); changes count from 1.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ChangeRow {
    pub project_id: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub uuid: Uuid,
    pub version: u64,
    pub deleted: u8,
    pub event: String,
    pub distinct_id: String,
    pub properties: String,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub timestamp: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub received_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub changed_at: OffsetDateTime,
    /// The Kafka record that made this version (-1 for the capture).
    pub source_partition: i32,
    pub source_offset: i64,
}

/// Why a change made no new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The record made this version or an earlier one already (a redelivery after a crash).
    AlreadyApplied,
    /// The event is deleted: a deletion is final.
    Deleted,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::AlreadyApplied => "already_applied",
            Skip::Deleted => "deleted",
        }
    }
}

impl From<&EventRow> for ChangeRow {
    /// The captured event as version 0.
    fn from(e: &EventRow) -> Self {
        Self {
            project_id: e.project_id,
            uuid: e.uuid,
            version: 0,
            deleted: 0,
            event: e.event.clone(),
            distinct_id: e.distinct_id.clone(),
            properties: e.properties.clone(),
            timestamp: e.timestamp,
            received_at: e.received_at,
            changed_at: e.received_at,
            source_partition: -1,
            source_offset: -1,
        }
    }
}

impl ChangeRow {
    /// The version that `change` (the record at `partition`/`offset`) makes of this one.
    ///
    /// Records of one event arrive in order in one partition, so a record at or before the one
    /// that made this version (same partition) was applied already: the consumer got it again.
    pub fn apply(&self, change: &ChangeRecord, partition: i32, offset: i64) -> Result<ChangeRow, Skip> {
        if self.source_partition == partition && offset <= self.source_offset {
            return Err(Skip::AlreadyApplied);
        }
        if self.deleted != 0 {
            return Err(Skip::Deleted);
        }
        let mut next = ChangeRow {
            version: self.version + 1,
            changed_at: change.requested_at,
            source_partition: partition,
            source_offset: offset,
            ..self.clone()
        };
        match change.op {
            ChangeOp::Delete => next.deleted = 1,
            ChangeOp::Update => {
                if let Some(event) = &change.set.event {
                    next.event = event.clone();
                }
                if let Some(ts) = change.set.timestamp {
                    next.timestamp = ts;
                }
                if let Some(set) = &change.set.properties {
                    next.properties = merge_properties(&self.properties, set);
                }
            }
        }
        Ok(next)
    }
}

/// `current` (a JSON object's text) with `set` applied: keys set, `null` removes a key.
fn merge_properties(current: &str, set: &Map<String, Value>) -> String {
    // Stored properties are always an object (capture and this function write nothing else);
    // were one not, the change would start from an empty object rather than fail forever.
    let mut props: Map<String, Value> = match serde_json::from_str(current) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (k, v) in set {
        if v.is_null() {
            props.remove(k);
        } else {
            props.insert(k.clone(), v.clone());
        }
    }
    Value::Object(props).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn captured() -> ChangeRow {
        let e: crate::event::CapturedEvent = serde_json::from_value(json!({
            "uuid": "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", "project_id": 9, "event": "signup", "distinct_id": "d",
            "properties": {"plan": "free", "keep": 1}, "timestamp": "2026-01-01T00:00:00Z", "received_at": "2026-01-01T00:00:01Z"
        }))
        .unwrap();
        ChangeRow::from(&EventRow::from(e))
    }

    fn change(v: Value) -> ChangeRecord {
        ChangeRecord::from_record(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn updates_count_versions_and_a_deletion_is_final() {
        let v0 = captured();
        let up = change(json!({"op": "update", "uuid": v0.uuid, "project_id": 9, "distinct_id": "d",
            "set": {"event": "upgrade", "timestamp": "2026-02-03T04:05:06Z", "properties": {"plan": "pro", "keep": null, "n": 2}},
            "requested_at": "2026-03-01T00:00:00Z"}));
        let v1 = v0.apply(&up, 2, 10).unwrap();
        assert_eq!((v1.version, v1.deleted, v1.event.as_str()), (1, 0, "upgrade"));
        assert_eq!(v1.timestamp, time::macros::datetime!(2026-02-03 04:05:06 UTC));
        let props: Value = serde_json::from_str(&v1.properties).unwrap();
        assert_eq!(props, json!({"plan": "pro", "n": 2}));
        assert_eq!(v1.received_at, v0.received_at, "the capture time stays");

        // The same record again (the consumer restarted before committing): not applied twice.
        assert_eq!(v1.apply(&up, 2, 10), Err(Skip::AlreadyApplied));
        assert_eq!(v1.apply(&up, 2, 9), Err(Skip::AlreadyApplied));

        let del = change(json!({"op": "delete", "uuid": v0.uuid, "project_id": 9, "distinct_id": "d",
            "requested_at": "2026-03-02T00:00:00Z"}));
        let v2 = v1.apply(&del, 2, 11).unwrap();
        assert_eq!((v2.version, v2.deleted, v2.event.as_str()), (2, 1, "upgrade"));
        assert_eq!(v2.apply(&up, 2, 12), Err(Skip::Deleted), "nothing changes a deleted event");
        assert_eq!(v2.apply(&del, 2, 12), Err(Skip::Deleted));
    }

    #[test]
    fn malformed_changes_are_refused() {
        let bad = |v: Value| ChangeRecord::from_record(&serde_json::to_vec(&v).unwrap()).is_err();
        let base = json!({"op": "update", "uuid": "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", "project_id": 9, "distinct_id": "d", "requested_at": "2026-03-01T00:00:00Z"});
        assert!(!bad(base.clone()));
        let mut v = base.clone();
        v["set"] = json!({"distinct_id": "other"});
        assert!(bad(v), "distinct_id is not a field a change sets");
        let mut v = base.clone();
        v["set"] = json!({"event": ""});
        assert!(bad(v));
        let mut v = base.clone();
        v["op"] = json!("delete");
        v["set"] = json!({"event": "x"});
        assert!(bad(v));
        // An event record is not a change, and a change is not an event.
        assert!(bad(
            json!({"uuid": "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", "project_id": 9, "event": "e", "distinct_id": "d",
            "properties": {}, "timestamp": "2026-01-01T00:00:00Z", "received_at": "2026-01-01T00:00:01Z"})
        ));
        assert!(EventRow::from_record(&serde_json::to_vec(&base).unwrap()).is_err());
        let c = change(base);
        assert_eq!(ChangeRecord::from_record(&c.to_record().unwrap()).unwrap(), c);
        assert_eq!(c.kafka_key(), "9:d");
    }
}
