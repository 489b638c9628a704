//! Events changed after capture: the record query produces to the events topic for an update or
//! a deletion, the row the consumer appends to `event_changes` (one per version), and the rule
//! that turns the one into the other ([`ChangeRow::apply`]).
//!
//! A change is keyed like its event (`project:distinct_id`), so it lands in the event's partition
//! behind the event itself and behind every earlier change: the consumer applies them in order.
//! Each change carries when it was requested and an id; a change applies only if it is newer than
//! the one that made the current version, so nothing is applied twice and nothing older wins,
//! whichever partition, offset or replay a record comes from.

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

/// A change, as a record of the events topic (`op` present; readers ignore fields they do not
/// know, as with events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub op: ChangeOp,
    /// The change's own id (a UUIDv7, made when it was requested): with `requested_at`, it orders
    /// the changes of one event.
    pub change_id: Uuid,
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
    /// When the change that made this version was requested (capture's receipt for version 0).
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub changed_at: OffsetDateTime,
    /// The change that made this version (nil for version 0).
    #[serde(with = "clickhouse::serde::uuid")]
    pub change_id: Uuid,
    /// The latest time the event ever had (never decreasing): what the retention TTL applies to.
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub retain_until: OffsetDateTime,
}

/// The largest properties object a change may leave on an event (JSON text): capture's limit for a
/// whole event record.
pub const MAX_CHANGED_PROPERTIES_BYTES: usize = 1024 * 1024;

/// Why a change made no new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The change made this version already, or is older than the one that did (a redelivery
    /// after a crash, a replayed record).
    AlreadyApplied,
    /// The event is deleted: a deletion is final.
    Deleted,
    /// The properties would grow past [`MAX_CHANGED_PROPERTIES_BYTES`].
    TooLarge,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::AlreadyApplied => "already_applied",
            Skip::Deleted => "deleted",
            Skip::TooLarge => "too_large",
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
            change_id: Uuid::nil(),
            retain_until: e.timestamp,
        }
    }
}

impl ChangeRow {
    /// The version that `change` makes of this one: version + 1, unless the change is not newer
    /// than the one that made this version (requested at the same time or before; ties broken by
    /// the change's id), or the event is deleted.
    pub fn apply(&self, change: &ChangeRecord) -> Result<ChangeRow, Skip> {
        let requested = truncate_to_millis(change.requested_at);
        if self.version > 0 && (requested, change.change_id) <= (self.changed_at, self.change_id) {
            return Err(Skip::AlreadyApplied);
        }
        if self.deleted != 0 {
            return Err(Skip::Deleted);
        }
        let mut next =
            ChangeRow { version: self.version + 1, changed_at: requested, change_id: change.change_id, ..self.clone() };
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
                    if next.properties.len() > MAX_CHANGED_PROPERTIES_BYTES {
                        return Err(Skip::TooLarge);
                    }
                }
            }
        }
        next.retain_until = next.retain_until.max(next.timestamp);
        Ok(next)
    }
}

/// `t` to the millisecond, as ClickHouse stores it (so a stored time compares equal to the
/// record's).
fn truncate_to_millis(t: OffsetDateTime) -> OffsetDateTime {
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).unwrap_or(t)
}

