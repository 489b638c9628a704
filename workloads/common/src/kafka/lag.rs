//! A consumer group's backlog on a topic, read from Kafka alone (no metrics pipeline): per
//! partition the log end minus the group's committed offset (or the log start, where the group
//! has committed nothing: Cairn's consumer starts from the earliest record), and the time of the
//! oldest record not consumed yet. What the operator scales the consumer by and guards
//! retention with.
//!
//! Reading the group's committed offsets does not join the group, and the oldest records are
//! fetched by a consumer that assigns partitions itself and never commits: the group's members
//! and offsets are untouched.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::client_config;
use super::topics::TopicError;
use crate::config::KafkaConfig;

/// One partition's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// The group's committed offset, if it committed one.
    pub committed: Option<i64>,
    /// The log's first and next offsets.
    pub low: i64,
    pub high: i64,
}

impl PartitionLag {
    /// Where the group resumes: its committed offset, or the log start (also when retention
    /// deleted records past the committed offset: those are gone).
    pub fn next(&self) -> i64 {
        self.committed.unwrap_or(self.low).max(self.low)
    }

    /// Records not consumed yet.
    pub fn records(&self) -> i64 {
        (self.high - self.next()).max(0)
    }
}

/// The group's backlog on the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    pub partitions: Vec<PartitionLag>,
    /// Records not consumed yet, over every partition.
    pub records: i64,
    /// The timestamp (ms since the epoch) of the oldest record not consumed yet, when there is
    /// a backlog and its first records could be read in time.
    pub oldest_timestamp_ms: Option<i64>,
}

/// Reads `group`'s backlog on `topic`, within about `timeout`.
pub async fn group_lag(cfg: &KafkaConfig, topic: &str, group: &str, timeout: Duration) -> Result<GroupLag, TopicError> {
    let (cfg, topic, group) = (cfg.clone(), topic.to_string(), group.to_string());
    tokio::task::spawn_blocking(move || read(&cfg, &topic, &group, timeout))
        .await
        .map_err(|e| TopicError::Unreachable(format!("the lag reader stopped: {e}")))?
}

fn unreachable(e: impl std::fmt::Display) -> TopicError {
    TopicError::Unreachable(e.to_string())
}

fn read(cfg: &KafkaConfig, topic: &str, group: &str, timeout: Duration) -> Result<GroupLag, TopicError> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    let consumer: BaseConsumer = client_config(cfg)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(unreachable)?;
    let metadata = consumer.fetch_metadata(Some(topic), left()).map_err(unreachable)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(TopicError::Refused {
            action: "reading the lag",
            topic: topic.into(),
            detail: "no such topic".into(),
        });
    }
    let mut wanted = TopicPartitionList::new();
    for p in &partitions {
        wanted.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(wanted, left()).map_err(unreachable)?;
    let mut out = Vec::with_capacity(partitions.len());
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, left()).map_err(unreachable)?;
        let committed = match committed.find_partition(topic, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        out.push(PartitionLag { partition: *p, committed, low, high });
    }
    let records = out.iter().map(PartitionLag::records).sum();
    let oldest_timestamp_ms = if records > 0 { oldest(&consumer, topic, &out, deadline) } else { None };
    Ok(GroupLag { partitions: out, records, oldest_timestamp_ms })
}

/// The earliest timestamp among the first unconsumed record of each partition with a backlog
/// (records of one partition are in order, so the first is the oldest there); None unless every
/// such partition was read before the deadline.
fn oldest(consumer: &BaseConsumer, topic: &str, lags: &[PartitionLag], deadline: Instant) -> Option<i64> {
    let mut assignment = TopicPartitionList::new();
    let mut pending = std::collections::HashSet::new();
    for l in lags.iter().filter(|l| l.records() > 0) {
        assignment.add_partition_offset(topic, l.partition, Offset::Offset(l.next())).ok()?;
        pending.insert(l.partition);
    }
    consumer.assign(&assignment).ok()?;
    let mut first: Option<i64> = None;
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(left.min(Duration::from_millis(200))) {
            if pending.remove(&m.partition()) {
                if let Some(ts) = m.timestamp().to_millis() {
                    first = Some(first.map_or(ts, |f| f.min(ts)));
                }
                // One record per partition is enough: stop reading it.
                let mut done = TopicPartitionList::new();
                done.add_partition(topic, m.partition());
                let _ = consumer.pause(&done);
            }
        }
    }
    let _ = consumer.unassign();
    // A partition not read in time may hold an older record: no answer rather than a wrong one.
    if pending.is_empty() {
        first
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_resumes_at_its_commit_or_the_log_start() {
        let p = |committed, low, high| PartitionLag { partition: 0, committed, low, high };
        assert_eq!(p(None, 0, 100).records(), 100, "nothing committed: from the earliest");
        assert_eq!(p(Some(40), 0, 100).records(), 60);
        assert_eq!(p(Some(100), 0, 100).records(), 0);
        assert_eq!(p(Some(10), 50, 100).records(), 50, "deleted by retention: from the log start");
        assert_eq!(p(None, 100, 100).records(), 0);
    }
}
