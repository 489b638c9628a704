//! Validation: what a client sent → a [`CapturedEvent`], or the list of what is wrong with it.
//!
//! Accepts Cairn's own shape (`event`, `distinct_id`, `properties`, `timestamp`, `uuid`) and
//! PostHog's (distinct_id inside `properties`, `$set`/`$set_once`/`$unset` at the top level, `offset` in
//! milliseconds, a numeric distinct_id), so existing PostHog SDKs work unchanged.

use serde::Serialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use super::{new_event_uuid, CapturedEvent, ProjectId};

/// Longest accepted event name, in characters.
pub const MAX_EVENT_NAME_CHARS: usize = 200;
/// Longest accepted distinct_id, in characters.
pub const MAX_DISTINCT_ID_CHARS: usize = 200;

/// One thing wrong with one event: which event (its index in the request), which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Index of the event in the request's batch; absent for a single-event request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The field, e.g. `distinct_id` or `timestamp`; empty for the event as a whole.
    pub field: String,
    /// Why it was refused, as a sentence fragment: "is required", "must be a string".
    pub reason: String,
}

impl FieldError {
    pub fn new(index: Option<usize>, field: &str, reason: impl Into<String>) -> Self {
        Self { index, field: field.to_string(), reason: reason.into() }
    }
}

/// What validation needs to know besides the event itself.
#[derive(Debug, Clone)]
pub struct ValidationContext {
    /// The project that the request's API key belongs to.
    pub project_id: ProjectId,
    /// When capture received the request.
    pub now: OffsetDateTime,
    /// When the client says it sent the request; with an event timestamp, it corrects the
    /// client's clock skew (`timestamp' = now + (timestamp - sent_at)`).
    pub sent_at: Option<OffsetDateTime>,
    /// How far in the future (after correction) a timestamp may lie.
    pub max_future: Duration,
}

