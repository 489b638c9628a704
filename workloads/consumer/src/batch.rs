//! A batch of records read from Kafka: the rows to insert, the records to dead-letter, and the
//! offsets to commit once both are durable.

use std::collections::BTreeMap;
use std::time::Instant;

use cairn_common::clickhouse::{ChangeRecord, EventRow};
use sha2::{Digest, Sha256};

/// A record that cannot become a row, with why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
    /// The capture request that brought the record (its `cairn-request-id` header), if known.
    pub request_id: Option<String>,
}

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Default)]
pub struct Batch {
    pub rows: Vec<EventRow>,
    /// Where each row came from (same order as `rows`), for a row ClickHouse refuses.
    pub row_origins: Vec<(String, i32, i64)>,
    /// Bytes of the records in the batch (their payloads), for the batch's byte bound.
    pub bytes: usize,
    pub dead_letters: Vec<DeadLetter>,
    /// Updates and deletions of stored events, in the order they arrived, with where each came
    /// from (partition, offset): applied after `rows` are inserted.
    pub changes: Vec<(ChangeRecord, Origin<'static>)>,
    /// (topic, partition) → (first offset, last offset) seen in this batch.
    ranges: BTreeMap<(String, i32), (i64, i64)>,
    started: Option<Instant>,
    /// The earliest capture time among the rows, for freshness.
    pub oldest_received: Option<time::OffsetDateTime>,
    /// The traces that produced the records (their `traceparent` headers, when spans are
    /// exported), at most [`cairn_common::trace::MAX_LINKS`], for the batch span's links.
    pub links: Vec<cairn_common::trace::SpanContext>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one record: a row when its payload decodes, a dead letter otherwise.
    pub fn push(&mut self, origin: Origin<'_>, key: Option<&[u8]>, payload: Option<&[u8]>) {
        self.started.get_or_insert_with(Instant::now);
        let range =
            self.ranges.entry((origin.topic.to_string(), origin.partition)).or_insert((origin.offset, origin.offset));
        range.0 = range.0.min(origin.offset);
        range.1 = range.1.max(origin.offset);
        self.bytes += payload.map_or(0, <[u8]>::len) + key.map_or(0, <[u8]>::len);
        match decode(payload) {
            Ok(Record::Change(change)) => {
                let origin = Origin { topic: "", partition: origin.partition, offset: origin.offset };
                self.changes.push((*change, origin));
            }
            Ok(Record::Event(row)) => {
                self.oldest_received = Some(match self.oldest_received {
                    Some(t) if t <= row.received_at => t,
                    _ => row.received_at,
                });
                self.rows.push(row);
                self.row_origins.push((origin.topic.to_string(), origin.partition, origin.offset));
            }
            Err(reason) => self.dead_letters.push(DeadLetter {
                topic: origin.topic.to_string(),
                partition: origin.partition,
                offset: origin.offset,
                key: key.map(<[u8]>::to_vec),
                payload: payload.map(<[u8]>::to_vec),
                reason,
                request_id: None,
            }),
        }
    }

    /// Remembers the trace a record came from (consecutive records of one request share it).
    pub fn link(&mut self, traceparent: Option<&[u8]>) {
        if self.links.len() >= cairn_common::trace::MAX_LINKS {
            return;
        }
        if let Some(sc) = traceparent.and_then(cairn_common::trace::span_context_of) {
            if self.links.last() != Some(&sc) {
                self.links.push(sc);
            }
        }
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.rows.len() + self.dead_letters.len() + self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the first record arrived.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// The offsets to commit: for each partition, one past the last record.
    pub fn commit_offsets(&self) -> Vec<(String, i32, i64)> {
        self.ranges.iter().map(|((t, p), (_, last))| (t.clone(), *p, last + 1)).collect()
    }

    /// A token naming exactly this batch's records, sent as ClickHouse's
    /// `insert_deduplication_token`: a retry of the same insert is then dropped by ClickHouse.
    /// It covers the offsets and the rows' uuids: offsets alone repeat when a topic is deleted and
    /// created again (they restart at 0), and ClickHouse would then drop a new batch as a retry
    /// of an old one that it still remembers.
    pub fn dedup_token(&self) -> String {
        let mut h = Sha256::new();
        for ((t, p), (first, last)) in &self.ranges {
            h.update(format!("{t}/{p}/{first}-{last};").as_bytes());
        }
        let mut uuids: Vec<[u8; 16]> = self.rows.iter().map(|r| r.uuid.into_bytes()).collect();
        uuids.sort_unstable();
        for u in &uuids {
            h.update(u);
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// What a record of the events topic holds.
enum Record {
    Event(EventRow),
    Change(Box<ChangeRecord>),
}

fn decode(payload: Option<&[u8]>) -> Result<Record, String> {
    let payload = payload.ok_or_else(|| "the record has no value".to_string())?;
    match EventRow::from_record(payload) {
        Ok(row) => Ok(Record::Event(row)),
        Err(e) => {
            // Not an event: a change says so with its `op` (looked at only off the hot path).
            #[derive(serde::Deserialize)]
            struct Probe {
                op: Option<serde::de::IgnoredAny>,
            }
            match serde_json::from_slice::<Probe>(payload) {
                Ok(Probe { op: Some(_) }) => {
                    ChangeRecord::from_record(payload).map(|c| Record::Change(Box::new(c))).map_err(|e| e.to_string())
                }
                _ => Err(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_json(uuid: &str) -> Vec<u8> {
        format!(
            r#"{{"uuid":"{uuid}","project_id":1,"event":"e","distinct_id":"d","properties":{{}},"timestamp":"2026-01-01T00:00:00.5Z","received_at":"2026-01-01T00:00:01Z"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn rows_dead_letters_offsets_and_token() {
        let mut b = Batch::new();
        assert!(b.is_empty());
        b.push(
            Origin { topic: "t", partition: 0, offset: 5 },
            Some(b"k"),
            Some(&event_json("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b")),
        );
        b.push(Origin { topic: "t", partition: 0, offset: 6 }, None, Some(b"not json"));
        b.push(Origin { topic: "t", partition: 2, offset: 9 }, None, None);
        assert_eq!(b.rows.len(), 1);
        assert_eq!(b.dead_letters.len(), 2);
        assert!(b.dead_letters[0].reason.contains("not a Cairn event"));
        assert_eq!(b.len(), 3);
        assert_eq!(b.commit_offsets(), vec![("t".to_string(), 0, 7), ("t".to_string(), 2, 10)]);
        assert_eq!(b.rows[0].timestamp.millisecond(), 500);

        let mut same = Batch::new();
        same.push(Origin { topic: "t", partition: 2, offset: 9 }, None, None);
        same.push(Origin { topic: "t", partition: 0, offset: 6 }, None, Some(b"not json"));
        same.push(
            Origin { topic: "t", partition: 0, offset: 5 },
            Some(b"k"),
            Some(&event_json("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b")),
        );
        assert_eq!(same.dedup_token(), b.dedup_token(), "the token depends on the records, not their order");
        let mut other = Batch::new();
        other.push(Origin { topic: "t", partition: 0, offset: 5 }, None, None);
        assert_ne!(other.dedup_token(), b.dedup_token());
        // A topic created again: the same offsets, other events.
        let mut recreated = Batch::new();
        recreated.push(
            Origin { topic: "t", partition: 0, offset: 5 },
            Some(b"k"),
            Some(&event_json("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7c")),
        );
        recreated.push(Origin { topic: "t", partition: 0, offset: 6 }, None, Some(b"not json"));
        recreated.push(Origin { topic: "t", partition: 2, offset: 9 }, None, None);
        assert_ne!(recreated.dedup_token(), b.dedup_token(), "offsets alone do not name a batch");
    }

    #[test]
    fn changes_are_told_from_events_and_from_garbage() {
        let mut b = Batch::new();
        let change = br#"{"op":"delete","change_id":"0192f3c4-0000-7000-8000-000000000001","uuid":"0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b","project_id":1,"distinct_id":"d","requested_at":"2026-01-01T00:00:00Z"}"#;
        b.push(Origin { topic: "t", partition: 3, offset: 7 }, Some(b"1:d"), Some(change));
        let bad_change = br#"{"op":"delete","change_id":"0192f3c4-0000-7000-8000-000000000002","uuid":"0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b","project_id":1,"distinct_id":"","requested_at":"2026-01-01T00:00:00Z"}"#;
        b.push(Origin { topic: "t", partition: 3, offset: 8 }, None, Some(bad_change));
        assert_eq!(b.changes.len(), 1);
        assert_eq!((b.changes[0].1.partition, b.changes[0].1.offset), (3, 7));
        assert_eq!(b.dead_letters.len(), 1);
        assert!(b.dead_letters[0].reason.contains("change has an empty distinct_id"), "{}", b.dead_letters[0].reason);
        assert_eq!(b.len(), 2);
        assert_eq!(b.commit_offsets(), vec![("t".to_string(), 3, 9)]);
    }
}
