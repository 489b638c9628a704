//! Events as records that can change: `GET`, `PUT` and `DELETE
//! /api/v1/projects/{project_id}/events/{event_id}`.
//!
//! A read comes straight from ClickHouse: the latest version in `event_changes`, else the event as
//! captured in `events`. A change travels like every write: it is produced to the events topic
//! with the event's own key (so it lands behind the event and behind every earlier change, in
//! one partition), acknowledged by Kafka before the 202, and the consumer appends the event's new
//! version (`cairn_common::clickhouse::ChangeRow::apply`). Nothing is mutated in ClickHouse.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::clickhouse::{
    merged_properties, ChangeOp, ChangeRecord, ChangeRow, ChangeSet, EVENTS_TABLE, EVENT_CHANGES_TABLE,
    MAX_CHANGED_PROPERTIES_BYTES,
};
use cairn_common::config::KafkaConfig;
use cairn_common::event::MAX_EVENT_NAME_CHARS;
use cairn_common::http::ApiError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::engine::Engine;
use crate::sql::Sql;

/// How long a project seen without changed events is believed to have none: its first change
/// counts in analyses at most this long after the consumer stored it.
const NO_CHANGES_TTL: Duration = Duration::from_secs(2);
/// Projects remembered; past this the memory starts again (each answer is one cheap lookup).
const MAX_REMEMBERED: usize = 100_000;
/// How far ahead of now an event's new time may be (capture's own allowance).
const MAX_FUTURE: time::Duration = time::Duration::hours(23);

/// Which projects have changed events, for [`crate::sql::EventsSource::changes`]. A project seen
/// with changes is remembered so (a stale "yes" only costs the merge); a "no" is asked again after
/// [`NO_CHANGES_TTL`]. A project this replica accepted a change for is a "yes" at once, so its
/// own caller reads its change in analyses as soon as the consumer stored it.
#[derive(Clone, Debug, Default)]
pub struct ChangedProjects(Arc<Mutex<HashMap<u64, Option<Instant>>>>);

impl ChangedProjects {
    /// The project has (or is about to have) changed events.
    pub fn mark(&self, project_id: u64) {
        if let Ok(mut known) = self.0.lock() {
            if known.len() >= MAX_REMEMBERED {
                known.clear();
            }
            known.insert(project_id, None);
        }
    }

    pub async fn has_changes(&self, engine: &Engine, project_id: u64) -> Result<bool, ApiError> {
        {
            let known = self.0.lock().map_err(|_| ApiError::internal("the changed-projects lock is poisoned"))?;
            match known.get(&project_id) {
                Some(None) => return Ok(true),
                Some(Some(asked)) if asked.elapsed() < NO_CHANGES_TTL => return Ok(false),
                _ => {}
            }
        }
        let found = engine
            .ch
            .query(&format!("SELECT 1 FROM {EVENT_CHANGES_TABLE} WHERE project_id = ? LIMIT 1"))
            .bind(project_id)
            .fetch_optional::<u8>();
        let changed = match tokio::time::timeout(engine.timeout, found).await {
            Err(_) => return Err(crate::sql::timed_out(engine.timeout)),
            Ok(Ok(row)) => row.is_some(),
            // A database not migrated this far yet (an upgrade under way) has no changes.
            Ok(Err(e)) if is_unknown_table(&e) => false,
            Ok(Err(e)) => return Err(crate::sql::clickhouse_error(e)),
        };
        let mut known = self.0.lock().map_err(|_| ApiError::internal("the changed-projects lock is poisoned"))?;
        if known.len() >= MAX_REMEMBERED {
            known.clear();
        }
        known.insert(project_id, if changed { None } else { Some(Instant::now()) });
        Ok(changed)
    }
}

/// ClickHouse's UNKNOWN_TABLE (code 60).
fn is_unknown_table(e: &clickhouse::error::Error) -> bool {
    let text = e.to_string();
    text.contains("UNKNOWN_TABLE") || text.contains("Code: 60.")
}

/// An event as it is now (`GET …/events/{event_id}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredEvent {
    pub uuid: String,
    pub event: String,
    pub distinct_id: String,
    pub properties: Value,
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// When capture received it.
    pub received_at: String,
    /// 0 as captured; each change stored adds 1.
    pub version: u64,
    /// When the latest change was requested (absent for version 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<String>,
}

