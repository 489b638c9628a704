//! Sessions: the visits persons made, from `$session_id` or, for events without one, from
//! 30 minutes of inactivity per distinct id.
//!
//! A session's events are those in the range (a session crossing the range's edges is cut
//! there); its start is its first event, its duration the time from its first to its last, its
//! entry and exit pages the `$pathname`s of its first and last `$pageview`. A session bounced
//! when it has at most one `$pageview` and lasted under 10 seconds. Sessions are put in the
//! period of their start.
//!
//! Session-level filters: `filters` keep the sessions with at least one event that matches
//! them; `min_duration_seconds` / `max_duration_seconds` and `entry_pathname` select on the
//! session itself. `breakdown` splits the totals by a property of the session's first event
//! (`$browser`, `utm_source`, `$referring_domain`, …).

use std::collections::HashMap;

use cairn_common::clickhouse::EVENTS_TABLE;
use cairn_common::http::ApiError;
use clickhouse::Row;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::filters::{all_conditions, prop_nullable, uses_person, PropertyFilter};
use crate::sql::Sql;
use crate::timerange::{label, resolve, Interval};
use crate::trends::{NONE_VALUE, OTHER_VALUE};

/// The column (a `Map(String, String)`) that holds each event's session's properties in a
/// statement that joins them ([`join_session_properties`]).
pub const SESSION_PROPERTIES: &str = "session_properties";

/// The session properties trends filter and break down by (`"type": "session"`).
pub const SESSION_KEYS: &[&str] =
    &["$session_duration", "$entry_pathname", "$exit_pathname", "$pageview_count", "$event_count", "$is_bounce"];

/// ` LEFT JOIN (…) AS sess ON …`: each event's session's properties as [`SESSION_PROPERTIES`], for
/// a statement reading `events` between `from_ms` and `to_ms` — `$session_duration` (seconds
/// from its first to its last event), `$entry_pathname` and `$exit_pathname` (of its first and
/// last `$pageview`), `$pageview_count`, `$event_count` and `$is_bounce` (`true`/`false`), as on
/// the sessions page, computed over the same range (a session crossing its edges is cut there).
/// A session is a `$session_id`: events without one have no session properties (an empty map:
/// to filters and breakdowns, every session property is missing — `is_not_set` and `is_not`
/// keep them, a breakdown puts them under `$none`), where the sessions page also groups them by
/// 30 minutes of inactivity.
pub fn join_session_properties(
    source: &crate::sql::EventsSource,
    sql: &mut Sql,
    project_id: u64,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) {
    let outer = sql.take_text();
    let joined = sql.set_sessions_joined(false);
    let sid = prop_nullable(sql, "$session_id");
    let path = prop_nullable(sql, "$pathname");
    let pageview = sql.str("$pageview");
    let bounce = sql.i64(BOUNCE_MS);
    sql.push("SELECT sid AS session_key, map('$session_duration', toString(duration), '$entry_pathname', entry, ")
        .push("'$exit_pathname', exit, '$pageview_count', toString(pageviews), '$event_count', toString(n), ")
        .push("'$is_bounce', if(pageviews <= 1 AND duration * 1000 < ")
        .push(&bounce)
        .push(", 'true', 'false')) AS ")
        .push(SESSION_PROPERTIES)
        .push(" FROM (SELECT sid, (toUnixTimestamp64Milli(max(ts)) - toUnixTimestamp64Milli(min(ts))) / 1000 AS duration, ")
        .push("argMinIf(path, ts, pv) AS entry, argMaxIf(path, ts, pv) AS exit, countIf(pv) AS pageviews, count() AS n FROM (")
        .push("SELECT ifNull(")
        .push(&sid)
        .push(", '') AS sid, timestamp AS ts, ifNull(")
        .push(&path)
        .push(", '') AS path, event = ")
        .push(&pageview)
        .push(" AS pv");
    source.scoped_in(sql, EVENTS_TABLE, project_id, from_ms, to_ms);
    sql.push(") WHERE sid != '' GROUP BY sid)");
    let sub = sql.take_text();
    let event_sid = prop_nullable(sql, "$session_id");
    sql.set_sessions_joined(joined);
    sql.push(&outer)
        .push(" LEFT JOIN (")
        .push(&sub)
        .push(") AS sess ON ifNull(")
        .push(&event_sid)
        .push(", '') = sess.session_key");
}

