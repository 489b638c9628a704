//! The data path's heartbeat: every Deployment can be Ready while no event reaches ClickHouse (a
//! consumer scaled to 0, ClickHouse refusing inserts, a topic nobody reads). So the operator sends
//! a synthetic event through capture, as any client does, and looks for it in ClickHouse:
//!
//! - Every `CAIRN_OPERATOR_HEARTBEAT_SECS` (30) it POSTs a `$cairn_heartbeat` event, timestamped
//!   with the send time, to the platform's capture Service with the platform's heartbeat key
//!   (generated with its credentials; capture maps it to the internal project
//!   [`HEARTBEAT_PROJECT_ID`], which no user can own, so no analysis counts it).
//! - Before each send it reads the newest heartbeat of this platform from the events table:
//!   `freshnessSeconds` is the time the newest one sent took to arrive when it has, else the time
//!   since the newest one that did arrive was sent (until one arrives: since the first send).
//!   Above `CAIRN_OPERATOR_FRESHNESS_THRESHOLD_SECS` (120) the `DataPathHealthy` condition turns
//!   False and the platform Degraded.
//!
//! [`assess`] is pure and unit-tested; the calls are below it.

use std::time::Duration;

use cairn_common::event::{HEARTBEAT_EVENT, HEARTBEAT_PROJECT_ID};
use clickhouse::Client;
use serde_json::json;

/// The key of the platform's generated credentials that capture accepts for heartbeats.
pub const KEY: &str = "heartbeat-key";

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Unix milliseconds as RFC 3339 (how the status keeps heartbeat times).
pub fn format_ms(ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
}

/// RFC 3339 as Unix milliseconds.
pub fn parse_ms(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The heartbeat events of one platform carry this distinct id.
pub fn distinct_id(platform_uid: &str) -> String {
    format!("cairn-operator:{platform_uid}")
}

/// What is known of the heartbeats (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// The first send (of this operator's record of the platform).
    pub first_sent: Option<i64>,
    /// The send time of the newest heartbeat sent before this look (not the one about to go).
    pub last_sent: Option<i64>,
    /// The send time of the newest heartbeat found in ClickHouse.
    pub last_arrived: Option<i64>,
    /// How long that one took from its send to being stored (ms).
    pub latency_ms: Option<i64>,
}

impl Seen {
    /// How far behind the data path is, in seconds: when the newest heartbeat sent has arrived,
    /// the time it took; else the time since the newest one that did arrive was sent (until one
    /// arrives: since the first send).
    pub fn freshness_seconds(&self, now: i64) -> Option<i64> {
        match (self.last_arrived, self.last_sent) {
            (Some(arrived), Some(sent)) if arrived >= sent => {
                Some(self.latency_ms.map(|l| (l.max(0) + 999) / 1000).unwrap_or(0))
            }
            (Some(arrived), _) => Some(((now - arrived) / 1000).max(0)),
            (None, _) => self.first_sent.map(|t| ((now - t) / 1000).max(0)),
        }
    }
}

/// The verdict on the data path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub freshness_seconds: Option<i64>,
    /// Some(true) healthy, Some(false) not, None not known yet (waiting for the first heartbeat).
    pub healthy: Option<bool>,
    pub reason: &'static str,
    pub message: String,
}