/// `event_changes`' columns in [`ChangeRow`]'s order.
const CHANGE_COLUMNS: &str = "project_id, uuid, version, deleted, event, distinct_id, properties, timestamp, \
                              received_at, changed_at, change_id, retain_until";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// The event's uuid from the path; anything else is 400.
pub fn parse_event_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text.trim()).map_err(|_| ApiError::invalid("event_id", "expected an event's uuid"))
}

/// The latest version of an event: `Ok(None)` when the project has no such event, or it is
/// deleted, or its person is being deleted.
async fn latest(engine: &Engine, project_id: u64, uuid: Uuid) -> Result<Option<ChangeRow>, ApiError> {
    // One round trip: the latest change, else the capture as version 0. The capture is read
    // without FINAL: copies of one event (a redelivery) are identical, any one will do. It is
    // found through the `events_uuid` bloom filter index, which is scanned whole: the lookup
    // costs grow with the project's events (30 ms at 10 million on the test bed).
    let mut sql = Sql::new();
    let p = sql.u64(project_id);
    let u = sql.str(uuid.to_string());
    sql.push(&format!(
        "SELECT {CHANGE_COLUMNS} FROM (SELECT {CHANGE_COLUMNS} FROM {EVENT_CHANGES_TABLE} FINAL \
         WHERE project_id = {p} AND uuid = toUUID({u}) UNION ALL SELECT project_id, uuid, toUInt64(0) AS version, \
         toUInt8(0) AS deleted, event, distinct_id, properties, timestamp, received_at, received_at AS changed_at, \
         toUUID('00000000-0000-0000-0000-000000000000') AS change_id, timestamp AS retain_until FROM {EVENTS_TABLE} \
         WHERE project_id = {p} AND uuid = toUUID({u}) LIMIT 1) ORDER BY version DESC LIMIT 1"
    ));
    let rows: Vec<ChangeRow> = engine.fetch_all(&sql).await?;
    let Some(row) = rows.into_iter().next() else { return Ok(None) };
    if row.deleted != 0 {
        return Ok(None);
    }
    let hash = cityhash_of(&row.distinct_id);
    if engine.source.excluded.contains(&hash) {
        return Ok(None);
    }
    Ok(Some(row))
}

/// ClickHouse's `cityHash64` of a string (the person hash), for the pending-deletion check.
fn cityhash_of(s: &str) -> u64 {
    cairn_persons::ids::id_hash(s)
}

/// `GET …/events/{event_id}`.
pub async fn get(engine: &Engine, project_id: u64, event_id: &str) -> Result<StoredEvent, ApiError> {
    let uuid = parse_event_id(event_id)?;
    let row = latest(engine, project_id, uuid).await?.ok_or_else(|| ApiError::not_found("event"))?;
    Ok(StoredEvent {
        uuid: row.uuid.to_string(),
        properties: serde_json::from_str(&row.properties).unwrap_or(Value::String(row.properties)),
        event: row.event,
        distinct_id: row.distinct_id,
        timestamp: rfc3339(row.timestamp),
        received_at: rfc3339(row.received_at),
        changed_at: (row.version > 0).then(|| rfc3339(row.changed_at)),
        version: row.version,
    })
}

/// The answer to a change: accepted (202), stored by the consumer shortly after.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChangeAccepted {
    pub uuid: String,
    /// `update` or `delete`.
    pub op: String,
    pub status: String,
    /// RFC 3339: when the change was requested (it is the new version's `changed_at`).
    pub requested_at: String,
}

/// Produces to the events topic: event changes, and sample data (`crate::sample_data`). The Kafka
/// client is made at the first record, so a query service whose API is never asked for one never
/// connects to Kafka.
pub struct EventsProducer {
    config: rdkafka::ClientConfig,
    producer: std::sync::OnceLock<FutureProducer>,
    topic: String,
    /// How long Kafka may take to acknowledge a change before the request fails (503).
    timeout: Duration,
    /// The largest record Kafka takes.
    max_bytes: usize,
}

