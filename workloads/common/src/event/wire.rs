//! What a client sends to capture, as a type: the source of `schemas/event.schema.json`.
//!
//! Capture does not deserialize into [`ClientEvent`]: it reads each event within a budget of JSON
//! values (capture's `payload.rs`) and [`super::validate_event`] checks it field by field, so that
//! a bad event gets every reason and a hostile one costs little. This type states the contract
//! those two implement, and its tests hold them to it: every value of the type that satisfies its
//! schema's constraints is accepted, with each field landing where the schema says.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{MAX_DISTINCT_ID_CHARS, MAX_EVENT_NAME_CHARS};

/// What the schema says about events and request bodies as a whole.
pub const CLIENT_EVENT_DESCRIPTION: &str = "One event as a client sends it to capture. PostHog's SDK shapes are accepted too: distinct_id inside properties, the key as properties.token, $set/$set_once/$unset at the top level, offset in milliseconds. A request body is one event, an array of events, or an envelope {\"api_key\"|\"token\", \"sent_at\", \"batch\": [events]}; the key may also be given as ?api_key= or in properties.token. Unknown top-level fields are ignored.";

/// One event as a client sends it (see [`CLIENT_EVENT_DESCRIPTION`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Cairn event (as sent to capture)", description = CLIENT_EVENT_DESCRIPTION)]
pub struct ClientEvent {
    /// The event name, e.g. `$pageview` or `signed_up` (not only white space).
    #[schemars(length(min = 1, max = MAX_EVENT_NAME_CHARS))]
    pub event: String,
    /// Who did it (1 to 200 characters after leading and trailing white space is trimmed, which
    /// capture does); required here or as properties.distinct_id. A number is stored as its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_id: Option<DistinctId>,
    /// Free-form properties; `distinct_id` and `token` here are read as the event's when absent
    /// at the top level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
    /// RFC 3339. With the envelope's sent_at (or PostHog's ?_= milliseconds), corrected for the
    /// client's clock skew. At most CAIRN_CAPTURE_MAX_FUTURE_SECS (23 h) in the future and not
    /// before 1970. Any UTC offset; stored as the same instant in UTC, to the millisecond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,
    /// PostHog: milliseconds between the event and sending; timestamp = receipt - offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The event's id; kept when given (not nil), a UUIDv7 assigned otherwise. Resending the same
    /// uuid never counts twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<Uuid>,
    /// The project's write key (or in the envelope, the query, or properties.token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// PostHog's name for the write key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Person properties to set (PostHog); kept in properties under `$set`.
    #[serde(default, rename = "$set", skip_serializing_if = "Option::is_none")]
    pub set: Option<Map<String, Value>>,
    /// Person properties to set once (PostHog); kept in properties under `$set_once`.
    #[serde(default, rename = "$set_once", skip_serializing_if = "Option::is_none")]
    pub set_once: Option<Map<String, Value>>,
    /// Person properties to remove: their names, or an object whose keys are removed; kept in
    /// properties under `$unset`.
    #[serde(default, rename = "$unset", skip_serializing_if = "Option::is_none")]
    pub unset: Option<Unset>,
}

/// What `$unset` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Unset {
    Names(Vec<String>),
    Keys(Map<String, Value>),
}

/// A distinct id: text, or a number (stored as its text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DistinctId {
    Text(#[schemars(length(min = 1, max = MAX_DISTINCT_ID_CHARS))] String),
    Number(serde_json::Number),
}

