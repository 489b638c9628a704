//! ClickHouse's disks: what keeps them from filling, and what the operator reads of them.
//!
//! - ClickHouse's own logs (`system.query_log`, `trace_log`, `part_log`, `metric_log`, … and the
//!   copies a server upgrade leaves behind, `query_log_0`, `query_log_1`, …) grow without end by
//!   default; on a busy server they outgrow the events. The operator gives every such table a TTL
//!   (`clickhouse.systemLogTtlDays`, default 7), table by table, changing only those that differ.
//!   A server that refuses (an account without ALTER on `system`) is reported, not a failure.
//! - Free space comes from `system.disks` (for a managed ClickHouse: its volume); below
//!   `clickhouse.minFreeDiskPercent` (default 10) the platform reports `DiskPressure` and
//!   backfills wait.
//! - The events' TTL is verified after it is applied: the table definitions carry it, and no
//!   stored event is much older than it (TTL is enforced by merges; a day of slack is allowed).

use clickhouse::Client;
use serde::Deserialize;

use crate::crd::DiskStatus;

/// Days of ClickHouse's own logs kept when the spec does not say.
pub const DEFAULT_SYSTEM_LOG_TTL_DAYS: u32 = 7;
/// Free share of a disk below which the platform is under disk pressure, when the spec does not say.
pub const DEFAULT_MIN_FREE_DISK_PERCENT: u32 = 10;

/// The system log tables: MergeTree tables of `system` named `…_log` or `…_log_<n>` that have an
/// `event_date` column.
const SYSTEM_LOGS: &str = "SELECT t.name, t.create_table_query FROM system.tables AS t \
     WHERE t.database = 'system' AND t.engine LIKE '%MergeTree' AND match(t.name, '_log(_[0-9]+){0,1}$') \
     AND t.name IN (SELECT table FROM system.columns WHERE database = 'system' AND name = 'event_date' AND type = 'Date') \
     ORDER BY t.name";

#[derive(Debug, Deserialize, clickhouse::Row)]
struct TableDef {
    name: String,
    create_table_query: String,
}

/// What [`system_log_ttls`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemLogs {
    /// Tables that carry the TTL now.
    pub with_ttl: Vec<String>,
    /// Tables the server would not change, with its answer.
    pub refused: Vec<(String, String)>,
}

impl SystemLogs {
    pub fn summary(&self, days: u32) -> String {
        let mut s = format!("{} system log tables keep {days} days", self.with_ttl.len());
        if !self.refused.is_empty() {
            let names: Vec<&str> = self.refused.iter().map(|(n, _)| n.as_str()).collect();
            s.push_str(&format!(
                "; ClickHouse refused the TTL on {} ({})",
                names.join(", "),
                self.refused[0].1.chars().take(200).collect::<String>()
            ));
        }
        s
    }
}

/// Whether a table definition carries `TTL event_date + toIntervalDay(days)` (how ClickHouse
/// prints both `INTERVAL n DAY` from its configuration and the operator's own).
pub fn has_log_ttl(create_table_query: &str, days: u32) -> bool {
    create_table_query.contains(&format!("TTL event_date + toIntervalDay({days})"))
}

