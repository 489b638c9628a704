//! Updates and deletions of stored events: the batch's changes, applied in the order Kafka gave
//! them to the version each event has (from `event_changes`, from this batch's own captures, or
//! from `events`), become the events' new versions, appended to `event_changes`.
//!
//! One version per event and batch is written (the last): versions in between were never read.
//! The version records the change that made it, so a batch delivered again after a crash skips
//! what it applied before, and an older change never overwrites a newer one
//! ([`ChangeRow::apply`]).

use std::collections::{BTreeMap, HashMap};

use cairn_common::clickhouse::{ChangeRecord, ChangeRow, EventRow, EVENTS_TABLE, EVENT_CHANGES_TABLE};
use clickhouse::Client;
use uuid::Uuid;

use crate::batch::Origin;

/// Events looked up per statement.
const LOOKUP_CHUNK: usize = 1_000;

/// The new versions of a batch's changes, and the changes that made none.
#[derive(Debug, Default, PartialEq)]
pub struct Versions {
    pub rows: Vec<ChangeRow>,
    /// (uuid, why): `unknown_event` (no such event: never captured, or deleted with its person or
    /// project), `already_applied` (a redelivery), `deleted` (a change after a deletion).
    pub skipped: Vec<(Uuid, &'static str)>,
}

/// Applies `changes` in order to `current` (keyed by project and uuid).
pub fn fold(mut current: HashMap<(u64, Uuid), ChangeRow>, changes: &[(ChangeRecord, Origin<'static>)]) -> Versions {
    // (Where a change came from no longer decides anything: its id and time do.)
    let mut out = Versions::default();
    // The events changed, in the order first changed (a stable insert order).
    let mut touched: Vec<(u64, Uuid)> = Vec::new();
    let mut seen: std::collections::HashSet<(u64, Uuid)> = std::collections::HashSet::new();
    for (change, _origin) in changes {
        let key = (change.project_id, change.uuid);
        let Some(state) = current.get(&key) else {
            out.skipped.push((change.uuid, "unknown_event"));
            continue;
        };
        match state.apply(change) {
            Ok(next) => {
                if seen.insert(key) {
                    touched.push(key);
                }
                current.insert(key, next);
            }
            Err(skip) => out.skipped.push((change.uuid, skip.reason())),
        }
    }
    out.rows = touched.into_iter().filter_map(|k| current.remove(&k)).collect();
    out
}

/// The new versions of `changes`: reads the versions they apply to, then [`fold`]s.
pub async fn versions(
    client: &Client,
    created: &[EventRow],
    changes: &[(ChangeRecord, Origin<'static>)],
) -> Result<Versions, clickhouse::error::Error> {
    let mut wanted: BTreeMap<u64, Vec<Uuid>> = BTreeMap::new();
    for (c, _) in changes {
        wanted.entry(c.project_id).or_default().push(c.uuid);
    }
    let created_here: HashMap<(u64, Uuid), &EventRow> = created.iter().map(|r| ((r.project_id, r.uuid), r)).collect();
    let mut current: HashMap<(u64, Uuid), ChangeRow> = HashMap::new();
    for (project, mut ids) in wanted {
        ids.sort_unstable();
        ids.dedup();
        // Bounded statements: a batch may change thousands of events of one project, and a
        // statement's text has a size limit (max_query_size).
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            // Changed before: the latest version.
            let strings: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
            let changed: Vec<ChangeRow> = client
                .query(&format!("SELECT ?fields FROM {EVENT_CHANGES_TABLE} FINAL WHERE project_id = ? AND uuid IN ?"))
                .bind(project)
                .bind(&strings)
                .fetch_all()
                .await?;
            for row in changed {
                current.insert((project, row.uuid), row);
            }
            // Never changed: the capture, from this batch or from `events`.
            let mut missing = Vec::new();
            for id in chunk {
                if current.contains_key(&(project, *id)) {
                    continue;
                }
                match created_here.get(&(project, *id)) {
                    Some(row) => {
                        current.insert((project, *id), ChangeRow::from(*row));
                    }
                    None => missing.push(id.to_string()),
                }
            }
            if !missing.is_empty() {
                // Without FINAL: copies of one event (a redelivery) are identical; the
                // `events_uuid` bloom filter index finds the granules.
                let stored: Vec<EventRow> = client
                    .query(&format!("SELECT ?fields FROM {EVENTS_TABLE} WHERE project_id = ? AND uuid IN ?"))
                    .bind(project)
                    .bind(&missing)
                    .fetch_all()
                    .await?;
                for row in &stored {
                    current.insert((project, row.uuid), ChangeRow::from(row));
                }
            }
        }
    }
    Ok(fold(current, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(uuid: Uuid, name: &str) -> EventRow {
        let e: cairn_common::event::CapturedEvent = serde_json::from_value(json!({
            "uuid": uuid, "project_id": 1, "event": name, "distinct_id": "d",
            "properties": {}, "timestamp": "2026-01-01T00:00:00Z", "received_at": "2026-01-01T00:00:01Z"
        }))
        .unwrap();
        EventRow::from(e)
    }

    fn change(uuid: Uuid, op: &str, set: serde_json::Value, offset: i64) -> (ChangeRecord, Origin<'static>) {
        // Requested one second apart, in offset order.
        let requested = time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_000 + offset);
        let c = ChangeRecord::from_record(
            &serde_json::to_vec(&json!({"op": op, "change_id": Uuid::now_v7(), "uuid": uuid, "project_id": 1,
                "distinct_id": "d", "set": set,
                "requested_at": requested.format(&time::format_description::well_known::Rfc3339).unwrap()}))
            .unwrap(),
        )
        .unwrap();
        (c, Origin { topic: "", partition: 0, offset })
    }

    #[test]
    fn a_batch_writes_each_events_last_version_once() {
        let (a, b, gone) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let current: HashMap<_, _> =
            [(1, a), (1, b)].into_iter().map(|k| (k, ChangeRow::from(&event(k.1, "e")))).collect();
        let changes = vec![
            change(a, "update", json!({"event": "one"}), 10),
            change(b, "delete", json!({}), 11),
            change(a, "update", json!({"event": "two"}), 12),
            change(gone, "delete", json!({}), 13),
            change(b, "update", json!({"event": "late"}), 14),
        ];
        let v = fold(current.clone(), &changes);
        assert_eq!(v.rows.len(), 2);
        assert_eq!(
            (v.rows[0].uuid, v.rows[0].version, v.rows[0].event.as_str(), v.rows[0].change_id),
            (a, 2, "two", changes[2].0.change_id)
        );
        assert_eq!((v.rows[1].uuid, v.rows[1].version, v.rows[1].deleted), (b, 1, 1));
        assert_eq!(v.skipped, vec![(gone, "unknown_event"), (b, "deleted")]);

        // The same batch again, over what it stored: nothing new.
        let stored: HashMap<_, _> = v.rows.iter().map(|r| ((1, r.uuid), r.clone())).collect();
        let again = fold(stored, &changes);
        assert!(again.rows.is_empty(), "{again:?}");
    }
}