/// The JSON schema of what clients send, as `schemas/event.schema.json` holds it.
pub fn client_event_schema() -> String {
    let mut schema = schemars::schema_for!(ClientEvent);
    schema.insert("$id".into(), "https://cairn.dev/schemas/event.schema.json".into());
    // Unknown fields are ignored (SDKs send more than Cairn reads).
    schema.insert("additionalProperties".into(), true.into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime};

    use super::super::{validate_event, ValidationContext};
    use super::*;

    /// The checked-in schema is what the type generates: run `make docs` after changing it.
    #[test]
    fn checked_in_client_event_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/event.schema.json");
        let generated = client_event_schema();
        if std::env::var_os("CAIRN_WRITE_DOCS").is_some() {
            std::fs::write(path, &generated).unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(on_disk == generated, "schemas/event.schema.json is stale: run `make docs`");
        let schema: Value = serde_json::from_str(&generated).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["event"]));
        assert_eq!(schema["properties"]["event"]["maxLength"], MAX_EVENT_NAME_CHARS as u64);
        assert_eq!(schema["properties"]["timestamp"]["format"], "date-time");
        assert!(["$set", "$set_once", "$unset"].iter().all(|k| schema["properties"][k].is_object()));
    }

    fn ctx(now: OffsetDateTime) -> ValidationContext {
        ValidationContext { project_id: 3, now, sent_at: None, max_future: Duration::hours(23) }
    }

    fn base() -> ClientEvent {
        ClientEvent {
            event: "signed_up".into(),
            distinct_id: Some(DistinctId::Text("u-1".into())),
            properties: None,
            timestamp: None,
            offset: None,
            uuid: None,
            api_key: None,
            token: None,
            set: None,
            set_once: None,
            unset: None,
        }
    }

    /// Values of the type within its schema's bounds, from the least to the most that is allowed,
    /// are all accepted, each field landing where the schema says.
    #[test]
    fn every_event_the_schema_allows_is_accepted_as_it_says() {
        let now = datetime!(2026-12-04 12:00:00 UTC);
        let longest = "é".repeat(MAX_EVENT_NAME_CHARS);
        let mut props = Map::new();
        props.insert("distinct_id".into(), "from-props".into());
        props.insert("token".into(), "phc_x".into());
        let mut set = Map::new();
        set.insert("plan".into(), "pro".into());
        let cases = vec![
            ClientEvent { event: "x".into(), ..base() },
            ClientEvent {
                event: longest.clone(),
                distinct_id: Some(DistinctId::Text("d".repeat(MAX_DISTINCT_ID_CHARS))),
                ..base()
            },
            ClientEvent { distinct_id: Some(DistinctId::Number(42.into())), ..base() },
            ClientEvent { distinct_id: Some(DistinctId::Text("  padded  ".into())), ..base() },
            ClientEvent { distinct_id: None, properties: Some(props), ..base() },
            ClientEvent { timestamp: Some("2026-12-04T13:00:00.123+01:00".into()), ..base() },
            ClientEvent { timestamp: Some("1970-01-01T00:00:00Z".into()), ..base() },
            ClientEvent { offset: Some(1500), ..base() },
            ClientEvent { uuid: Some(Uuid::from_u128(7)), ..base() },
            ClientEvent { unset: Some(Unset::Names(vec!["plan".into()])), ..base() },
            ClientEvent {
                set: Some(set.clone()),
                set_once: Some(set),
                api_key: Some("k".into()),
                token: Some("t".into()),
                ..base()
            },
        ];

        for case in cases {
            let wire = serde_json::to_value(&case).unwrap();
            let got = validate_event(None, wire.clone(), &ctx(now)).unwrap_or_else(|e| panic!("{wire}: {e:?}"));
            assert_eq!(got.event, case.event);
            match &case.distinct_id {
                Some(DistinctId::Text(t)) => assert_eq!(got.distinct_id, t.trim()),
                Some(DistinctId::Number(n)) => assert_eq!(got.distinct_id, n.to_string()),
                None => assert_eq!(got.distinct_id, "from-props"),
            }
            if let Some(ts) = &case.timestamp {
                let parsed = OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).unwrap();
                assert_eq!(got.timestamp, parsed);
            }
            if let Some(ms) = case.offset {
                assert_eq!(got.timestamp, now - Duration::milliseconds(ms));
            }
            if let Some(u) = case.uuid {
                assert_eq!(got.uuid, u);
            }
            if let Some(unset) = &case.unset {
                assert_eq!(got.properties.get("$unset"), Some(&serde_json::to_value(unset).unwrap()));
            }
            if let Some(set) = &case.set {
                assert_eq!(got.properties.get("$set"), Some(&Value::Object(set.clone())));
                assert_eq!(got.properties.get("$set_once"), Some(&Value::Object(set.clone())));
            }
        }
    }

    /// Just past each bound the schema states, the event is refused naming the field.
    #[test]
    fn just_past_each_bound_is_refused_naming_the_field() {
        let now = datetime!(2026-12-04 12:00:00 UTC);
        let cases = [
            (ClientEvent { event: "é".repeat(MAX_EVENT_NAME_CHARS + 1), ..base() }, "event"),
            (ClientEvent { event: "   ".into(), ..base() }, "event"),
            (
                ClientEvent { distinct_id: Some(DistinctId::Text("d".repeat(MAX_DISTINCT_ID_CHARS + 1))), ..base() },
                "distinct_id",
            ),
            (ClientEvent { distinct_id: None, ..base() }, "distinct_id"),
            (ClientEvent { timestamp: Some("yesterday".into()), ..base() }, "timestamp"),
            (ClientEvent { timestamp: Some("1969-12-31T23:59:59Z".into()), ..base() }, "timestamp"),
            (ClientEvent { uuid: Some(Uuid::nil()), ..base() }, "uuid"),
        ];
        for (case, field) in cases {
            let wire = serde_json::to_value(&case).unwrap();
            let errors = validate_event(None, wire.clone(), &ctx(now)).expect_err(&wire.to_string());
            assert!(errors.iter().any(|e| e.field == field), "{wire}: {errors:?}");
        }
    }
}