/// Gives every system log table a TTL of `days` days (on a cluster, on every node: the tables
/// are those of the node `ch` reaches, which every node has alike).
pub async fn system_log_ttls(
    ch: &Client,
    topology: &cairn_common::clickhouse::Topology,
    days: u32,
) -> Result<SystemLogs, clickhouse::error::Error> {
    let tables: Vec<TableDef> = ch.query(SYSTEM_LOGS).fetch_all().await?;
    let mut out = SystemLogs::default();
    for t in tables {
        if has_log_ttl(&t.create_table_query, days) {
            out.with_ttl.push(t.name);
            continue;
        }
        // The name comes from system.tables and matched `[a-z_0-9]+_log(_n)?`; quoted all the same.
        let sql = format!(
            "ALTER TABLE system.{}{} MODIFY TTL event_date + toIntervalDay({days})",
            cairn_common::clickhouse::quote_identifier(&t.name),
            topology.on_cluster()
        );
        match ch.query(&sql).execute().await {
            Ok(()) => {
                tracing::info!(table = %t.name, days, "set a TTL on a ClickHouse system log");
                out.with_ttl.push(t.name);
            }
            Err(e) => out.refused.push((t.name, e.to_string())),
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct DiskRow {
    name: String,
    free_space: u64,
    total_space: u64,
}

/// The server's disks (those with a known size: object storage reports none); on a cluster,
/// every node's, named `<host>:<disk>`.
pub async fn disks(
    ch: &Client,
    topology: &cairn_common::clickhouse::Topology,
) -> Result<Vec<DiskStatus>, clickhouse::error::Error> {
    let name = match topology {
        cairn_common::clickhouse::Topology::Single => "name",
        cairn_common::clickhouse::Topology::Cluster(_) => "concat(hostName(), ':', name)",
    };
    let rows: Vec<DiskRow> = ch
        .query(&format!(
            "SELECT {name} AS name, free_space, total_space FROM {} ORDER BY name",
            topology.system_table("disks")
        ))
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .filter(|d| d.total_space > 0)
        .map(|d| DiskStatus { name: d.name, free_bytes: d.free_space, total_bytes: d.total_space })
        .collect())
}

/// The least free share of any disk, in percent.
pub fn least_free_percent(disks: &[DiskStatus]) -> Option<f64> {
    disks
        .iter()
        .map(|d| d.free_bytes as f64 * 100.0 / d.total_bytes.max(1) as f64)
        .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// `Some(message)` when a disk has less than `min_free_percent` free.
pub fn pressure(disks: &[DiskStatus], min_free_percent: u32) -> Option<String> {
    let low: Vec<String> = disks
        .iter()
        .filter(|d| (d.free_bytes as f64) * 100.0 < f64::from(min_free_percent) * d.total_bytes as f64)
        .map(|d| {
            format!(
                "disk {} has {} free of {} ({:.1}%)",
                d.name,
                gib(d.free_bytes),
                gib(d.total_bytes),
                d.free_bytes as f64 * 100.0 / d.total_bytes.max(1) as f64
            )
        })
        .collect();
    (!low.is_empty()).then(|| {
        format!(
            "ClickHouse {}, below {min_free_percent}% (clickhouse.minFreeDiskPercent): backfills wait; \
             grow the volume, shorten eventTtlDays or systemLogTtlDays",
            low.join("; ")
        )
    })
}

/// Verifies the events' TTL: the table carries it, and the oldest stored event is not older
/// than the TTL plus a day. Returns the sentence for the status and whether it holds.
pub async fn verify_event_ttl(ch: &Client, days: u32) -> Result<(String, bool), clickhouse::error::Error> {
    let create: String = ch
        .query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'events'")
        .fetch_one()
        .await?;
    // min() of the partition key is answered from the parts' min/max index, not a scan.
    let (rows, oldest): (u64, i64) =
        ch.query("SELECT count(), toInt64(toUnixTimestamp(min(timestamp))) FROM events").fetch_one().await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let oldest_days = if rows == 0 { None } else { Some((now - oldest).max(0) / 86_400) };
    Ok(assess_event_ttl(&create, days, oldest_days))
}

/// [`verify_event_ttl`]'s judgement: `oldest_days`, the age of the oldest event (None: empty).
pub fn assess_event_ttl(create_table_query: &str, days: u32, oldest_days: Option<i64>) -> (String, bool) {
    let has_ttl = create_table_query.contains(" TTL ");
    let oldest = oldest_days.map(|d| format!("; oldest event {d} days old")).unwrap_or_default();
    if days == 0 {
        return if has_ttl {
            ("eventTtlDays is 0 but the events table still has a TTL".into(), false)
        } else {
            (format!("events kept forever (eventTtlDays 0){oldest}"), true)
        };
    }
    if !create_table_query.contains(&format!("toIntervalDay({days})")) {
        return (format!("the events table does not carry the TTL of {days} days"), false);
    }
    match oldest_days {
        Some(d) if d > i64::from(days) + 1 => (
            format!(
                "TTL {days} days set, but the oldest event is {d} days old: ClickHouse has not removed it yet \
                 (TTL runs in merges; see merge_with_ttl_timeout)"
            ),
            false,
        ),
        _ => (format!("TTL {days} days, verified{oldest}"), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(free: u64, total: u64) -> DiskStatus {
        DiskStatus { name: "default".into(), free_bytes: free, total_bytes: total }
    }

    #[test]
    fn pressure_below_the_threshold_only() {
        let g = 1u64 << 30;
        assert_eq!(pressure(&[disk(50 * g, 100 * g)], 10), None);
        assert_eq!(pressure(&[disk(10 * g, 100 * g)], 10), None, "at the threshold is not below it");
        let m =
            pressure(&[disk(50 * g, 100 * g), DiskStatus { name: "cold".into(), ..disk(9 * g, 100 * g) }], 10).unwrap();
        assert!(m.contains("disk cold has 9.0 GiB free of 100.0 GiB (9.0%)"), "{m}");
        assert_eq!(pressure(&[disk(0, 100 * g)], 0), None, "0 turns it off");
        assert_eq!(least_free_percent(&[disk(50 * g, 100 * g), disk(9 * g, 100 * g)]).map(|p| p.round()), Some(9.0));
    }

    #[test]
    fn log_ttls_are_recognised_as_clickhouse_prints_them() {
        let q = "CREATE TABLE system.query_log (`event_date` Date) ENGINE = MergeTree ORDER BY event_date \
                 TTL event_date + toIntervalDay(7) SETTINGS index_granularity = 8192";
        assert!(has_log_ttl(q, 7));
        assert!(!has_log_ttl(q, 30));
    }

    #[test]
    fn the_event_ttl_is_judged_by_the_definition_and_the_data() {
        let with = "CREATE TABLE cairn.events (...) TTL toDateTime(timestamp) + toIntervalDay(30) SETTINGS x = 1";
        assert!(assess_event_ttl(with, 30, Some(12)).1);
        assert!(assess_event_ttl(with, 30, None).1);
        assert!(assess_event_ttl(with, 30, Some(31)).1, "a day of slack for merges");
        let (m, ok) = assess_event_ttl(with, 30, Some(45));
        assert!(!ok && m.contains("45 days"), "{m}");
        assert!(!assess_event_ttl(with, 7, Some(1)).1, "another TTL");
        assert!(!assess_event_ttl(with, 0, Some(1)).1);
        assert!(assess_event_ttl("CREATE TABLE cairn.events (...) SETTINGS x = 1", 0, Some(400)).1);
    }
}