impl EventsProducer {
    pub fn new(cfg: &KafkaConfig, timeout: Duration) -> Self {
        let mut config = cairn_common::kafka::client_config(cfg);
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", "2")
            // Bounded: at most this many changes wait for Kafka at once.
            .set("queue.buffering.max.messages", "100000")
            .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
            .set("request.timeout.ms", timeout.as_millis().clamp(1, 30_000).to_string())
            .set("reconnect.backoff.max.ms", "1000")
            // Partitions added to the topic are seen within 10 s, as by capture: an event and its
            // changes keep landing in one partition.
            .set("topic.metadata.refresh.interval.ms", "10000");
        Self {
            config,
            producer: std::sync::OnceLock::new(),
            topic: cfg.topic.clone(),
            timeout,
            max_bytes: cfg.message_max_bytes,
        }
    }

    fn producer(&self) -> Result<&FutureProducer, ApiError> {
        if let Some(p) = self.producer.get() {
            return Ok(p);
        }
        let made: FutureProducer = self.config.create().map_err(ApiError::internal)?;
        // Two first changes at once: one client is kept, the other dropped.
        Ok(self.producer.get_or_init(|| made))
    }

    /// Produces `records` (key, value), at most 1,000 awaiting Kafka at once; all acknowledged or
    /// an error (503: some may be written; their uuids make a retry harmless).
    pub async fn send_all(&self, records: &[(String, Vec<u8>)]) -> Result<(), ApiError> {
        let producer = self.producer()?;
        for chunk in records.chunks(1_000) {
            let sends = chunk.iter().map(|(key, payload)| {
                producer.send(FutureRecord::to(&self.topic).key(key).payload(payload), self.timeout)
            });
            for result in futures::future::join_all(sends).await {
                if let Err((e, _)) = result {
                    tracing::warn!(error = %e, "Kafka did not acknowledge a record");
                    return Err(ApiError::unavailable("Kafka did not acknowledge every event; retry"));
                }
            }
        }
        Ok(())
    }

    async fn send(&self, change: &ChangeRecord) -> Result<(), ApiError> {
        let payload = change.to_record().map_err(ApiError::internal)?;
        let key = change.kafka_key();
        if payload.len() + key.len() > self.max_bytes {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the change is {} bytes; the largest record is {} bytes", payload.len(), self.max_bytes),
            )
            .with_field("properties"));
        }
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        match self.producer()?.send(record, self.timeout).await {
            Ok(_) => Ok(()),
            Err((e, _)) => {
                tracing::warn!(error = %e, "Kafka did not acknowledge an event change");
                Err(ApiError::unavailable("Kafka did not acknowledge the change; retry"))
            }
        }
    }
}

/// The body of `PUT …/events/{event_id}`, checked: the fields to set.
pub fn parse_update(body: &Value, now: OffsetDateTime) -> Result<ChangeSet, ApiError> {
    let Value::Object(obj) = body else {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    };
    let mut set = ChangeSet::default();
    for (key, value) in obj {
        match key.as_str() {
            "event" => match value {
                Value::String(s) if s.trim().is_empty() => return Err(ApiError::invalid("event", "must not be empty")),
                Value::String(s) if s.chars().count() > MAX_EVENT_NAME_CHARS => {
                    return Err(ApiError::invalid(
                        "event",
                        format!("must be at most {MAX_EVENT_NAME_CHARS} characters"),
                    ))
                }
                Value::String(s) => set.event = Some(s.clone()),
                _ => return Err(ApiError::invalid("event", "must be a string")),
            },
            "timestamp" => {
                let Value::String(s) = value else {
                    return Err(ApiError::invalid("timestamp", "must be an RFC 3339 string"));
                };
                let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|_| {
                    ApiError::invalid("timestamp", "must be an RFC 3339 time, e.g. 2026-01-02T03:04:05Z")
                })?;
                if t.unix_timestamp() < 0 {
                    return Err(ApiError::invalid("timestamp", "must not be before 1970"));
                }
                if t > now + MAX_FUTURE {
                    return Err(ApiError::invalid("timestamp", "must not be more than 23 hours ahead"));
                }
                // Milliseconds, as stored.
                let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
                set.timestamp = Some(
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                        .map_err(|_| ApiError::invalid("timestamp", "out of range"))?,
                );
            }
            "properties" => match value {
                Value::Object(m) if m.is_empty() => {
                    return Err(ApiError::invalid("properties", "must name at least one property"))
                }
                Value::Object(m) => {
                    if m.keys().any(|k| k.is_empty()) {
                        return Err(ApiError::invalid("properties", "a property name must not be empty"));
                    }
                    set.properties = Some(m.clone());
                }
                _ => {
                    return Err(ApiError::invalid(
                        "properties",
                        "must be an object: the properties to set (null removes one)",
                    ))
                }
            },
            "distinct_id" | "uuid" | "project_id" => {
                return Err(ApiError::invalid(
                    key.clone(),
                    "cannot be changed: an event keeps its id, project and person (delete it and capture it again)",
                ))
            }
            other => {
                return Err(ApiError::invalid(
                    other.to_string(),
                    "unknown field; an update sets event, timestamp or properties",
                ))
            }
        }
    }
    if set == ChangeSet::default() {
        return Err(ApiError::invalid("body", "name at least one of event, timestamp, properties"));
    }
    Ok(set)
}