/// Validates one event. `index` is its position in a batch (None for a single event).
///
/// Takes the event by value: its properties move into the result instead of being copied.
pub fn validate_event(
    index: Option<usize>,
    raw: Value,
    ctx: &ValidationContext,
) -> Result<CapturedEvent, Vec<FieldError>> {
    let mut errors = Vec::new();
    let err = |field: &str, reason: &str| FieldError::new(index, field, reason);

    let Value::Object(mut obj) = raw else {
        return Err(vec![err("", "must be a JSON object")]);
    };

    let event = match obj.remove("event") {
        None | Some(Value::Null) => {
            errors.push(err("event", "is required"));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push(err("event", "must not be empty"));
            None
        }
        Some(Value::String(s)) if s.chars().count() > MAX_EVENT_NAME_CHARS => {
            errors.push(err("event", &format!("must be at most {MAX_EVENT_NAME_CHARS} characters")));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(err("event", "must be a string"));
            None
        }
    };

    let mut properties = match obj.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            errors.push(err("properties", "must be a JSON object"));
            Map::new()
        }
    };

    // distinct_id: top level, else inside properties (PostHog's SDKs put it there).
    let (distinct_field, distinct_raw) = match obj.get("distinct_id") {
        Some(v) if !v.is_null() => ("distinct_id", Some(v)),
        _ => match properties.get("distinct_id") {
            Some(v) if !v.is_null() => ("properties.distinct_id", Some(v)),
            _ => ("distinct_id", None),
        },
    };
    let distinct_id = match distinct_raw {
        None => {
            errors.push(err("distinct_id", "is required"));
            None
        }
        Some(Value::String(s)) => {
            let trimmed = s.trim();
            if trimmed.is_empty() {
                errors.push(err(distinct_field, "must not be empty"));
                None
            } else if trimmed.chars().count() > MAX_DISTINCT_ID_CHARS {
                errors.push(err(distinct_field, &format!("must be at most {MAX_DISTINCT_ID_CHARS} characters")));
                None
            } else {
                Some(trimmed.to_string())
            }
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            errors.push(err(distinct_field, "must be a string"));
            None
        }
    };

    let uuid = match obj.get("uuid") {
        None | Some(Value::Null) => Some(new_event_uuid()),
        Some(Value::String(s)) => match Uuid::parse_str(s) {
            Ok(u) if !u.is_nil() => Some(u),
            Ok(_) => {
                errors.push(err("uuid", "must not be the nil UUID"));
                None
            }
            Err(_) => {
                errors.push(err("uuid", "must be a UUID"));
                None
            }
        },
        Some(_) => {
            errors.push(err("uuid", "must be a UUID string"));
            None
        }
    };

    let client_timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match OffsetDateTime::parse(s, &Rfc3339) {
            Ok(t) => Ok(Some(t)),
            Err(_) => Err(err("timestamp", "must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00.000Z")),
        },
        Some(_) => Err(err("timestamp", "must be an RFC 3339 date-time string")),
    };
    let offset_ms = match obj.get("offset") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ms) => Ok(Some(ms)),
            None => Err(err("offset", "must be an integer number of milliseconds")),
        },
        Some(_) => Err(err("offset", "must be an integer number of milliseconds")),
    };
    let timestamp = match (client_timestamp, offset_ms) {
        (Err(e), _) | (_, Err(e)) => {
            errors.push(e);
            None
        }
        (Ok(ts), Ok(offset)) => {
            let t = resolve_timestamp(ts, offset, ctx);
            if t > ctx.now + ctx.max_future {
                errors.push(err(
                    "timestamp",
                    &format!("is more than {} seconds in the future", ctx.max_future.whole_seconds()),
                ));
                None
            } else if t.year() < 1970 {
                errors.push(err("timestamp", "must not be before 1970-01-01"));
                None
            } else {
                Some(t)
            }
        }
    };

    // PostHog's identify puts person properties at the top level.
    for key in ["$set", "$set_once"] {
        match obj.remove(key) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Object(_)) => {
                properties.insert(key.to_string(), v);
            }
            Some(_) => errors.push(err(key, "must be a JSON object")),
        }
    }
    // And the person properties to remove: a list of names, or an object whose keys are removed.
    match obj.remove("$unset") {
        None | Some(Value::Null) => {}
        Some(Value::Array(names)) if names.iter().all(Value::is_string) => {
            properties.insert("$unset".to_string(), Value::Array(names));
        }
        Some(v @ Value::Object(_)) => {
            properties.insert("$unset".to_string(), v);
        }
        Some(_) => errors.push(err("$unset", "must be a list of property names or a JSON object")),
    }
    // The write key is not event data.
    properties.remove("token");
    properties.remove("api_key");

    if !errors.is_empty() {
        return Err(errors);
    }
    match (event, distinct_id, uuid, timestamp) {
        (Some(event), Some(distinct_id), Some(uuid), Some(timestamp)) => Ok(CapturedEvent {
            uuid,
            project_id: ctx.project_id,
            event,
            distinct_id,
            properties,
            timestamp,
            received_at: ctx.now,
        }),
        // Every None above pushed an error, so this arm is unreachable; keep it total anyway.
        _ => Err(vec![err("", "is invalid")]),
    }
}

