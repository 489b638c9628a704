//! Funnels: how many users went through ordered steps within a conversion window.
//!
//! ClickHouse gathers, per user who did the first step, that user's step events in time order
//! (one bit per step an event matches); the walk over them is [`walk`]: from each first-step event,
//! the earliest event of each next step within the window; the user's furthest walk counts (the
//! earliest one among equals, for the times). In `strict` order any other event of the user in
//! between breaks the walk. A breakdown takes its value from the walk's first event.

use std::collections::HashMap;

use cairn_common::http::ApiError;
use clickhouse::Row;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::filters::{all_conditions, event_condition, PropertyFilter};
use crate::sql::Sql;
use crate::timerange::{label, resolve};
use crate::trends::{breakdown_expr, Breakdown, OTHER_VALUE};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelStep {
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelOrder {
    /// Steps in order; other events may happen in between.
    #[default]
    Ordered,
    /// Steps in order with no other event of the user in between.
    Strict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowUnit {
    Minute,
    Hour,
    Day,
    Week,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionWindow {
    pub value: u32,
    pub unit: WindowUnit,
}

impl ConversionWindow {
    pub fn millis(&self) -> i64 {
        let unit: i64 = match self.unit {
            WindowUnit::Minute => 60_000,
            WindowUnit::Hour => 3_600_000,
            WindowUnit::Day => 86_400_000,
            WindowUnit::Week => 7 * 86_400_000,
        };
        i64::from(self.value) * unit
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelsRequest {
    pub steps: Vec<FunnelStep>,
    #[serde(default)]
    pub date_from: Option<String>,
    #[serde(default)]
    pub date_to: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
    /// Default: 14 days.
    #[serde(default)]
    pub conversion_window: Option<ConversionWindow>,
    #[serde(default)]
    pub order: FunnelOrder,
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    pub index: usize,
    pub name: String,
    pub count: u64,
    /// Of the users who did the first step.
    pub conversion_rate: f64,
    /// Of the users who did the previous step.
    pub step_conversion_rate: f64,
    /// From the previous step, over the users who reached this one (none for the first step).
    pub median_time_to_convert_seconds: Option<f64>,
    pub average_time_to_convert_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BreakdownSteps {
    pub breakdown_value: String,
    pub steps: Vec<StepResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunnelsResponse {
    pub timezone: String,
    pub date_from: String,
    pub date_to: String,
    pub order: FunnelOrder,
    pub conversion_window_seconds: i64,
    pub steps: Vec<StepResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Vec<BreakdownSteps>>,
}

/// A user's step events with the breakdown value of each.
#[derive(Row, Deserialize)]
struct UserEvents {
    #[allow(dead_code)]
    distinct_id: String,
    events: Vec<(i64, u32, String)>,
}

/// A user's step events, without a breakdown (less to send).
#[derive(Row, Deserialize)]
struct UserSteps {
    #[allow(dead_code)]
    distinct_id: String,
    events: Vec<(i64, u32)>,
}

/// One user's furthest walk: how many steps, each step's time, the first event's index.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    pub level: usize,
    pub times: Vec<i64>,
    pub start: usize,
}

/// The furthest walk through `events` (time-ordered `(millis, step bits)`), see the module doc.
pub fn walk(events: &[(i64, u32)], steps: usize, window_ms: i64, strict: bool) -> Option<Walk> {
    let mut best: Option<Walk> = None;
    for (start, &(t0, bits)) in events.iter().enumerate() {
        if bits & 1 == 0 {
            continue;
        }
        let mut times = vec![t0];
        for &(t, bits) in &events[start + 1..] {
            if times.len() == steps || t - t0 > window_ms {
                break;
            }
            if bits & (1 << times.len()) != 0 {
                times.push(t);
            } else if strict {
                break;
            }
        }
        if best.as_ref().is_none_or(|b| times.len() > b.level) {
            let level = times.len();
            best = Some(Walk {
                level,
                times,
                start,
            });
            if level == steps {
                break;
            }
        }
    }
    best
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Per-step counts and times from users' walks.
pub fn summarise(names: &[String], walks: &[&Walk]) -> Vec<StepResult> {
    let first = walks.iter().filter(|w| w.level >= 1).count() as u64;
    let mut out: Vec<StepResult> = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let reached: Vec<&&Walk> = walks.iter().filter(|w| w.level > k).collect();
        let count = reached.len() as u64;
        let prev = out.last().map(|p| p.count).unwrap_or(count);
        let mut times: Vec<f64> = if k == 0 {
            Vec::new()
        } else {
            reached
                .iter()
                .map(|w| (w.times[k] - w.times[k - 1]) as f64 / 1000.0)
                .collect()
        };
        let average = (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64);
        out.push(StepResult {
            index: k,
            name: name.clone(),
            count,
            conversion_rate: if first == 0 {
                0.0
            } else {
                count as f64 / first as f64
            },
            step_conversion_rate: if prev == 0 {
                0.0
            } else {
                count as f64 / prev as f64
            },
            median_time_to_convert_seconds: median(&mut times),
            average_time_to_convert_seconds: average,
        });
    }
    out
}

fn validate(req: &FunnelsRequest, engine: &Engine) -> Result<i64, ApiError> {
    if req.steps.len() < 2 {
        return Err(ApiError::invalid(
            "steps",
            "a funnel needs at least two steps",
        ));
    }
    let max = engine.limits.max_series.min(20);
    if req.steps.len() > max {
        return Err(ApiError::invalid("steps", format!("at most {max} steps")));
    }
    let window = req.conversion_window.unwrap_or(ConversionWindow {
        value: 14,
        unit: WindowUnit::Day,
    });
    let ms = window.millis();
    if ms <= 0 || ms > 366 * 86_400_000 {
        return Err(ApiError::invalid(
            "conversion_window",
            "between 1 minute and 366 days",
        ));
    }
    if let Some(b) = &req.breakdown {
        if b.property.is_empty() {
            return Err(ApiError::invalid(
                "breakdown.property",
                "the property is empty",
            ));
        }
        if b.limit
            .is_some_and(|l| l == 0 || l > engine.limits.max_breakdown)
        {
            return Err(ApiError::invalid(
                "breakdown.limit",
                format!("between 1 and {}", engine.limits.max_breakdown),
            ));
        }
    }
    Ok(ms)
}

pub async fn run(
    engine: &Engine,
    project_id: u64,
    req: &FunnelsRequest,
    now: Timestamp,
) -> Result<FunnelsResponse, ApiError> {
    let window_ms = validate(req, engine)?;
    let range = resolve(
        req.date_from.as_deref(),
        req.date_to.as_deref(),
        req.timezone.as_deref(),
        "-30d",
        engine.limits.max_range_days,
        now,
    )?;
    let strict = req.order == FunnelOrder::Strict;

    let mut sql = Sql::new();
    let mut bits = Vec::new();
    for (i, step) in req.steps.iter().enumerate() {
        let event = event_condition(
            &mut sql,
            step.event.as_deref(),
            &format!("steps[{i}].event"),
        )?;
        let own = all_conditions(
            &mut sql,
            &step.filters,
            &format!("steps[{i}].filters"),
            engine.limits.max_filters,
        )?;
        bits.push(format!(
            "bitShiftLeft(toUInt32(({event}) AND ({own})), {i})"
        ));
    }
    let mask = bits.join(" + ");
    let bd = req
        .breakdown
        .as_ref()
        .map(|b| breakdown_expr(&mut sql, &b.property));
    let tuple = if bd.is_some() {
        "(toUnixTimestamp64Milli(timestamp), mask, bd)"
    } else {
        "(toUnixTimestamp64Milli(timestamp), mask)"
    };
    sql.push("SELECT distinct_id, arraySort(x -> x.1, groupArray(")
        .push(tuple)
        .push(")) AS events FROM (SELECT distinct_id, timestamp, toUInt32(")
        .push(&mask)
        .push(") AS mask");
    if let Some(bd) = &bd {
        sql.push(", ").push(bd).push(" AS bd");
    }
    engine.source.scoped(
        &mut sql,
        project_id,
        Some(range.from_ms()),
        Some(range.to_ms()),
    );
    let shared = all_conditions(&mut sql, &req.filters, "filters", engine.limits.max_filters)?;
    sql.push(" AND (").push(&shared).push(")");
    if !strict {
        // Only step events matter; naming them lets ClickHouse skip the others by the sort key.
        let names: Option<Vec<String>> = req.steps.iter().map(|s| s.event.clone()).collect();
        if let Some(names) = names {
            let list = sql.strs(names);
            sql.push(" AND event IN ").push(&list);
        }
        sql.push(" AND mask > 0");
    }
    sql.push(") GROUP BY distinct_id HAVING bitAnd(groupBitOr(mask), 1) = 1");

    let mut walks: Vec<(Walk, String)> = Vec::new();
    if bd.is_some() {
        let users: Vec<UserEvents> = engine.fetch_all(&sql).await?;
        let mut pairs: Vec<(i64, u32)> = Vec::new();
        for u in users {
            pairs.clear();
            pairs.extend(u.events.iter().map(|(t, m, _)| (*t, *m)));
            if let Some(w) = walk(&pairs, req.steps.len(), window_ms, strict) {
                let value = u
                    .events
                    .get(w.start)
                    .map(|e| e.2.clone())
                    .unwrap_or_default();
                walks.push((w, value));
            }
        }
    } else {
        let users: Vec<UserSteps> = engine.fetch_all(&sql).await?;
        walks.extend(
            users
                .iter()
                .filter_map(|u| walk(&u.events, req.steps.len(), window_ms, strict))
                .map(|w| (w, String::new())),
        );
    }

    let names: Vec<String> = req
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.name
                .clone()
                .or_else(|| s.event.clone())
                .unwrap_or_else(|| format!("Step {}", i + 1))
        })
        .collect();
    let all: Vec<&Walk> = walks.iter().map(|(w, _)| w).collect();
    let steps = summarise(&names, &all);

    let breakdown = req.breakdown.as_ref().map(|b| {
        let limit = b.limit.unwrap_or(10).min(engine.limits.max_breakdown);
        let mut by_value: HashMap<&str, Vec<&Walk>> = HashMap::new();
        for (w, v) in &walks {
            by_value.entry(v.as_str()).or_default().push(w);
        }
        let mut values: Vec<(&str, Vec<&Walk>)> = by_value.into_iter().collect();
        values.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        let mut out: Vec<BreakdownSteps> = Vec::new();
        let mut other: Vec<&Walk> = Vec::new();
        for (i, (value, ws)) in values.into_iter().enumerate() {
            if i < limit {
                out.push(BreakdownSteps {
                    breakdown_value: value.to_string(),
                    steps: summarise(&names, &ws),
                });
            } else {
                other.extend(ws);
            }
        }
        if !other.is_empty() {
            out.push(BreakdownSteps {
                breakdown_value: OTHER_VALUE.to_string(),
                steps: summarise(&names, &other),
            });
        }
        out
    });

    Ok(FunnelsResponse {
        timezone: range.tz_name.clone(),
        date_from: label(&range.from),
        date_to: label(&range.to),
        order: req.order,
        conversion_window_seconds: window_ms / 1000,
        steps,
        breakdown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn walks_take_the_furthest_then_earliest_path() {
        // A(0) B(1h) A(2h) B(3h) C(4h): from the first A, B at 1h then C at 4h.
        let e = [(0, 1), (H, 2), (2 * H, 1), (3 * H, 2), (4 * H, 4)];
        let w = walk(&e, 3, 24 * H, false).unwrap();
        assert_eq!(w.level, 3);
        assert_eq!(w.times, vec![0, H, 4 * H]);
        // With a 3-hour window, the first A cannot reach C; the second can.
        let w = walk(&e, 3, 3 * H, false).unwrap();
        assert_eq!((w.level, w.times.clone()), (3, vec![2 * H, 3 * H, 4 * H]));
        // No first step: no walk.
        assert!(walk(&[(0, 2), (H, 4)], 3, 24 * H, false).is_none());
        // C before B does not count.
        assert_eq!(
            walk(&[(0, 1), (H, 4), (2 * H, 2)], 3, 24 * H, false)
                .unwrap()
                .level,
            2
        );
    }

    #[test]
    fn strict_order_breaks_on_any_other_event() {
        let e = [(0, 1), (H, 0), (2 * H, 2)];
        assert_eq!(walk(&e, 2, 24 * H, true).unwrap().level, 1);
        assert_eq!(walk(&e, 2, 24 * H, false).unwrap().level, 2);
        // One event can serve one step of a walk only.
        assert_eq!(walk(&[(0, 3)], 2, H, false).unwrap().level, 1);
        assert_eq!(walk(&[(0, 3), (1, 3)], 2, H, true).unwrap().level, 2);
    }

    #[test]
    fn summaries_count_rates_and_median_times() {
        let w1 = Walk {
            level: 3,
            times: vec![0, 1000, 4000],
            start: 0,
        };
        let w2 = Walk {
            level: 2,
            times: vec![0, 3000],
            start: 0,
        };
        let w3 = Walk {
            level: 1,
            times: vec![0],
            start: 0,
        };
        let names = vec!["a".into(), "b".into(), "c".into()];
        let s = summarise(&names, &[&w1, &w2, &w3]);
        assert_eq!(s.iter().map(|s| s.count).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(s[1].median_time_to_convert_seconds, Some(2.0));
        assert_eq!(s[2].median_time_to_convert_seconds, Some(3.0));
        assert!((s[2].conversion_rate - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s[2].step_conversion_rate, 0.5);
        assert_eq!(s[0].median_time_to_convert_seconds, None);
    }
}
