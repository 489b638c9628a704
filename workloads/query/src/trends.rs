//! Trends: one or more series over time buckets, optionally broken down by a property, with a
//! formula across the series.
//!
//! Each series is one statement grouped by bucket (and breakdown value); buckets without events
//! are filled with 0. A breakdown first finds its top values (by events matching any series) so
//! that every series and the formula share the same values, and folds the rest into `$other`.

use std::collections::HashMap;

use cairn_common::clickhouse::EVENTS_TABLE;
use cairn_common::http::ApiError;
use clickhouse::Row;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::filters::{
    all_conditions, event_condition, prop_nullable_of, prop_number, uses_person, uses_session, PropertyFilter,
    PropertyKind,
};
use crate::formula;
use crate::persons;
use crate::sql::Sql;
use crate::timerange::{label, resolve, Interval};

/// What a series measures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Math {
    /// Number of events.
    #[default]
    Total,
    /// Distinct persons (a distinct id's person: see `persons`).
    #[serde(alias = "dau")]
    UniqueUsers,
    /// Distinct sessions (`$session_id`; events without one are not counted).
    UniqueSessions,
    /// A numeric property (`math_property`) aggregated over the events.
    Sum,
    Avg,
    Min,
    Max,
    Median,
    P90,
    P95,
    P99,
    /// Events per user, aggregated over the users active in the bucket.
    PerUserAvg,
    PerUserMin,
    PerUserMax,
    PerUserMedian,
    PerUserP90,
    PerUserP95,
    PerUserP99,
}

impl Math {
    fn needs_property(self) -> bool {
        matches!(self, Math::Sum | Math::Avg | Math::Min | Math::Max | Math::Median | Math::P90 | Math::P95 | Math::P99)
    }

    /// Whether the value over a range is the sum of its buckets' values.
    fn additive(self) -> bool {
        matches!(self, Math::Total | Math::Sum)
    }

    fn per_user(self) -> bool {
        matches!(
            self,
            Math::PerUserAvg
                | Math::PerUserMin
                | Math::PerUserMax
                | Math::PerUserMedian
                | Math::PerUserP90
                | Math::PerUserP95
                | Math::PerUserP99
        )
    }

    /// The aggregate applied to `x` (a property's value, a person's event count, or the person).
    fn aggregate(self, x: &str) -> String {
        let f = match self {
            Math::Sum => "sum",
            Math::Avg | Math::PerUserAvg => "avg",
            Math::Min | Math::PerUserMin => "min",
            Math::Max | Math::PerUserMax => "max",
            Math::Median | Math::PerUserMedian => "quantileExactInclusive(0.5)",
            Math::P90 | Math::PerUserP90 => "quantileExactInclusive(0.9)",
            Math::P95 | Math::PerUserP95 => "quantileExactInclusive(0.95)",
            Math::P99 | Math::PerUserP99 => "quantileExactInclusive(0.99)",
            Math::Total => return "toFloat64(count())".into(),
            // `x`: the person (see `series_sql`).
            Math::UniqueUsers => return format!("toFloat64(uniqExact({x}))"),
            // `x`: the event's session id, '' without one (see `series_sql`).
            Math::UniqueSessions => return format!("toFloat64(uniqExactIf({x}, {x} != ''))"),
        };
        format!("toFloat64(ifNull({f}({x}), 0))")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// The event to count; absent or null: every event.
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub math: Math,
    /// The numeric property for `sum`, `avg`, `min`, `max`, `median`, `p90`, `p95`, `p99`.
    #[serde(default)]
    pub math_property: Option<String>,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
    /// A display name; defaults to the event's.
    #[serde(default)]
    pub name: Option<String>,
}

/// What splits the results: an event's or a person's property (`property`, `type`), or
/// `{"type": "cohort", "cohorts": [ids]}`: one group per cohort, of the events (funnels: the
/// walks) of its persons; a person in two cohorts counts in both, one in none is left out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breakdown {
    #[serde(default)]
    pub property: String,
    /// `person`: the person's property (default: the event's); `cohort`: by cohort.
    #[serde(default, rename = "type")]
    pub kind: PropertyKind,
    /// How many values to show before the rest become `$other` (default 10).
    #[serde(default)]
    pub limit: Option<usize>,
    /// A cohort breakdown's cohorts, in the order their groups are shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cohorts: Vec<i64>,
    /// The cohorts, loaded before the statement is built (`cohorts::resolve`).
    #[serde(skip)]
    pub cohort_specs: Vec<std::sync::Arc<crate::cohorts::CohortSpec>>,
}