/// The event's time on the server's clock: with `sent_at`, the client's skew is removed; with
/// PostHog's `offset` (milliseconds before sending), it is `now - offset`; without either, the
/// client's timestamp is taken as is; with nothing, it is the time of receipt.
fn resolve_timestamp(
    timestamp: Option<OffsetDateTime>,
    offset_ms: Option<i64>,
    ctx: &ValidationContext,
) -> OffsetDateTime {
    // Out of time's range (a skew or offset of thousands of years): the far past or future, which
    // validation then refuses, never a panic.
    let beyond = |later: bool| {
        if later {
            OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT)
        } else {
            OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT)
        }
    };
    let t = match (timestamp, ctx.sent_at, offset_ms) {
        (Some(ts), Some(sent_at), _) => {
            let skew = ts - sent_at;
            ctx.now.checked_add(skew).unwrap_or_else(|| beyond(skew.is_positive()))
        }
        (_, _, Some(offset)) => {
            ctx.now.checked_sub(Duration::milliseconds(offset)).unwrap_or_else(|| beyond(offset < 0))
        }
        (Some(ts), None, None) => ts,
        (None, _, None) => ctx.now,
    };
    // Stored and written to Kafka in UTC, whatever offset the client wrote.
    let t = t.checked_to_offset(UtcOffset::UTC).unwrap_or_else(|| beyond(t.year() > 0));
    // ClickHouse keeps milliseconds.
    let ms = t.millisecond();
    t.replace_nanosecond(u32::from(ms) * 1_000_000).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn ctx() -> ValidationContext {
        ValidationContext {
            project_id: 3,
            now: datetime!(2026-11-26 12:00:00 UTC),
            sent_at: None,
            max_future: Duration::hours(23),
        }
    }

    fn fields(r: Result<CapturedEvent, Vec<FieldError>>) -> Vec<(String, String)> {
        r.unwrap_err().into_iter().map(|e| (e.field, e.reason)).collect()
    }

    #[test]
    fn accepts_a_full_event() {
        let raw = json!({
            "event": "signed_up", "distinct_id": "u1", "properties": {"plan": "pro"},
            "timestamp": "2026-11-26T11:59:00.250Z", "uuid": "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"
        });
        let e = validate_event(None, raw, &ctx()).unwrap();
        assert_eq!(e.event, "signed_up");
        assert_eq!(e.distinct_id, "u1");
        assert_eq!(e.project_id, 3);
        assert_eq!(e.timestamp, datetime!(2026-11-26 11:59:00.25 UTC));
        assert_eq!(e.uuid.to_string(), "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b");
        assert_eq!(e.properties["plan"], "pro");
    }

    #[test]
    fn assigns_uuid_v7_and_receipt_time_when_missing() {
        let e = validate_event(None, json!({"event": "x", "distinct_id": 42}), &ctx()).unwrap();
        assert_eq!(e.uuid.get_version_num(), 7);
        assert_eq!(e.timestamp, ctx().now);
        assert_eq!(e.distinct_id, "42");
    }

    #[test]
    fn posthog_shape_distinct_id_in_properties_and_set() {
        let raw = json!({"event": "$identify", "properties": {"distinct_id": "p1", "token": "phc_x"}, "$set": {"email": "a@b.c"}});
        let e = validate_event(Some(0), raw, &ctx()).unwrap();
        assert_eq!(e.distinct_id, "p1");
        assert_eq!(e.properties["$set"]["email"], "a@b.c");
        assert!(!e.properties.contains_key("token"));
    }

    #[test]
    fn a_top_level_unset_is_kept_with_the_person_properties() {
        let raw = json!({"event": "$set", "distinct_id": "p1", "$unset": ["plan", "trial"]});
        let e = validate_event(None, raw, &ctx()).unwrap();
        assert_eq!(e.properties["$unset"], json!(["plan", "trial"]));
        let raw = json!({"event": "$set", "distinct_id": "p1", "$unset": {"plan": true}});
        assert_eq!(validate_event(None, raw, &ctx()).unwrap().properties["$unset"], json!({"plan": true}));
        for bad in [json!("plan"), json!([1, 2])] {
            let raw = json!({"event": "$set", "distinct_id": "p1", "$unset": bad});
            let errors = validate_event(None, raw, &ctx()).unwrap_err();
            assert_eq!(errors[0].field, "$unset", "{errors:?}");
        }
    }

    #[test]
    fn corrects_clock_skew_with_sent_at() {
        let mut c = ctx();
        // The client's clock is one hour ahead.
        c.sent_at = Some(datetime!(2026-11-26 13:00:00 UTC));
        let raw = json!({"event": "x", "distinct_id": "u", "timestamp": "2026-11-26T12:59:50Z"});
        let e = validate_event(None, raw, &c).unwrap();
        assert_eq!(e.timestamp, datetime!(2026-11-26 11:59:50 UTC));
    }

    #[test]
    fn timestamps_are_kept_in_utc() {
        let raw = json!({"event": "x", "distinct_id": "u", "timestamp": "2026-11-26T13:30:00.250+02:00"});
        let e = validate_event(None, raw, &ctx()).unwrap();
        assert_eq!(e.timestamp.offset(), UtcOffset::UTC);
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""timestamp":"2026-11-26T11:30:00.25Z""#), "{json}");
    }

    #[test]
    fn skews_and_offsets_beyond_any_date_are_refused_not_a_panic() {
        let mut c = ctx();
        c.sent_at = Some(datetime!(0001-01-01 00:00:00 UTC));
        let raw = json!({"event": "x", "distinct_id": "u", "timestamp": "9999-12-31T23:59:59Z"});
        assert_eq!(
            fields(validate_event(None, raw, &c)),
            vec![("timestamp".into(), "is more than 82800 seconds in the future".into())]
        );
        c.sent_at = Some(datetime!(9999-12-31 23:59:59 UTC));
        let raw = json!({"event": "x", "distinct_id": "u", "timestamp": "0001-01-01T00:00:00Z"});
        assert_eq!(
            fields(validate_event(None, raw, &c)),
            vec![("timestamp".into(), "must not be before 1970-01-01".into())]
        );
        for offset in [i64::MAX, i64::MIN] {
            let raw = json!({"event": "x", "distinct_id": "u", "offset": offset});
            assert_eq!(fields(validate_event(None, raw, &ctx())).len(), 1, "offset {offset}");
        }
        let raw = json!({"event": "x", "distinct_id": "u", "timestamp": "9999-12-31T23:59:59-23:00"});
        assert_eq!(fields(validate_event(None, raw, &ctx())).len(), 1);
    }

    #[test]
    fn offset_counts_back_from_receipt() {
        let e = validate_event(None, json!({"event": "x", "distinct_id": "u", "offset": 1500}), &ctx()).unwrap();
        assert_eq!(e.timestamp, datetime!(2026-11-26 11:59:58.5 UTC));
    }

    #[test]
    fn names_every_bad_field() {
        let raw =
            json!({"event": "", "distinct_id": ["a"], "properties": "x", "timestamp": "yesterday", "uuid": "nope"});
        let got = fields(validate_event(Some(2), raw, &ctx()));
        let names: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(names, ["event", "properties", "distinct_id", "uuid", "timestamp"]);
    }

    #[test]
    fn refuses_missing_fields_wrong_types_and_the_far_future() {
        assert_eq!(
            fields(validate_event(None, json!({"distinct_id": "u"}), &ctx())),
            [("event".into(), "is required".into())]
        );
        assert_eq!(
            fields(validate_event(None, json!({"event": 1, "distinct_id": "u"}), &ctx())),
            [("event".into(), "must be a string".into())]
        );
        assert_eq!(
            fields(validate_event(None, json!({"event": "x"}), &ctx())),
            [("distinct_id".into(), "is required".into())]
        );
        assert_eq!(
            fields(validate_event(None, json!({"event": "x", "distinct_id": "  "}), &ctx())),
            [("distinct_id".into(), "must not be empty".into())]
        );
        let future = json!({"event": "x", "distinct_id": "u", "timestamp": "2027-06-01T00:00:00Z"});
        assert_eq!(fields(validate_event(None, future, &ctx()))[0].0, "timestamp");
        assert_eq!(fields(validate_event(None, json!([1]), &ctx()))[0].1, "must be a JSON object");
        let nil = json!({"event": "x", "distinct_id": "u", "uuid": "00000000-0000-0000-0000-000000000000"});
        assert_eq!(fields(validate_event(None, nil, &ctx()))[0].0, "uuid");
        let long = json!({"event": "x".repeat(201), "distinct_id": "u"});
        assert_eq!(fields(validate_event(None, long, &ctx()))[0].0, "event");
    }

    #[test]
    fn field_error_json_names_index_field_and_reason() {
        let e = FieldError::new(Some(4), "distinct_id", "is required");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"index": 4, "field": "distinct_id", "reason": "is required"})
        );
    }
}
