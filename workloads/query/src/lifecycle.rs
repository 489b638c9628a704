//! Lifecycle: per period, the persons who did an event for the first time (new), again after
//! doing it in the period before (returning), again after a gap (resurrecting), and those who
//! did it in the period before but not in this one (dormant).
//!
//! "First time" is the person's first matching event in all history, so a person active before
//! the range is never new in it.

use std::collections::HashSet;

use cairn_common::http::ApiError;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::activity::{per_person, ActivityQuery};
use crate::engine::Engine;
use crate::filters::PropertyFilter;
use crate::retention::EventSpec;
use crate::timerange::{label, resolve, Interval};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRequest {
    pub event: EventSpec,
    #[serde(default)]
    pub date_from: Option<String>,
    #[serde(default)]
    pub date_to: Option<String>,
    /// The period: hour, day (default), week or month.
    #[serde(default)]
    pub interval: Interval,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LifecycleResponse {
    pub interval: Interval,
    pub timezone: String,
    /// Each period's start, in the timezone.
    pub labels: Vec<String>,
    pub new: Vec<u64>,
    pub returning: Vec<u64>,
    pub resurrecting: Vec<u64>,
    /// Persons active in the period before and not in this one (a positive count; charts draw
    /// it below the axis).
    pub dormant: Vec<u64>,
}

/// One person's states: `first` the index of their first period ever (negative: before the
/// periods shown; `i64::MIN` when unknown), `active` the indices of the periods they were active
/// in (-1 is the period before the first shown).
pub fn classify(first: i64, active: &HashSet<i64>, n: usize, out: &mut LifecycleResponse) {
    for i in 0..n as i64 {
        let now = active.contains(&i);
        let before = active.contains(&(i - 1));
        let idx = i as usize;
        if now {
            if first == i {
                out.new[idx] += 1;
            } else if before {
                out.returning[idx] += 1;
            } else {
                out.resurrecting[idx] += 1;
            }
        } else if before {
            out.dormant[idx] += 1;
        }
    }
}

pub async fn run(
    engine: &Engine,
    project_id: u64,
    req: &LifecycleRequest,
    now: Timestamp,
) -> Result<LifecycleResponse, ApiError> {
    let range = resolve(
        req.date_from.as_deref(),
        req.date_to.as_deref(),
        req.timezone.as_deref(),
        "-30d",
        engine.limits.max_range_days,
        now,
    )?;
    let buckets = range.buckets(req.interval, engine.limits.max_buckets)?;
    let bad = |e: jiff::Error| ApiError::invalid("date_from", format!("the periods cannot be computed: {e}"));
    // The period before the first shown: who was active then decides returning and dormant.
    let first_shown = buckets.first().ok_or_else(|| ApiError::invalid("date_from", "the range holds no period"))?;
    let before_ts = first_shown
        .timestamp()
        .checked_sub(jiff::SignedDuration::from_millis(1))
        .map_err(bad)?
        .to_zoned(first_shown.time_zone().clone());
    let before = req.interval.floor(&before_ts).map_err(bad)?;
    let mut starts: Vec<i64> = vec![before.timestamp().as_second()];
    starts.extend(buckets.iter().map(|b| b.timestamp().as_second()));
    let index = |secs: u32| starts.iter().position(|s| *s == i64::from(secs)).map(|p| p as i64 - 1);
    let rows = per_person(
        engine,
        project_id,
        &ActivityQuery {
            event: &req.event,
            field: "event",
            shared_filters: &req.filters,
            interval: req.interval,
            tz_name: &range.tz_name,
            first_from_ms: None,
            active_from_ms: before.timestamp().as_millisecond(),
            to_ms: range.to_ms(),
        },
    )
    .await?;
    let n = buckets.len();
    let mut out = LifecycleResponse {
        interval: req.interval,
        timezone: range.tz_name.clone(),
        labels: buckets.iter().map(label).collect(),
        new: vec![0; n],
        returning: vec![0; n],
        resurrecting: vec![0; n],
        dormant: vec![0; n],
    };
    for r in &rows {
        // A first period older than the one before those shown is not among them: never new.
        let first = index(r.first).unwrap_or(i64::MIN);
        let active: HashSet<i64> = r.buckets.iter().filter_map(|b| index(*b)).collect();
        classify(first, &active, n, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_definitions() {
        let n = 4;
        let mut out = LifecycleResponse {
            new: vec![0; n],
            returning: vec![0; n],
            resurrecting: vec![0; n],
            dormant: vec![0; n],
            ..Default::default()
        };
        // New in 0, active 1, gone 2, back 3.
        classify(0, &HashSet::from([0, 1, 3]), n, &mut out);
        // Older person, active in the period before and in 1.
        classify(i64::MIN, &HashSet::from([-1, 1]), n, &mut out);
        assert_eq!(out.new, vec![1, 0, 0, 0]);
        assert_eq!(out.returning, vec![0, 1, 0, 0]);
        assert_eq!(out.resurrecting, vec![0, 1, 0, 1]);
        assert_eq!(out.dormant, vec![1, 0, 2, 0]);
    }
}