fn ago(seconds: i64) -> String {
    if seconds >= 120 {
        format!("{}m{}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// Judges the data path at `now` (Unix ms). `send_error`: why the last heartbeat could not be
/// sent, if it could not; `read_error`: why ClickHouse could not be asked.
pub fn assess(
    now: i64,
    seen: Seen,
    threshold: Duration,
    send_error: Option<&str>,
    read_error: Option<&str>,
) -> Assessment {
    let threshold_s = i64::try_from(threshold.as_secs()).unwrap_or(i64::MAX);
    let freshness_seconds = seen.freshness_seconds(now);
    let stale = freshness_seconds.is_some_and(|f| f > threshold_s);
    let mut cause = String::new();
    if let Some(e) = send_error {
        cause.push_str(&format!("; capture did not take the last heartbeat: {e}"));
    }
    if let Some(e) = read_error {
        cause.push_str(&format!("; cannot read heartbeats from ClickHouse: {e}"));
    }
    match (seen.last_arrived, freshness_seconds) {
        (_, None) => Assessment {
            freshness_seconds,
            healthy: None,
            reason: "NoHeartbeatYet",
            message: format!("no heartbeat sent yet{cause}"),
        },
        (None, Some(f)) if !stale => Assessment {
            freshness_seconds,
            healthy: None,
            reason: "WaitingForFirstHeartbeat",
            message: format!("the first heartbeat was sent {} ago and has not reached ClickHouse yet{cause}", ago(f)),
        },
        (arrived, Some(f)) if stale => Assessment {
            freshness_seconds,
            healthy: Some(false),
            reason: if send_error.is_some() { "CaptureRefusedHeartbeat" } else { "EventsNotArriving" },
            message: match arrived {
                Some(_) => format!(
                    "the newest event in ClickHouse that passed through capture was sent {} ago (threshold {}): \
                     events are not arriving{cause}",
                    ago(f),
                    ago(threshold_s)
                ),
                None => format!(
                    "no heartbeat has reached ClickHouse since the first was sent {} ago (threshold {}){cause}",
                    ago(f),
                    ago(threshold_s)
                ),
            },
        },
        (_, Some(f)) => Assessment {
            freshness_seconds,
            healthy: Some(true),
            reason: "EventsArriving",
            message: match (seen.last_arrived, seen.latency_ms) {
                (Some(a), Some(l)) if seen.last_sent.is_some_and(|s| a >= s) => {
                    format!("the newest heartbeat reached ClickHouse {l} ms after it was sent{cause}")
                }
                _ => format!("a heartbeat sent {} ago is the newest in ClickHouse{cause}", ago(f)),
            },
        },
    }
}

/// Sends one heartbeat through capture (`base`: its Service URL); Ok once capture acknowledged
/// it (which it does after Kafka did).
pub async fn send(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    platform_uid: &str,
    sent_ms: i64,
) -> Result<(), String> {
    let timestamp = format_ms(sent_ms).ok_or_else(|| "the clock is out of range".to_string())?;
    let body = json!({
        "api_key": key,
        "event": HEARTBEAT_EVENT,
        "distinct_id": distinct_id(platform_uid),
        "timestamp": timestamp,
        "properties": {"$lib": "cairn-operator"},
    });
    let response = http.post(format!("{base}/capture")).json(&body).send().await.map_err(|e| {
        // reqwest's own sentence is generic ("error sending request"); the cause says which.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let url = response.url().to_string();
    let server = response
        .headers()
        .get(reqwest::header::SERVER)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" (server {v})"))
        .unwrap_or_default();
    let text = response.text().await.unwrap_or_default();
    Err(format!("HTTP {} from {url}{server}: {}", status.as_u16(), text.chars().take(300).collect::<String>()))
}

/// The newest heartbeat of this platform in the events table: when it was sent and when
/// ClickHouse stored it (`ingested_at`), in Unix ms.
pub async fn newest_arrived(ch: &Client, platform_uid: &str) -> Result<Option<(i64, i64)>, clickhouse::error::Error> {
    let (count, sent, stored): (u64, i64, i64) = ch
        .query(
            "SELECT count(), toInt64(toUnixTimestamp64Milli(max(timestamp))), \
             toInt64(toUnixTimestamp64Milli(argMax(ingested_at, timestamp))) FROM events \
             WHERE project_id = ? AND event = ? AND distinct_id = ? AND timestamp > now64(3) - INTERVAL 7 DAY",
        )
        .bind(HEARTBEAT_PROJECT_ID)
        .bind(HEARTBEAT_EVENT)
        .bind(distinct_id(platform_uid))
        .fetch_one()
        .await?;
    Ok((count > 0).then_some((sent, stored)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(120);

    fn seen(first: i64, sent: i64, arrived: Option<i64>, latency: Option<i64>) -> Seen {
        Seen { first_sent: Some(first), last_sent: Some(sent), last_arrived: arrived, latency_ms: latency }
    }

    #[test]
    fn fresh_while_heartbeats_arrive() {
        // The newest one sent has arrived, 520 ms after it was sent: the path is 1 s behind.
        let a = assess(100_000, seen(0, 70_000, Some(70_000), Some(520)), T, None, None);
        assert_eq!((a.healthy, a.freshness_seconds, a.reason), (Some(true), Some(1), "EventsArriving"));
        assert!(a.message.contains("520 ms"), "{}", a.message);
        // The newest is still on its way: behind by the time since the last that arrived.
        let a = assess(100_000, seen(0, 70_000, Some(40_000), Some(520)), T, None, None);
        assert_eq!((a.healthy, a.freshness_seconds), (Some(true), Some(60)));
    }

    #[test]
    fn stale_past_the_threshold_whatever_the_deployments_say() {
        let a = assess(400_000, seen(0, 370_000, Some(250_000), Some(500)), T, None, None);
        assert_eq!((a.healthy, a.freshness_seconds, a.reason), (Some(false), Some(150), "EventsNotArriving"));
        assert!(a.message.contains("2m30s ago"), "{}", a.message);
        // Capture refusing is named as the cause.
        let a = assess(400_000, seen(0, 370_000, Some(250_000), Some(500)), T, Some("HTTP 503"), None);
        assert_eq!(a.reason, "CaptureRefusedHeartbeat");
        assert!(a.message.contains("HTTP 503"));
    }

    #[test]
    fn the_first_heartbeat_gets_the_threshold_to_arrive() {
        let a = assess(0, Seen::default(), T, None, None);
        assert_eq!((a.healthy, a.freshness_seconds), (None, None));
        let a = assess(60_000, seen(0, 30_000, None, None), T, None, None);
        assert_eq!((a.healthy, a.freshness_seconds, a.reason), (None, Some(60), "WaitingForFirstHeartbeat"));
        let a = assess(180_000, seen(0, 150_000, None, None), T, None, None);
        assert_eq!((a.healthy, a.freshness_seconds), (Some(false), Some(180)));
        assert!(a.message.contains("no heartbeat has reached ClickHouse"), "{}", a.message);
    }
}