impl Breakdown {
    /// Refuses a breakdown without its property or cohorts, or with too many groups.
    pub fn validate(&self, max_breakdown: usize) -> Result<(), ApiError> {
        if self.kind == PropertyKind::Cohort {
            if self.cohorts.is_empty() {
                return Err(ApiError::invalid("breakdown.cohorts", "a cohort breakdown lists one or more cohort ids"));
            }
            if self.cohorts.len() > max_breakdown {
                return Err(ApiError::invalid("breakdown.cohorts", format!("at most {max_breakdown} cohorts")));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = self.cohorts.iter().find(|c| !seen.insert(**c)) {
                return Err(ApiError::invalid("breakdown.cohorts", format!("cohort {dup} is listed twice")));
            }
            if !self.property.is_empty() {
                return Err(ApiError::invalid("breakdown.property", "a cohort breakdown has cohorts, not a property"));
            }
            return Ok(());
        }
        if self.property.is_empty() {
            return Err(ApiError::invalid("breakdown.property", "the property is empty"));
        }
        if !self.cohorts.is_empty() {
            return Err(ApiError::invalid("breakdown.cohorts", "only a breakdown of type cohort has cohorts"));
        }
        if self.limit.is_some_and(|l| l == 0 || l > max_breakdown) {
            return Err(ApiError::invalid("breakdown.limit", format!("between 1 and {max_breakdown}")));
        }
        Ok(())
    }

    /// A cohort breakdown's groups: its cohorts' ids as text.
    pub fn cohort_values(&self) -> Option<Vec<String>> {
        (self.kind == PropertyKind::Cohort).then(|| self.cohorts.iter().map(i64::to_string).collect())
    }

    /// For a cohort breakdown, the array of the cohorts (ids as text) the event's person is in.
    pub fn cohort_memberships(&self, sql: &mut Sql) -> Result<String, ApiError> {
        let mut parts = Vec::new();
        for id in &self.cohorts {
            let spec = self
                .cohort_specs
                .iter()
                .find(|s| s.id == *id)
                .ok_or_else(|| ApiError::invalid("breakdown.cohorts", format!("no cohort {id} in this project")))?;
            let ids = crate::cohorts::ids_sql(sql, spec)?;
            let label = sql.str(id.to_string());
            parts.push(format!("if(cityHash64(distinct_id) IN {ids}, [{label}], [])"));
        }
        Ok(format!("arrayConcat({})", parts.join(", ")))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrendsRequest {
    pub series: Vec<Series>,
    #[serde(default)]
    pub date_from: Option<String>,
    #[serde(default)]
    pub date_to: Option<String>,
    #[serde(default)]
    pub interval: Interval,
    #[serde(default)]
    pub timezone: Option<String>,
    /// Filters every series shares.
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
    /// A formula across the series (`A / B`); its result comes beside the series'.
    #[serde(default)]
    pub formula: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrendResult {
    /// The series' index in the request, and its letter in formulas.
    pub series: usize,
    pub label: String,
    pub name: String,
    pub math: Math,
    pub breakdown_value: Option<String>,
    pub data: Vec<f64>,
    /// The sum of `data`.
    pub total: f64,
    /// The series' value over the whole range: `total` for `total` and `sum`; computed over the
    /// range for the rest (unique users over the range, not the sum of each bucket's).
    pub aggregated_value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FormulaResult {
    pub formula: String,
    pub breakdown_value: Option<String>,
    /// `null` where the formula has no value (a division by zero).
    pub data: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrendsResponse {
    pub interval: Interval,
    pub timezone: String,
    pub date_from: String,
    pub date_to: String,
    /// Each bucket's start, in the timezone.
    pub labels: Vec<String>,
    pub results: Vec<TrendResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formula: Option<Vec<FormulaResult>>,
}

/// The breakdown value of events where the property is missing.
pub const NONE_VALUE: &str = "$none";
/// The breakdown value that gathers every value beyond the top ones.
pub const OTHER_VALUE: &str = "$other";

#[derive(Row, Deserialize)]
struct BucketRow {
    b: u32,
    bd: String,
    v: f64,
}

#[derive(Row, Deserialize)]
struct TopRow {
    bd: String,
    #[allow(dead_code)]
    c: u64,
}

/// The breakdown property's value as an expression (`$none` when missing); for a cohort
/// breakdown, the cohorts the event's person is in, comma-separated.
pub fn breakdown_expr(sql: &mut Sql, b: &Breakdown) -> Result<String, ApiError> {
    if b.kind == PropertyKind::Cohort {
        return Ok(format!("arrayStringConcat({}, ',')", b.cohort_memberships(sql)?));
    }
    if b.kind == PropertyKind::Session {
        crate::filters::check_session(sql, "breakdown.type", "breakdown.property", &b.property)?;
    }
    let v = prop_nullable_of(sql, b.kind, &b.property);
    Ok(format!("ifNull({v}, '{NONE_VALUE}')"))
}

/// Top breakdown values for events matching `condition` (built by `cond`), and whether there
/// were more.
/// `person_properties`, `session_properties`: whether `cond` or the breakdown reads persons' or
/// sessions' properties.
#[allow(clippy::too_many_arguments)]
pub async fn top_values(
    engine: &Engine,
    project_id: u64,
    range: (i64, i64),
    breakdown: &Breakdown,
    limit: usize,
    person_properties: bool,
    session_properties: bool,
    cond: impl FnOnce(&mut Sql) -> Result<String, ApiError>,
) -> Result<(Vec<String>, bool), ApiError> {
    let mut sql = Sql::new();
    if session_properties {
        sql.join_sessions();
    }
    let bd = breakdown_expr(&mut sql, breakdown)?;
    sql.push("SELECT ").push(&bd).push(" AS bd, count() AS c");
    engine.source.scoped_with(&mut sql, EVENTS_TABLE, project_id, Some(range.0), Some(range.1), person_properties);
    let c = cond(&mut sql)?;
    sql.push(" AND (").push(&c).push(") GROUP BY bd ORDER BY c DESC, bd LIMIT ");
    sql.push(&(limit + 1).to_string());
    let rows: Vec<TopRow> = engine.fetch_all(&sql).await?;
    let more = rows.len() > limit;
    Ok((rows.into_iter().take(limit).map(|r| r.bd).collect(), more))
}

impl TrendsRequest {
    /// Whether a filter or the breakdown reads persons' properties (then statements join them in).
    pub fn uses_person_properties(&self) -> bool {
        uses_person(&self.filters)
            || self.series.iter().any(|s| uses_person(&s.filters))
            || self.breakdown.as_ref().is_some_and(|b| b.kind == PropertyKind::Person)
    }

    /// Whether a filter or the breakdown reads sessions' properties (then statements join them in).
    pub fn uses_session_properties(&self) -> bool {
        uses_session(&self.filters)
            || self.series.iter().any(|s| uses_session(&s.filters))
            || self.breakdown.as_ref().is_some_and(|b| b.kind == PropertyKind::Session)
    }
}

/// Validates the request against the limits, naming the field at fault.
fn validate(req: &TrendsRequest, engine: &Engine) -> Result<(), ApiError> {
    let limits = &engine.limits;
    if req.series.is_empty() {
        return Err(ApiError::invalid("series", "at least one series is needed"));
    }
    if req.series.len() > limits.max_series {
        return Err(ApiError::invalid("series", format!("at most {} series", limits.max_series)));
    }
    for (i, s) in req.series.iter().enumerate() {
        if s.math.needs_property() && s.math_property.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::invalid(format!("series[{i}].math_property"), "this math needs a numeric property"));
        }
    }
    if let Some(b) = &req.breakdown {
        b.validate(limits.max_breakdown)?;
    }
    Ok(())
}

/// Appends a series' conditions (event, its filters, the shared filters) after a `WHERE`.
fn series_condition(sql: &mut Sql, req: &TrendsRequest, i: usize, max_filters: usize) -> Result<String, ApiError> {
    let s = &req.series[i];
    let event = event_condition(sql, s.event.as_deref(), &format!("series[{i}].event"))?;
    let own = all_conditions(sql, &s.filters, &format!("series[{i}].filters"), max_filters)?;
    let shared = all_conditions(sql, &req.filters, "filters", max_filters)?;
    Ok(format!("({event}) AND ({own}) AND ({shared})"))
}

pub async fn run(
    engine: &Engine,
    project_id: u64,
    req: &TrendsRequest,
    now: Timestamp,
) -> Result<TrendsResponse, ApiError> {
    validate(req, engine)?;
    let range = resolve(
        req.date_from.as_deref(),
        req.date_to.as_deref(),
        req.timezone.as_deref(),
        "-7d",
        engine.limits.max_range_days,
        now,
    )?;
    let buckets = range.buckets(req.interval, engine.limits.max_buckets)?;
    let formula = req
        .formula
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .map(|f| formula::parse(f, req.series.len()))
        .transpose()?;
    let bounds = (range.from_ms(), range.to_ms());

    // The breakdown's values, shared by every series.
    let mut breakdown_values: Option<(Vec<String>, bool)> = None;
    if let Some(values) = req.breakdown.as_ref().and_then(Breakdown::cohort_values) {
        breakdown_values = Some((values, false));
    } else if let Some(b) = &req.breakdown {
        let limit = b.limit.unwrap_or(10).min(engine.limits.max_breakdown);
        let found = top_values(
            engine,
            project_id,
            bounds,
            b,
            limit,
            req.uses_person_properties(),
            req.uses_session_properties(),
            |sql| {
                let mut any = Vec::new();
                for i in 0..req.series.len() {
                    any.push(format!("({})", series_condition(sql, req, i, engine.limits.max_filters)?));
                }
                Ok(any.join(" OR "))
            },
        )
        .await?;
        breakdown_values = Some(found);
    }

    let statements = (0..req.series.len())
        .map(|i| series_sql(engine, project_id, req, i, bounds, &range.tz_name, breakdown_values.as_ref(), false))
        .collect::<Result<Vec<_>, _>>()?;
    // Maths whose range value is not the sum of the buckets' get one more statement each.
    let whole_range = (0..req.series.len())
        .filter(|&i| !req.series[i].math.additive())
        .map(|i| {
            series_sql(engine, project_id, req, i, bounds, &range.tz_name, breakdown_values.as_ref(), true)
                .map(|sql| (i, sql))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (fetched, fetched_whole) = futures::future::try_join(
        futures::future::try_join_all(statements.iter().map(|sql| engine.fetch_all::<BucketRow>(sql))),
        futures::future::try_join_all(whole_range.iter().map(|(_, sql)| engine.fetch_all::<BucketRow>(sql))),
    )
    .await?;
    let mut range_values: HashMap<(usize, String), f64> = HashMap::new();
    for ((i, _), rows) in whole_range.iter().zip(fetched_whole) {
        for r in rows {
            range_values.insert((*i, r.bd), r.v);
        }
    }

    let index: HashMap<i64, usize> = buckets.iter().enumerate().map(|(i, b)| (b.timestamp().as_second(), i)).collect();
    let groups: Vec<Option<String>> = match &breakdown_values {
        None => vec![None],
        Some((values, more)) => {
            let mut g: Vec<Option<String>> = values.iter().cloned().map(Some).collect();
            if *more {
                g.push(Some(OTHER_VALUE.to_string()));
            }
            g
        }
    };

    let mut results = Vec::new();
    for (i, rows) in fetched.into_iter().enumerate() {
        let mut per_group: HashMap<String, Vec<f64>> = HashMap::new();
        for r in rows {
            if let Some(&bi) = index.get(&i64::from(r.b)) {
                per_group.entry(r.bd).or_insert_with(|| vec![0.0; buckets.len()])[bi] += r.v;
            }
        }
        let s = &req.series[i];
        for g in &groups {
            let key = g.clone().unwrap_or_default();
            let data = per_group.remove(&key).unwrap_or_else(|| vec![0.0; buckets.len()]);
            results.push(TrendResult {
                series: i,
                label: series_letter(i),
                name: s.name.clone().or_else(|| s.event.clone()).unwrap_or_else(|| "All events".into()),
                math: s.math,
                breakdown_value: g.clone(),
                total: data.iter().sum(),
                aggregated_value: if s.math.additive() {
                    data.iter().sum()
                } else {
                    range_values.get(&(i, key)).copied().unwrap_or(0.0)
                },
                data,
            });
        }
    }

    let formula = formula.map(|f| {
        groups
            .iter()
            .map(|g| {
                let series: Vec<&TrendResult> = (0..req.series.len())
                    .filter_map(|i| results.iter().find(|r| r.series == i && &r.breakdown_value == g))
                    .collect();
                let data =
                    (0..buckets.len()).map(|b| f.eval(&series.iter().map(|r| r.data[b]).collect::<Vec<_>>())).collect();
                FormulaResult { formula: req.formula.clone().unwrap_or_default(), breakdown_value: g.clone(), data }
            })
            .collect()
    });

    Ok(TrendsResponse {
        interval: req.interval,
        timezone: range.tz_name.clone(),
        date_from: label(&range.from),
        date_to: label(&range.to),
        labels: buckets.iter().map(label).collect(),
        results,
        formula,
    })
}

/// `A`, `B`, … for series 0, 1, ….
pub fn series_letter(i: usize) -> String {
    ((b'A' + (i % 26) as u8) as char).to_string()
}

#[allow(clippy::too_many_arguments)]
fn series_sql(
    engine: &Engine,
    project_id: u64,
    req: &TrendsRequest,
    i: usize,
    bounds: (i64, i64),
    tz: &str,
    breakdown: Option<&(Vec<String>, bool)>,
    whole_range: bool,
) -> Result<Sql, ApiError> {
    let s = &req.series[i];
    let person_properties = req.uses_person_properties();
    let mut sql = Sql::new();
    if req.uses_session_properties() {
        sql.join_sessions();
    }
    let tz = sql.str(tz);
    // Over the whole range, every row falls in one bucket, 0.
    let bucket = if whole_range { "toUInt32(0)".to_string() } else { req.interval.bucket_sql(&tz) };
    let bd = match (&req.breakdown, breakdown) {
        // One row per cohort the event's person is in (none: the event is left out).
        (Some(b), Some(_)) if b.kind == PropertyKind::Cohort => {
            format!("arrayJoin({})", b.cohort_memberships(&mut sql)?)
        }
        (Some(b), Some((values, more))) => {
            let expr = breakdown_expr(&mut sql, b)?;
            if *more {
                let top = sql.strs(values.clone());
                // `IN`, not `has`: decided per distinct value of a LowCardinality column (on 3.6
                // million rows, 185 → 108 ms).
                format!("if({expr} IN {top}, {expr}, '{OTHER_VALUE}')")
            } else {
                expr
            }
        }
        _ => "''".to_string(),
    };
    if s.math.per_user() || s.math == Math::UniqueUsers {
        // Each event's person: its distinct id's hash through the project's overrides (a hash
        // join on the small override table; measured no slower than uniqExact over the ids, and
        // faster than aggregating per id first — docs/BENCHMARKS.md, "Persons").
        let person = persons::person_of("e.h");
        if s.math == Math::UniqueUsers {
            sql.push("SELECT e.b AS b, e.bd AS bd, ").push(&s.math.aggregate(&person)).push(" AS v FROM (SELECT ");
        } else {
            sql.push("SELECT b, bd, ").push(&s.math.aggregate("c")).push(" AS v FROM (SELECT e.b AS b, e.bd AS bd, ");
            sql.push(&person).push(" AS person, count() AS c FROM (SELECT ");
        }
        sql.push(&bucket).push(" AS b, ").push(&bd).push(" AS bd, cityHash64(distinct_id) AS h");
        engine.source.scoped_with(
            &mut sql,
            EVENTS_TABLE,
            project_id,
            Some(bounds.0),
            Some(bounds.1),
            person_properties,
        );
        let cond = series_condition(&mut sql, req, i, engine.limits.max_filters)?;
        sql.push(" AND ").push(&cond).push(") AS e");
        persons::join_overrides(&mut sql, project_id, "e.h");
        if s.math == Math::UniqueUsers {
            sql.push(" GROUP BY b, bd");
        } else {
            sql.push(" GROUP BY b, bd, person) GROUP BY b, bd");
        }
    } else {
        let value = match (&s.math_property, s.math.needs_property()) {
            (Some(p), true) => prop_number(&mut sql, p),
            _ if s.math == Math::UniqueSessions => {
                format!("ifNull({}, '')", crate::filters::prop_nullable(&mut sql, "$session_id"))
            }
            _ => String::new(),
        };
        sql.push("SELECT ")
            .push(&bucket)
            .push(" AS b, ")
            .push(&bd)
            .push(" AS bd, ")
            .push(&s.math.aggregate(&value))
            .push(" AS v");
        engine.source.scoped_with(
            &mut sql,
            EVENTS_TABLE,
            project_id,
            Some(bounds.0),
            Some(bounds.1),
            person_properties,
        );
        let cond = series_condition(&mut sql, req, i, engine.limits.max_filters)?;
        sql.push(" AND ").push(&cond);
        if s.math.needs_property() {
            sql.push(" AND isNotNull(").push(&value).push(")");
        }
        sql.push(" GROUP BY b, bd");
    }
    Ok(sql)
}