/// Inactivity that ends a session without `$session_id`.
pub const INACTIVITY_MS: i64 = 30 * 60 * 1000;
/// A session shorter than this with at most one pageview bounced.
pub const BOUNCE_MS: i64 = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SessionsRequest {
    #[serde(default)]
    pub date_from: Option<String>,
    #[serde(default)]
    pub date_to: Option<String>,
    #[serde(default)]
    pub interval: Interval,
    #[serde(default)]
    pub timezone: Option<String>,
    /// Sessions with at least one event matching every filter.
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
    #[serde(default)]
    pub min_duration_seconds: Option<f64>,
    #[serde(default)]
    pub max_duration_seconds: Option<f64>,
    /// Sessions that entered on this `$pathname`.
    #[serde(default)]
    pub entry_pathname: Option<String>,
    /// A property of each session's first event to split the totals by.
    #[serde(default)]
    pub breakdown: Option<String>,
    /// Pages (and breakdown values) shown, most sessions first (default 10, at most 100).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SessionStats {
    pub sessions: u64,
    pub median_duration_seconds: f64,
    pub p90_duration_seconds: f64,
    pub avg_duration_seconds: f64,
    pub avg_events_per_session: f64,
    /// Bounced sessions over sessions, 0 to 1 (0 without sessions).
    pub bounce_rate: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PageCount {
    pub pathname: String,
    pub sessions: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BreakdownStats {
    pub value: String,
    #[serde(flatten)]
    pub stats: SessionStats,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionsResponse {
    pub interval: Interval,
    pub timezone: String,
    pub date_from: String,
    pub date_to: String,
    /// Each period's start, in the timezone.
    pub labels: Vec<String>,
    /// Per period (by session start).
    pub series: Vec<SessionStats>,
    /// Over the whole range.
    pub totals: SessionStats,
    pub entry_pages: Vec<PageCount>,
    pub exit_pages: Vec<PageCount>,
    /// Per breakdown value (the top `limit`, the rest as `$other`), when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Vec<BreakdownStats>>,
}

#[derive(Row, Deserialize)]
struct StatsRow {
    /// The period (seconds since the epoch) or the breakdown value; empty for the totals row.
    key: String,
    total: u8,
    sessions: u64,
    median: f64,
    p90: f64,
    avg: f64,
    events: f64,
    bounces: u64,
}

impl StatsRow {
    fn stats(&self) -> SessionStats {
        SessionStats {
            sessions: self.sessions,
            median_duration_seconds: self.median,
            p90_duration_seconds: self.p90,
            avg_duration_seconds: self.avg,
            avg_events_per_session: self.events,
            bounce_rate: if self.sessions == 0 { 0.0 } else { self.bounces as f64 / self.sessions as f64 },
        }
    }
}

#[derive(Row, Deserialize)]
struct PageRow {
    kind: String,
    page: String,
    c: u64,
}

/// `(SELECT … one row per session …)`: session, timestamp (start), duration (s), events,
/// bounced, entry, exit, bd (the breakdown value).
fn sessions_sql(
    engine: &Engine,
    sql: &mut Sql,
    project_id: u64,
    req: &SessionsRequest,
    range: (i64, i64),
) -> Result<String, ApiError> {
    // Built into `sql` (its parameters) and taken out as text: the caller has written none yet.
    debug_assert!(sql.text().is_empty());
    let inner = sql;
    let sid = prop_nullable(inner, "$session_id");
    let path = prop_nullable(inner, "$pathname");
    let pageview = inner.str("$pageview");
    let matches = all_conditions(inner, &req.filters, "filters", engine.limits.max_filters)?;
    let bd = match &req.breakdown {
        Some(p) if p.is_empty() || p.len() > 400 => {
            return Err(ApiError::invalid("breakdown", "a property name of 1 to 400 characters"))
        }
        Some(p) => {
            let v = prop_nullable(inner, p);
            format!("ifNull({v}, '{NONE_VALUE}')")
        }
        None => "''".to_string(),
    };
    let inactivity = inner.i64(INACTIVITY_MS);
    let bounce = inner.i64(BOUNCE_MS);
    inner
        .push("(SELECT session, min(ts) AS timestamp, (toUnixTimestamp64Milli(max(ts)) - toUnixTimestamp64Milli(min(ts))) / 1000 AS duration, ")
        .push("toFloat64(count()) AS n_events, countIf(pv) <= 1 AND toUnixTimestamp64Milli(max(ts)) - toUnixTimestamp64Milli(min(ts)) < ")
        .push(&bounce)
        .push(" AS bounced, argMinIf(path, ts, pv) AS entry, argMaxIf(path, ts, pv) AS exit, argMin(bd, ts) AS bd, max(m) AS matched FROM (")
        .push("SELECT ts, pv, path, bd, m, if(sid != '', concat('s:', sid), concat('d:', distinct_id, ':', toString(sum(gap) OVER ")
        .push("(PARTITION BY distinct_id, sid ORDER BY ts, uuid ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)))) AS session FROM (")
        .push("SELECT distinct_id, uuid, timestamp AS ts, ifNull(")
        .push(&sid)
        .push(", '') AS sid, ifNull(")
        .push(&path)
        .push(", '') AS path, event = ")
        .push(&pageview)
        .push(" AS pv, ")
        .push(&bd)
        .push(" AS bd, toUInt8(")
        .push(&matches)
        .push(") AS m, toUnixTimestamp64Milli(timestamp) - lagInFrame(toUnixTimestamp64Milli(timestamp), 1, toInt64(0)) OVER ")
        .push("(PARTITION BY distinct_id, sid ORDER BY timestamp, uuid ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) > ")
        .push(&inactivity)
        .push(" AS gap");
    engine.source.scoped_with(inner, EVENTS_TABLE, project_id, Some(range.0), Some(range.1), uses_person(&req.filters));
    inner.push(")) GROUP BY session HAVING matched = 1");
    if let Some(min) = req.min_duration_seconds {
        let p = inner.f64(min);
        inner.push(" AND duration >= ").push(&p);
    }
    if let Some(max) = req.max_duration_seconds {
        let p = inner.f64(max);
        inner.push(" AND duration <= ").push(&p);
    }
    if let Some(entry) = &req.entry_pathname {
        let p = inner.str(entry.clone());
        inner.push(" AND entry = ").push(&p);
    }
    inner.push(")");
    Ok(inner.take_text())
}

const STATS: &str = "count() AS sessions, toFloat64(quantileExactInclusive(0.5)(duration)) AS median, \
     toFloat64(quantileExactInclusive(0.9)(duration)) AS p90, toFloat64(avg(duration)) AS avg, avg(n_events) AS events, \
     countIf(bounced) AS bounces";

pub async fn run(
    engine: &Engine,
    project_id: u64,
    req: &SessionsRequest,
    now: Timestamp,
) -> Result<SessionsResponse, ApiError> {
    let limit = req.limit.unwrap_or(10);
    if limit == 0 || limit > 100 {
        return Err(ApiError::invalid("limit", "between 1 and 100"));
    }
    for (field, v) in
        [("min_duration_seconds", req.min_duration_seconds), ("max_duration_seconds", req.max_duration_seconds)]
    {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return Err(ApiError::invalid(field, "a number of seconds, 0 or more"));
        }
    }
    let range = resolve(
        req.date_from.as_deref(),
        req.date_to.as_deref(),
        req.timezone.as_deref(),
        "-7d",
        engine.limits.max_range_days,
        now,
    )?;
    let buckets = range.buckets(req.interval, engine.limits.max_buckets)?;
    let bounds = (range.from_ms(), range.to_ms());

    // Per period and over the range (GROUPING SETS: the totals row has grouping 1).
    let mut by_period = Sql::new();
    let tz = by_period.str(range.tz_name.clone());
    let bucket = req.interval.bucket_sql(&tz);
    let sessions = sessions_sql(engine, &mut by_period, project_id, req, bounds)?;
    by_period
        .push("SELECT toString(")
        .push(&bucket)
        .push(") AS key, toUInt8(grouping(key)) AS total, ")
        .push(STATS)
        .push(" FROM ")
        .push(&sessions)
        .push(" GROUP BY GROUPING SETS ((key), ())");

    let mut pages = Sql::new();
    let sessions = sessions_sql(engine, &mut pages, project_id, req, bounds)?;
    let lim = pages.u64(limit as u64);
    pages
        .push("SELECT kp.1 AS kind, kp.2 AS page, count() AS c FROM ")
        .push(&sessions)
        .push(" ARRAY JOIN [('entry', entry), ('exit', exit)] AS kp WHERE page != '' GROUP BY kind, page ORDER BY c DESC, page LIMIT ")
        .push(&lim)
        .push(" BY kind");

    let by_breakdown = match &req.breakdown {
        None => None,
        Some(_) => {
            let mut sql = Sql::new();
            let sessions = sessions_sql(engine, &mut sql, project_id, req, bounds)?;
            sql.push("SELECT bd AS key, toUInt8(0) AS total, ")
                .push(STATS)
                .push(" FROM ")
                .push(&sessions)
                .push(" GROUP BY key ORDER BY sessions DESC, key");
            Some(sql)
        }
    };

    let (period_rows, page_rows, breakdown_rows) =
        tokio::try_join!(engine.fetch_all::<StatsRow>(&by_period), engine.fetch_all::<PageRow>(&pages), async {
            match &by_breakdown {
                Some(sql) => engine.fetch_all::<StatsRow>(sql).await.map(Some),
                None => Ok(None),
            }
        })?;

    let mut per: HashMap<String, SessionStats> = HashMap::new();
    let mut totals = SessionStats::default();
    for r in &period_rows {
        if r.total == 1 {
            totals = r.stats();
        } else {
            per.insert(r.key.clone(), r.stats());
        }
    }
    let series =
        buckets.iter().map(|b| per.remove(&b.timestamp().as_second().to_string()).unwrap_or_default()).collect();
    let mut entry_pages = Vec::new();
    let mut exit_pages = Vec::new();
    for r in page_rows {
        let p = PageCount { pathname: r.page, sessions: r.c };
        if r.kind == "entry" {
            entry_pages.push(p);
        } else {
            exit_pages.push(p);
        }
    }
    let breakdown = breakdown_rows.map(|rows| fold_breakdown(rows, limit));
    Ok(SessionsResponse {
        interval: req.interval,
        timezone: range.tz_name.clone(),
        date_from: label(&range.from),
        date_to: label(&range.to),
        labels: buckets.iter().map(label).collect(),
        series,
        totals,
        entry_pages,
        exit_pages,
        breakdown,
    })
}

/// The top `limit` values, the rest summed into `$other` (its sessions and bounce rate exact; its
/// durations the session-weighted means of the values', its median and p90 omitted as 0 — they
/// cannot be combined).
fn fold_breakdown(rows: Vec<StatsRow>, limit: usize) -> Vec<BreakdownStats> {
    let mut out: Vec<BreakdownStats> =
        rows.iter().take(limit).map(|r| BreakdownStats { value: r.key.clone(), stats: r.stats() }).collect();
    let rest = &rows[limit.min(rows.len())..];
    if !rest.is_empty() {
        let sessions: u64 = rest.iter().map(|r| r.sessions).sum();
        let weighted =
            |f: fn(&StatsRow) -> f64| rest.iter().map(|r| f(r) * r.sessions as f64).sum::<f64>() / sessions as f64;
        out.push(BreakdownStats {
            value: OTHER_VALUE.into(),
            stats: SessionStats {
                sessions,
                median_duration_seconds: 0.0,
                p90_duration_seconds: 0.0,
                avg_duration_seconds: weighted(|r| r.avg),
                avg_events_per_session: weighted(|r| r.events),
                bounce_rate: rest.iter().map(|r| r.bounces).sum::<u64>() as f64 / sessions as f64,
            },
        });
    }
    out
}