/// `PUT` (with `set`) or `DELETE` (without) `…/events/{event_id}`: 404 when there is no such
/// event (or it is deleted already); 202 once Kafka holds the change.
pub async fn request(
    engine: &Engine,
    producer: &EventsProducer,
    project_id: u64,
    event_id: &str,
    set: Option<ChangeSet>,
) -> Result<ChangeAccepted, ApiError> {
    let uuid = parse_event_id(event_id)?;
    let current = latest(engine, project_id, uuid).await?.ok_or_else(|| ApiError::not_found("event"))?;
    let requested_at = OffsetDateTime::now_utc();
    let op = if set.is_some() { ChangeOp::Update } else { ChangeOp::Delete };
    let set = set.unwrap_or_default();
    if let Some(props) = &set.properties {
        // What the consumer would refuse (and drop) is refused here, with the reason.
        let merged = merged_properties(&current.properties, props);
        if merged.len() > MAX_CHANGED_PROPERTIES_BYTES {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the event's properties would be {} bytes; at most {MAX_CHANGED_PROPERTIES_BYTES}",
                    merged.len()
                ),
            )
            .with_field("properties"));
        }
    }
    let change = ChangeRecord {
        op,
        change_id: Uuid::now_v7(),
        uuid,
        project_id,
        distinct_id: current.distinct_id,
        set,
        requested_at,
    };
    producer.send(&change).await?;
    engine.changed.mark(project_id);
    tracing::info!(project_id, %uuid, op = ?op, "event change accepted");
    Ok(ChangeAccepted {
        uuid: uuid.to_string(),
        op: if op == ChangeOp::Update { "update" } else { "delete" }.into(),
        status: "accepted".into(),
        requested_at: rfc3339(requested_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_update_names_what_is_wrong() {
        let now = OffsetDateTime::now_utc();
        let field = |v: Value| parse_update(&v, now).err().and_then(|e| e.field);
        let ok = parse_update(
            &json!({"event": "renamed", "timestamp": "2026-01-02T03:04:05.678Z", "properties": {"a": 1, "b": null}}),
            now,
        )
        .unwrap();
        assert_eq!(ok.event.as_deref(), Some("renamed"));
        assert_eq!(ok.timestamp.map(|t| t.millisecond()), Some(678));
        assert_eq!(ok.properties.unwrap()["b"], Value::Null);
        assert_eq!(field(json!({})).as_deref(), Some("body"));
        assert_eq!(field(json!([1])).as_deref(), Some("body"));
        assert_eq!(field(json!({"distinct_id": "x"})).as_deref(), Some("distinct_id"));
        assert_eq!(field(json!({"uuid": "x"})).as_deref(), Some("uuid"));
        assert_eq!(field(json!({"colour": "x"})).as_deref(), Some("colour"));
        assert_eq!(field(json!({"event": " "})).as_deref(), Some("event"));
        assert_eq!(field(json!({"event": "x".repeat(201)})).as_deref(), Some("event"));
        assert_eq!(field(json!({"event": 3})).as_deref(), Some("event"));
        assert_eq!(field(json!({"timestamp": "yesterday"})).as_deref(), Some("timestamp"));
        assert_eq!(field(json!({"timestamp": "1969-12-31T23:59:59Z"})).as_deref(), Some("timestamp"));
        assert_eq!(field(json!({"timestamp": "2999-01-01T00:00:00Z"})).as_deref(), Some("timestamp"));
        assert_eq!(field(json!({"properties": "a=1"})).as_deref(), Some("properties"));
        assert_eq!(field(json!({"properties": {}})).as_deref(), Some("properties"));
        assert_eq!(field(json!({"properties": {"": 1}})).as_deref(), Some("properties"));
        assert!(parse_event_id("not-a-uuid").is_err());
    }
}
