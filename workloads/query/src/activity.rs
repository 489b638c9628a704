//! Which periods each person was active in: what stickiness and lifecycle count.
//!
//! One statement per event: per distinct id (its hash) the periods (time buckets in the
//! timezone) with a matching event in `[active_from, to)` and the first period with one at all
//! (from `first_from`, or all history), then per person (after merges) the union and the minimum.

use cairn_common::clickhouse::EVENTS_TABLE;
use cairn_common::http::ApiError;
use clickhouse::Row;
use serde::Deserialize;

use crate::engine::Engine;
use crate::filters::{all_conditions, event_condition, uses_person, PropertyFilter};
use crate::persons;
use crate::sql::Sql;
use crate::timerange::Interval;

/// What one person did: the buckets (seconds since the epoch of each bucket's start) with a
/// matching event in the active range, and the first bucket with one.
#[derive(Debug, Row, Deserialize)]
pub struct PersonActivity {
    #[allow(dead_code)]
    pub person: u64,
    pub first: u32,
    pub buckets: Vec<u32>,
}

/// An event and its own filters (as in retention).
pub use crate::retention::EventSpec;

pub struct ActivityQuery<'a> {
    pub event: &'a EventSpec,
    pub field: &'a str,
    pub shared_filters: &'a [PropertyFilter],
    pub interval: Interval,
    pub tz_name: &'a str,
    /// Where the first bucket is looked for from (None: all history).
    pub first_from_ms: Option<i64>,
    pub active_from_ms: i64,
    pub to_ms: i64,
}

pub async fn per_person(
    engine: &Engine,
    project_id: u64,
    q: &ActivityQuery<'_>,
) -> Result<Vec<PersonActivity>, ApiError> {
    let mut sql = Sql::new();
    let tz = sql.str(q.tz_name);
    let bucket = q.interval.bucket_sql(&tz);
    let event = event_condition(&mut sql, q.event.event.as_deref(), &format!("{}.event", q.field))?;
    let own = all_conditions(&mut sql, &q.event.filters, &format!("{}.filters", q.field), engine.limits.max_filters)?;
    let active_from = sql.millis(q.active_from_ms);
    sql.push("SELECT ")
        .push(&persons::person_of("u.h"))
        .push(" AS person, min(u.first) AS first, groupUniqArrayArray(u.buckets) AS buckets FROM (")
        .push("SELECT cityHash64(distinct_id) AS h, toUInt32(min(b)) AS first, groupUniqArrayIf(toUInt32(b), timestamp >= ")
        .push(&active_from)
        .push(") AS buckets FROM (SELECT distinct_id, timestamp, ")
        .push(&bucket)
        .push(" AS b");
    let person_properties = uses_person(q.shared_filters) || uses_person(&q.event.filters);
    engine.source.scoped_with(&mut sql, EVENTS_TABLE, project_id, q.first_from_ms, Some(q.to_ms), person_properties);
    let shared = all_conditions(&mut sql, q.shared_filters, "filters", engine.limits.max_filters)?;
    sql.push(" AND (")
        .push(&event)
        .push(") AND (")
        .push(&own)
        .push(") AND (")
        .push(&shared)
        .push(")) GROUP BY h) AS u");
    persons::join_overrides(&mut sql, project_id, "u.h");
    sql.push(" GROUP BY person");
    engine.fetch_all(&sql).await
}
