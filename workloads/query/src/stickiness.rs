//! Stickiness: of the persons who did an event in the range, how many did it on exactly 1, 2, …
//! N of its periods (days, weeks, …).

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
pub struct StickinessSeries {
    /// The event; absent or null: every event.
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
    /// A display name; defaults to the event's.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickinessRequest {
    pub series: Vec<StickinessSeries>,
    #[serde(default)]
    pub date_from: Option<String>,
    #[serde(default)]
    pub date_to: Option<String>,
    /// The period counted: hour, day (default), week or month.
    #[serde(default)]
    pub interval: Interval,
    #[serde(default)]
    pub timezone: Option<String>,
    /// Filters every series shares.
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StickinessResult {
    pub series: usize,
    pub label: String,
    /// `data[k - 1]`: persons who did the event in exactly k of the periods (k = 1 … N).
    pub data: Vec<u64>,
    /// Persons who did the event at all (the sum of `data`).
    pub persons: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StickinessResponse {
    pub interval: Interval,
    pub timezone: String,
    pub date_from: String,
    pub date_to: String,
    /// N: the periods that overlap the range; `data` has N values.
    pub periods: usize,
    pub results: Vec<StickinessResult>,
}

/// The histogram: `counts[k - 1]` = persons active in exactly k of `n` periods.
pub fn histogram(active_counts: impl IntoIterator<Item = usize>, n: usize) -> Vec<u64> {
    let mut out = vec![0; n];
    for k in active_counts {
        if (1..=n).contains(&k) {
            out[k - 1] += 1;
        }
    }
    out
}

pub async fn run(
    engine: &Engine,
    project_id: u64,
    req: &StickinessRequest,
    now: Timestamp,
) -> Result<StickinessResponse, ApiError> {
    if req.series.is_empty() || req.series.len() > engine.limits.max_series {
        return Err(ApiError::invalid("series", format!("between 1 and {} series", engine.limits.max_series)));
    }
    let range = resolve(
        req.date_from.as_deref(),
        req.date_to.as_deref(),
        req.timezone.as_deref(),
        "-30d",
        engine.limits.max_range_days,
        now,
    )?;
    let buckets = range.buckets(req.interval, engine.limits.max_buckets)?;
    let starts: HashSet<u32> =
        buckets.iter().map(|b| u32::try_from(b.timestamp().as_second()).unwrap_or(u32::MAX)).collect();
    let n = buckets.len();
    let mut results = Vec::with_capacity(req.series.len());
    for (i, s) in req.series.iter().enumerate() {
        let spec = EventSpec { event: s.event.clone(), filters: s.filters.clone() };
        let field = format!("series[{i}]");
        let rows = per_person(
            engine,
            project_id,
            &ActivityQuery {
                event: &spec,
                field: &field,
                shared_filters: &req.filters,
                interval: req.interval,
                tz_name: &range.tz_name,
                first_from_ms: Some(range.from_ms()),
                active_from_ms: range.from_ms(),
                to_ms: range.to_ms(),
            },
        )
        .await?;
        let data = histogram(rows.iter().map(|r| r.buckets.iter().filter(|b| starts.contains(b)).count()), n);
        let label = s.name.clone().or_else(|| s.event.clone()).unwrap_or_else(|| "All events".into());
        results.push(StickinessResult { series: i, label, persons: data.iter().sum(), data });
    }
    Ok(StickinessResponse {
        interval: req.interval,
        timezone: range.tz_name.clone(),
        date_from: label(&range.from),
        date_to: label(&range.to),
        periods: n,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_persons_by_active_periods() {
        assert_eq!(histogram([1, 1, 3, 2, 0, 7], 3), vec![2, 1, 1]);
    }
}
