//! Person properties: the `$set`, `$set_once` and `$unset` operations events carry, folded in
//! event-time order.
//!
//! PostHog applies them in the order events arrive, so a late or replayed event can overwrite a
//! newer value. Here a person's properties are a function of the *set* of operations of all its
//! distinct ids: for each key, the operations are ordered by (event time, event uuid, `$set_once`
//! before `$set` before `$unset` within one event) and applied in that order — `$set` gives the
//! value, `$unset` removes it, `$set_once` gives it only if the key has no value at that point.
//! Arrival order, replays (the same event twice) and merges (ids joining a person) cannot change
//! the result, only which operations are in the set.

use std::collections::BTreeMap;

use cairn_common::event::CapturedEvent;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// What an operation does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// Sets the value if the key has none at that point in event time.
    SetOnce,
    /// Sets the value.
    Set,
    /// Removes the value.
    Unset,
}

/// One operation on one key of a person's properties.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyOp {
    pub key: String,
    pub kind: OpKind,
    /// The value (`Null` for [`OpKind::Unset`]).
    pub value: Value,
    /// The event's time and id: the order operations apply in.
    pub timestamp: OffsetDateTime,
    pub uuid: Uuid,
}

/// The operations of an event: its `$set` and `$set_once` objects and its `$unset` (a list of keys,
/// or an object whose keys are removed), from its properties (where capture keeps the top-level
/// ones PostHog's SDKs send).
pub fn property_ops(event: &CapturedEvent) -> Vec<PropertyOp> {
    let mut ops = Vec::new();
    let mut push = |key: &str, kind: OpKind, value: Value| {
        ops.push(PropertyOp { key: key.to_string(), kind, value, timestamp: event.timestamp, uuid: event.uuid })
    };
    for (field, kind) in [("$set_once", OpKind::SetOnce), ("$set", OpKind::Set)] {
        if let Some(Value::Object(m)) = event.properties.get(field) {
            for (k, v) in m {
                push(k, kind, v.clone());
            }
        }
    }
    match event.properties.get("$unset") {
        Some(Value::Array(keys)) => {
            for k in keys.iter().filter_map(Value::as_str) {
                push(k, OpKind::Unset, Value::Null);
            }
        }
        Some(Value::Object(m)) => {
            for k in m.keys() {
                push(k, OpKind::Unset, Value::Null);
            }
        }
        _ => {}
    }
    ops
}

/// The properties `ops` leave (each key's operations applied in event-time order).
pub fn fold<'a>(ops: impl IntoIterator<Item = &'a PropertyOp>) -> Map<String, Value> {
    let mut by_key: BTreeMap<&str, Vec<&PropertyOp>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut out = Map::new();
    for (key, mut ops) in by_key {
        // A total order, so that equal operations (a replay) sit together and ties are decided the
        // same way everywhere; the value breaks the last tie (two events with one time and uuid).
        ops.sort_by(|a, b| {
            (a.timestamp, a.uuid, a.kind)
                .cmp(&(b.timestamp, b.uuid, b.kind))
                .then_with(|| a.value.to_string().cmp(&b.value.to_string()))
        });
        let mut value: Option<&Value> = None;
        for op in ops {
            match op.kind {
                OpKind::Set => value = Some(&op.value),
                OpKind::Unset => value = None,
                OpKind::SetOnce => {
                    value.get_or_insert(&op.value);
                }
            }
        }
        if let Some(v) = value {
            out.insert(key.to_string(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn ev(minute: i64, properties: Value) -> CapturedEvent {
        let t = datetime!(2026-12-01 10:00 UTC) + time::Duration::minutes(minute);
        CapturedEvent {
            uuid: Uuid::from_u128(minute as u128 + 1),
            project_id: 1,
            event: "$set".into(),
            distinct_id: "u".into(),
            properties: properties.as_object().cloned().unwrap_or_default(),
            timestamp: t,
            received_at: t,
        }
    }

    #[test]
    fn operations_are_read_from_set_set_once_and_unset() {
        let e = ev(0, json!({"$set": {"plan": "pro"}, "$set_once": {"first": "ad"}, "$unset": ["trial"], "x": 1}));
        let ops: Vec<(String, OpKind)> = property_ops(&e).into_iter().map(|o| (o.key, o.kind)).collect();
        assert_eq!(
            ops,
            [("first".into(), OpKind::SetOnce), ("plan".into(), OpKind::Set), ("trial".into(), OpKind::Unset)]
        );
        let e = ev(0, json!({"$unset": {"a": true, "b": null}}));
        assert_eq!(property_ops(&e).len(), 2);
        assert!(property_ops(&ev(0, json!({"$set": "not an object"}))).is_empty());
    }

    #[test]
    fn event_time_decides_not_arrival() {
        let events = [
            ev(0, json!({"$set_once": {"source": "ad"}, "$set": {"plan": "free"}})),
            ev(5, json!({"$set": {"plan": "pro"}, "$set_once": {"source": "newsletter"}})),
            ev(10, json!({"$unset": ["plan"]})),
            ev(15, json!({"$set_once": {"plan": "trial"}})),
            ev(20, json!({"$set": {"seats": 3}})),
            ev(20, json!({"$set": {"seats": 3}})), // a replay
        ];
        let ops: Vec<PropertyOp> = events.iter().flat_map(property_ops).collect();
        let expected = json!({"source": "ad", "plan": "trial", "seats": 3});
        // Every rotation and the reverse of the arrival order give the same properties.
        for r in 0..ops.len() {
            let mut order = ops.clone();
            order.rotate_left(r);
            assert_eq!(Value::Object(fold(&order)), expected, "rotation {r}");
            order.reverse();
            assert_eq!(Value::Object(fold(&order)), expected, "reversed rotation {r}");
        }
    }

    #[test]
    fn a_late_set_once_of_an_earlier_session_wins_over_a_later_one() {
        // The anonymous session's $set_once (earlier in event time) arrives after the merge.
        let user = ev(30, json!({"$set_once": {"landing": "/pricing"}}));
        let anon = ev(1, json!({"$set_once": {"landing": "/blog"}}));
        let props = fold(&[property_ops(&user), property_ops(&anon)].concat());
        assert_eq!(props.get("landing"), Some(&json!("/blog")));
    }

    #[test]
    fn what_posthog_sdks_send_at_the_top_level_reaches_the_fold() {
        use cairn_common::event::{validate_event, ValidationContext};
        let ctx = ValidationContext {
            project_id: 1,
            now: datetime!(2026-12-01 10:00 UTC),
            sent_at: None,
            max_future: time::Duration::hours(23),
        };
        let first = json!({"event": "$identify", "distinct_id": "u", "timestamp": "2026-12-01T09:00:00Z",
            "$set": {"plan": "pro", "seats": 2}, "$set_once": {"source": "ad"}});
        let second = json!({"event": "$set", "distinct_id": "u", "timestamp": "2026-12-01T09:30:00Z",
            "$unset": ["seats"]});
        let ops: Vec<PropertyOp> = [first, second]
            .into_iter()
            .map(|raw| validate_event(None, raw, &ctx).unwrap())
            .flat_map(|e| property_ops(&e))
            .collect();
        assert_eq!(Value::Object(fold(&ops)), json!({"plan": "pro", "source": "ad"}));
    }
}
