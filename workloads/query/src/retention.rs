//! Retention: of the users who did the target event in a period (a cohort), how many did the
//! returning event in each following period.
//!
//! `recurring`: a user belongs to every period's cohort in which they did the target event.
//! `first_time`: only to the period of their first target event ever. Column 0 is the cohort's
//! size; column k counts the cohort's users who did the returning event k periods later.

use std::collections::HashSet;

use cairn_common::clickhouse::EVENTS_TABLE;
use cairn_common::http::ApiError;
use clickhouse::Row;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::filters::{all_conditions, event_condition, uses_person, PropertyFilter};
use crate::persons;
use crate::sql::Sql;
use crate::timerange::{label, point, timezone, Interval};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionType {
    FirstTime,
    #[default]
    Recurring,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    #[default]
    Day,
    Week,
    Month,
}

impl Period {
    fn interval(self) -> Interval {
        match self {
            Period::Day => Interval::Day,
            Period::Week => Interval::Week,
            Period::Month => Interval::Month,
        }
    }

    /// The period's first day as days since the epoch, in SQL.
    fn day_number_sql(self, tz: &str) -> String {
        match self {
            Period::Day => format!("toInt32(toDate(timestamp, {tz}))"),
            Period::Week => format!("toInt32(toMonday(timestamp, {tz}))"),
            Period::Month => format!("toInt32(toStartOfMonth(timestamp, {tz}))"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    pub target_event: EventSpec,
    /// Default: the target event.
    #[serde(default)]
    pub returning_event: Option<EventSpec>,
    #[serde(default)]
    pub retention_type: RetentionType,
    #[serde(default)]
    pub period: Period,
    /// Cohorts (and columns) to show, counting back from the period holding `date_to` (default 7).
    #[serde(default)]
    pub periods: Option<usize>,
    #[serde(default)]
    pub date_to: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cohort {
    /// The cohort period's start, in the timezone.
    pub date: String,
    pub size: u64,
    /// `values[k]`: users of the cohort who returned k periods later (`values[0]` = size); only
    /// periods that have begun.
    pub values: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetentionResponse {
    pub timezone: String,
    pub period: Period,
    pub retention_type: RetentionType,
    pub cohorts: Vec<Cohort>,
}

#[derive(Row, Deserialize)]
struct UserPeriods {
    #[allow(dead_code)]
    person: u64,
    first_period: i32,
    starts: Vec<i32>,
    returns: Vec<i32>,
}

fn day_number(z: &Zoned) -> i64 {
    z.date().to_zoned(TimeZone::UTC).map(|u| u.timestamp().as_second().div_euclid(86_400)).unwrap_or(0)
}

/// The cohort table from each user's target and returning periods (as period indices 0..n).
pub fn table(users: &[(Option<usize>, Vec<usize>, Vec<usize>)], n: usize, first_time: bool) -> Vec<(u64, Vec<u64>)> {
    let mut out: Vec<(u64, Vec<u64>)> = (0..n).map(|c| (0, vec![0; n - c])).collect();
    for (first, starts, returns) in users {
        let returns: HashSet<usize> = returns.iter().copied().collect();
        let cohorts: Vec<usize> = if first_time { first.iter().copied().collect() } else { starts.clone() };
        for c in cohorts.into_iter().filter(|&c| c < n) {
            out[c].0 += 1;
            out[c].1[0] += 1;
            for k in 1..n - c {
                if returns.contains(&(c + k)) {
                    out[c].1[k] += 1;
                }
            }
        }
    }
    out
}

pub async fn run(
    engine: &Engine,
    project_id: u64,
    req: &RetentionRequest,
    now: Timestamp,
) -> Result<RetentionResponse, ApiError> {
    let n = req.periods.unwrap_or(7);
    if n == 0 || n > 60 {
        return Err(ApiError::invalid("periods", "between 1 and 60"));
    }
    let (tz_name, tz) = timezone(req.timezone.as_deref())?;
    let interval = req.period.interval();
    // The last cohort is the period holding date_to (or now); the first is n-1 periods before.
    let end_point = match req.date_to.as_deref() {
        // An exclusive end: the cohorts end with the period holding its last millisecond.
        Some(t) if !t.trim().is_empty() => {
            let to = point("date_to", t, true, Some(&tz_name), now)?;
            to.timestamp()
                .checked_sub(jiff::SignedDuration::from_millis(1))
                .map(|t| t.to_zoned(tz.clone()))
                .unwrap_or(to)
        }
        _ => now.to_zoned(tz.clone()),
    };
    let bad = |e: jiff::Error| ApiError::invalid("date_to", e.to_string());
    let last = interval.floor(&end_point).map_err(bad)?;
    let mut starts = vec![last];
    for _ in 1..n {
        let prev = match interval {
            Interval::Day => starts[0].date().checked_sub(jiff::ToSpan::day(1)),
            Interval::Week => starts[0].date().checked_sub(jiff::ToSpan::week(1)),
            _ => starts[0].date().checked_sub(jiff::ToSpan::month(1)),
        }
        .and_then(|d| d.to_zoned(tz.clone()))
        .map_err(bad)?;
        starts.insert(0, prev);
    }
    let end = interval.next(&starts[n - 1]).map_err(bad)?;
    if (end.timestamp().as_millisecond() - starts[0].timestamp().as_millisecond())
        > engine.limits.max_range_days * 86_400_000
    {
        return Err(ApiError::invalid(
            "periods",
            format!("the cohorts may span at most {} days", engine.limits.max_range_days),
        ));
    }
    let numbers: Vec<i64> = starts.iter().map(day_number).collect();
    let index_of = |day: i32| numbers.iter().position(|&d| d == i64::from(day));

    let mut sql = Sql::new();
    let tz_p = sql.str(tz_name.clone());
    let p = req.period.day_number_sql(&tz_p);
    let target_event = event_condition(&mut sql, req.target_event.event.as_deref(), "target_event.event")?;
    let target_own =
        all_conditions(&mut sql, &req.target_event.filters, "target_event.filters", engine.limits.max_filters)?;
    let ret = req.returning_event.clone().unwrap_or_else(|| req.target_event.clone());
    let return_event = event_condition(&mut sql, ret.event.as_deref(), "returning_event.event")?;
    let return_own = all_conditions(&mut sql, &ret.filters, "returning_event.filters", engine.limits.max_filters)?;
    let first_time = req.retention_type == RetentionType::FirstTime;
    let start_ms = starts[0].timestamp().as_millisecond();
    let start = sql.millis(start_ms);
    // Per distinct id (its hash) first, then per person: the ids' periods united.
    sql.push("SELECT ")
        .push(&persons::person_of("u.h"))
        .push(" AS person, minIf(u.first_period, u.targets > 0) AS first_period, groupUniqArrayArray(u.starts) AS starts, groupUniqArrayArray(u.returns) AS returns FROM (")
        .push("SELECT cityHash64(distinct_id) AS h, minIf(p, is_target) AS first_period, groupUniqArrayIf(p, is_target AND in_range) AS starts, groupUniqArrayIf(p, is_return AND in_range) AS returns, countIf(is_target) AS targets FROM (SELECT distinct_id, ")
        .push(&p)
        .push(" AS p, (")
        .push(&target_event)
        .push(") AND (")
        .push(&target_own)
        .push(") AS is_target, (")
        .push(&return_event)
        .push(") AND (")
        .push(&return_own)
        .push(") AS is_return, timestamp >= ")
        .push(&start)
        .push(" AS in_range");
    // First-time retention looks at all history for each user's first target event.
    let lower = if first_time { None } else { Some(start_ms) };
    let person_properties =
        uses_person(&req.filters) || uses_person(&req.target_event.filters) || uses_person(&ret.filters);
    engine.source.scoped_with(
        &mut sql,
        EVENTS_TABLE,
        project_id,
        lower,
        Some(end.timestamp().as_millisecond()),
        person_properties,
    );
    let shared = all_conditions(&mut sql, &req.filters, "filters", engine.limits.max_filters)?;
    sql.push(" AND (").push(&shared).push(") AND (is_target OR (is_return AND in_range))) GROUP BY h) AS u");
    persons::join_overrides(&mut sql, project_id, "u.h");
    sql.push(" GROUP BY person HAVING sum(u.targets) > 0");

    let rows: Vec<UserPeriods> = engine.fetch_all(&sql).await?;
    let users: Vec<(Option<usize>, Vec<usize>, Vec<usize>)> = rows
        .iter()
        .map(|u| {
            (
                index_of(u.first_period),
                u.starts.iter().filter_map(|&d| index_of(d)).collect(),
                u.returns.iter().filter_map(|&d| index_of(d)).collect(),
            )
        })
        .collect();
    let cohorts = table(&users, n, first_time)
        .into_iter()
        .enumerate()
        .map(|(c, (size, values))| Cohort { date: label(&starts[c]), size, values })
        .collect();
    Ok(RetentionResponse { timezone: tz_name, period: req.period, retention_type: req.retention_type, cohorts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohort_tables_for_recurring_and_first_time() {
        // user 1: first ever in period 0, active 0 and 2; returns 1 and 2.
        // user 2: first in period 1 (recurring in 1 and 2), returns in 2.
        // user 3: first before the range (None), active in 1, returns 2.
        let users = vec![(Some(0), vec![0, 2], vec![1, 2]), (Some(1), vec![1, 2], vec![2]), (None, vec![1], vec![2])];
        let rec = table(&users, 3, false);
        assert_eq!(rec, vec![(1, vec![1, 1, 1]), (2, vec![2, 2]), (2, vec![2])]);
        let first = table(&users, 3, true);
        assert_eq!(first, vec![(1, vec![1, 1, 1]), (1, vec![1, 1]), (0, vec![0])]);
    }
}