/// The properties `set` leaves on an event whose properties are `current` (JSON text).
pub fn merged_properties(current: &str, set: &Map<String, Value>) -> String {
    merge_properties(current, set)
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
        let up = change(json!({"op": "update", "change_id": "0192f3c4-0000-7000-8000-000000000001", "uuid": v0.uuid,
            "project_id": 9, "distinct_id": "d",
            "set": {"event": "upgrade", "timestamp": "2025-12-03T04:05:06Z", "properties": {"plan": "pro", "keep": null, "n": 2}},
            "requested_at": "2026-03-01T00:00:00.123456Z"}));
        let v1 = v0.apply(&up).unwrap();
        assert_eq!((v1.version, v1.deleted, v1.event.as_str()), (1, 0, "upgrade"));
        assert_eq!(v1.timestamp, time::macros::datetime!(2025-12-03 04:05:06 UTC));
        let props: Value = serde_json::from_str(&v1.properties).unwrap();
        assert_eq!(props, json!({"plan": "pro", "n": 2}));
        assert_eq!(v1.received_at, v0.received_at, "the capture time stays");
        assert_eq!(v1.changed_at, time::macros::datetime!(2026-03-01 00:00:00.123 UTC), "stored to the millisecond");
        assert_eq!(v1.retain_until, v0.timestamp, "moved earlier: kept as long as the captured row");

        // The same change again (the consumer restarted before committing, or a replayed record):
        // not applied twice; an older change does not overwrite a newer one.
        assert_eq!(v1.apply(&up), Err(Skip::AlreadyApplied));
        let older =
            change(json!({"op": "update", "change_id": "0192f3c4-0000-7000-8000-000000000009", "uuid": v0.uuid,
            "project_id": 9, "distinct_id": "d", "set": {"event": "stale"}, "requested_at": "2026-02-01T00:00:00Z"}));
        assert_eq!(v1.apply(&older), Err(Skip::AlreadyApplied));
        // Requested in the same millisecond: the change id orders them.
        let same_ms =
            change(json!({"op": "update", "change_id": "0192f3c4-0000-7000-8000-000000000002", "uuid": v0.uuid,
            "project_id": 9, "distinct_id": "d", "set": {"timestamp": "2026-06-01T00:00:00Z"},
            "requested_at": "2026-03-01T00:00:00.123999Z"}));
        let v2 = v1.apply(&same_ms).unwrap();
        assert_eq!(v2.retain_until, time::macros::datetime!(2026-06-01 00:00:00 UTC), "moved later: kept longer");

        let del = change(json!({"op": "delete", "change_id": "0192f3c4-0000-7000-8000-000000000003", "uuid": v0.uuid,
            "project_id": 9, "distinct_id": "d", "requested_at": "2026-03-02T00:00:00Z"}));
        let v3 = v2.apply(&del).unwrap();
        assert_eq!((v3.version, v3.deleted, v3.event.as_str()), (3, 1, "upgrade"));
        assert_eq!(v3.retain_until, v2.retain_until, "never decreases");
        let later =
            change(json!({"op": "update", "change_id": "0192f3c4-0000-7000-8000-000000000004", "uuid": v0.uuid,
            "project_id": 9, "distinct_id": "d", "set": {"event": "x"}, "requested_at": "2026-03-03T00:00:00Z"}));
        assert_eq!(v3.apply(&later), Err(Skip::Deleted), "nothing changes a deleted event");
    }

    #[test]
    fn properties_do_not_grow_past_the_limit() {
        let v0 = captured();
        let big = "x".repeat(600 * 1024);
        let first = change(
            json!({"op": "update", "change_id": "0192f3c4-0000-7000-8000-000000000001", "uuid": v0.uuid,
            "project_id": 9, "distinct_id": "d", "set": {"properties": {"a": big}}, "requested_at": "2026-03-01T00:00:00Z"}),
        );
        let v1 = v0.apply(&first).unwrap();
        let second = change(
            json!({"op": "update", "change_id": "0192f3c4-0000-7000-8000-000000000002", "uuid": v0.uuid,
            "project_id": 9, "distinct_id": "d", "set": {"properties": {"b": big}}, "requested_at": "2026-03-02T00:00:00Z"}),
        );
        assert_eq!(v1.apply(&second), Err(Skip::TooLarge));
    }

    #[test]
    fn malformed_changes_are_refused() {
        let bad = |v: Value| ChangeRecord::from_record(&serde_json::to_vec(&v).unwrap()).is_err();
        let base = json!({"op": "update", "change_id": "0192f3c4-0000-7000-8000-000000000001",
            "uuid": "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", "project_id": 9, "distinct_id": "d", "requested_at": "2026-03-01T00:00:00Z"});
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
        // A field a later version adds is ignored, as with events.
        let mut v = base.clone();
        v["origin"] = json!("api");
        assert!(!bad(v));
        let c = change(base);
        assert_eq!(ChangeRecord::from_record(&c.to_record().unwrap()).unwrap(), c);
        assert_eq!(c.kafka_key(), "9:d");
    }
}
