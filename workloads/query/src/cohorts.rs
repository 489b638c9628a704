//! Cohorts: saved sets of persons that filter any analysis.
//!
//! - Dynamic cohorts: person property filters and behaviour ("did `purchase` at least 2 times in
//!   the last 30 days"), all of which a person must meet, evaluated when queried.
//! - Static cohorts: distinct ids given once (a CSV); their persons, as identity makes them.
//!
//! A filter `{"type": "cohort", "key": "id", "value": 7}` (or `"operator": "is_not"`) keeps the
//! events of the cohort's persons (or of everyone else): the request's cohorts are loaded from
//! PostgreSQL before its SQL is built ([`resolve`]), and the condition is
//! `cityHash64(distinct_id) IN (the hashes of every distinct id of the cohort's persons)`.

use std::sync::Arc;

use cairn_common::clickhouse::{DISTINCT_ID_ACTIVITY_TABLE, EVENTS_TABLE};
use cairn_common::http::ApiError;
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;

use crate::engine::Engine;
use crate::filters::{all_conditions, PropertyFilter, PropertyKind};
use crate::persons::{overrides, person_of, persons_with_properties, OVERRIDES, PERSON_PROPERTIES};
use crate::sql::Sql;
use crate::timerange::rfc3339;

/// "Did `event` at least `min_count` times in the last `days` days."
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    pub event: String,
    #[serde(default = "one")]
    pub min_count: u32,
    pub days: u32,
}

fn one() -> u32 {
    1
}

/// A dynamic cohort's rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Person property filters (their `type` is ignored: a cohort reads persons' properties).
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    #[serde(default)]
    pub behaviour: Vec<Behaviour>,
}

/// What a cohort filter is rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortSpec {
    pub project_id: u64,
    pub id: i64,
    pub rule: Rule,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Dynamic(Definition),
    Static(Vec<String>),
}

/// Most distinct ids a static cohort holds.
pub const MAX_STATIC_IDS: usize = 100_000;
/// Most conditions of a dynamic cohort.
const MAX_CONDITIONS: usize = 20;

/// `POST /cohorts`: a name and either a rule (`properties`, `behaviour`) or `distinct_ids`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CohortInput {
    pub name: String,
    #[serde(default)]
    pub properties: Option<Vec<PropertyFilter>>,
    #[serde(default)]
    pub behaviour: Option<Vec<Behaviour>>,
    #[serde(default)]
    pub distinct_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cohort {
    pub id: i64,
    pub name: String,
    /// `dynamic` or `static`.
    pub kind: String,
    pub properties: Vec<PropertyFilter>,
    pub behaviour: Vec<Behaviour>,
    /// A static cohort's distinct ids (how many).
    pub distinct_id_count: usize,
    /// Persons in it when last computed (null: never).
    pub size: Option<i64>,
    pub size_computed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cohorts {
    pub results: Vec<Cohort>,
}

fn validate_rule(def: &Definition) -> Result<(), ApiError> {
    if def.properties.is_empty() && def.behaviour.is_empty() {
        return Err(ApiError::invalid("properties", "a cohort needs a property filter, a behaviour or distinct_ids"));
    }
    if def.properties.len() + def.behaviour.len() > MAX_CONDITIONS {
        return Err(ApiError::invalid("properties", format!("at most {MAX_CONDITIONS} conditions")));
    }
    for (i, f) in def.properties.iter().enumerate() {
        if f.kind == PropertyKind::Cohort {
            return Err(ApiError::invalid(format!("properties[{i}].type"), "a cohort cannot contain a cohort"));
        }
    }
    for (i, b) in def.behaviour.iter().enumerate() {
        if b.event.is_empty() || b.event.len() > 400 {
            return Err(ApiError::invalid(format!("behaviour[{i}].event"), "1 to 400 characters"));
        }
        if b.days == 0 || b.days > 3660 {
            return Err(ApiError::invalid(format!("behaviour[{i}].days"), "between 1 and 3660"));
        }
        if b.min_count == 0 || b.min_count > 1_000_000 {
            return Err(ApiError::invalid(format!("behaviour[{i}].min_count"), "between 1 and 1,000,000"));
        }
    }
    // The filters must render (keys, operators, values): checked once here rather than at every use.
    let persons: Vec<PropertyFilter> =
        def.properties.iter().cloned().map(|f| PropertyFilter { kind: PropertyKind::Person, ..f }).collect();
    all_conditions(&mut Sql::new(), &persons, "properties", MAX_CONDITIONS)?;
    Ok(())
}

/// The persons of the project (every distinct id's person): `(SELECT DISTINCT person …)`.
fn all_persons(sql: &mut Sql, project_id: u64) -> String {
    let project = sql.u64(project_id);
    let overrides = overrides(sql, project_id);
    format!(
        "(SELECT DISTINCT {} AS person FROM (SELECT DISTINCT id_hash FROM {DISTINCT_ID_ACTIVITY_TABLE} WHERE project_id = {project}) AS d \
         LEFT JOIN {overrides} AS {OVERRIDES} ON d.id_hash = {OVERRIDES}.id_hash)",
        person_of("d.id_hash")
    )
}

/// The cohort's persons: `(SELECT person …)`.
pub fn persons_sql(sql: &mut Sql, spec: &CohortSpec) -> Result<String, ApiError> {
    let project_id = spec.project_id;
    match &spec.rule {
        Rule::Static(ids) => {
            // The listed ids the project has seen (an id never seen is nobody yet).
            let ids = sql.strs(ids.clone());
            let project = sql.u64(project_id);
            let overrides = overrides(sql, project_id);
            Ok(format!(
                "(SELECT DISTINCT {} AS person FROM (SELECT cityHash64(arrayJoin({ids})) AS h) AS s \
                 LEFT JOIN {overrides} AS {OVERRIDES} ON s.h = {OVERRIDES}.id_hash \
                 WHERE s.h IN (SELECT id_hash FROM {DISTINCT_ID_ACTIVITY_TABLE} WHERE project_id = {project}))",
                person_of("s.h")
            ))
        }
        Rule::Dynamic(def) => {
            let mut parts = Vec::new();
            if !def.properties.is_empty() {
                let persons: Vec<PropertyFilter> = def
                    .properties
                    .iter()
                    .cloned()
                    .map(|f| PropertyFilter { kind: PropertyKind::Person, ..f })
                    .collect();
                let all = all_persons(sql, project_id);
                let with_properties = persons_with_properties(sql, project_id);
                let cond = all_conditions(sql, &persons, "properties", MAX_CONDITIONS)?;
                parts.push(format!(
                    "(SELECT person FROM (SELECT a.person AS person, ifNull(pp.properties, '') AS {PERSON_PROPERTIES} \
                     FROM {all} AS a LEFT JOIN {with_properties} AS pp ON a.person = pp.person) WHERE {cond})"
                ));
            }
            for b in &def.behaviour {
                let project = sql.u64(project_id);
                let event = sql.str(b.event.clone());
                let days = sql.u64(u64::from(b.days));
                let min = sql.u64(u64::from(b.min_count));
                let overrides = overrides(sql, project_id);
                // Events as they are now: changed ones at their latest version, deleted ones not
                // at all (cohorts are computed now and then: the merge's cost is paid always).
                let events = crate::sql::EventsSource::merged(sql, EVENTS_TABLE, project_id, None, None, true);
                parts.push(format!(
                    "(SELECT {person} AS person FROM (SELECT cityHash64(distinct_id) AS h FROM {events} \
                     WHERE project_id = {project} AND event = {event} AND timestamp >= now64(3) - toIntervalDay({days})) AS e \
                     LEFT JOIN {overrides} AS {OVERRIDES} ON e.h = {OVERRIDES}.id_hash GROUP BY person HAVING count() >= {min})",
                    person = person_of("e.h")
                ));
            }
            let mut parts = parts.into_iter();
            let first = parts.next().ok_or_else(|| ApiError::internal("a dynamic cohort without conditions"))?;
            let rest: Vec<String> = parts.map(|p| format!("person IN {p}")).collect();
            if rest.is_empty() {
                Ok(first)
            } else {
                Ok(format!("(SELECT person FROM {first} WHERE {})", rest.join(" AND ")))
            }
        }
    }
}

/// The hashes of every distinct id of the cohort's persons: `(SELECT id_hash …)`.
pub fn ids_sql(sql: &mut Sql, spec: &CohortSpec) -> Result<String, ApiError> {
    let persons = persons_sql(sql, spec)?;
    let project = sql.u64(spec.project_id);
    let overrides = overrides(sql, spec.project_id);
    Ok(format!(
        "(SELECT d.id_hash FROM (SELECT DISTINCT id_hash FROM {DISTINCT_ID_ACTIVITY_TABLE} WHERE project_id = {project}) AS d \
         LEFT JOIN {overrides} AS {OVERRIDES} ON d.id_hash = {OVERRIDES}.id_hash WHERE {} IN {persons})",
        person_of("d.id_hash")
    ))
}

/// Anything that carries property filters (the analyses' requests).
pub trait HasFilters {
    fn filters_mut(&mut self) -> Vec<&mut PropertyFilter>;
    /// The breakdown, for the analyses that have one.
    fn breakdown_mut(&mut self) -> Option<&mut crate::trends::Breakdown> {
        None
    }
}

impl HasFilters for crate::trends::TrendsRequest {
    fn filters_mut(&mut self) -> Vec<&mut PropertyFilter> {
        let mut out: Vec<&mut PropertyFilter> = self.filters.iter_mut().collect();
        for s in &mut self.series {
            out.extend(s.filters.iter_mut());
        }
        out
    }

    fn breakdown_mut(&mut self) -> Option<&mut crate::trends::Breakdown> {
        self.breakdown.as_mut()
    }
}

impl HasFilters for crate::funnels::FunnelsRequest {
    fn filters_mut(&mut self) -> Vec<&mut PropertyFilter> {
        let mut out: Vec<&mut PropertyFilter> = self.filters.iter_mut().collect();
        for s in &mut self.steps {
            out.extend(s.filters.iter_mut());
        }
        out
    }

    fn breakdown_mut(&mut self) -> Option<&mut crate::trends::Breakdown> {
        self.breakdown.as_mut()
    }
}

impl HasFilters for crate::retention::RetentionRequest {
    fn filters_mut(&mut self) -> Vec<&mut PropertyFilter> {
        let mut out: Vec<&mut PropertyFilter> = self.filters.iter_mut().collect();
        out.extend(self.target_event.filters.iter_mut());
        if let Some(r) = &mut self.returning_event {
            out.extend(r.filters.iter_mut());
        }
        out
    }
}

impl HasFilters for crate::stickiness::StickinessRequest {
    fn filters_mut(&mut self) -> Vec<&mut PropertyFilter> {
        let mut out: Vec<&mut PropertyFilter> = self.filters.iter_mut().collect();
        for s in &mut self.series {
            out.extend(s.filters.iter_mut());
        }
        out
    }
}

impl HasFilters for crate::lifecycle::LifecycleRequest {
    fn filters_mut(&mut self) -> Vec<&mut PropertyFilter> {
        self.filters.iter_mut().chain(self.event.filters.iter_mut()).collect()
    }
}

impl HasFilters for crate::paths::PathsRequest {
    fn filters_mut(&mut self) -> Vec<&mut PropertyFilter> {
        self.filters.iter_mut().collect()
    }
}

impl HasFilters for crate::sessions::SessionsRequest {
    fn filters_mut(&mut self) -> Vec<&mut PropertyFilter> {
        self.filters.iter_mut().collect()
    }
}

fn cohort_id(f: &PropertyFilter) -> Result<i64, ApiError> {
    match &f.value {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
    .ok_or_else(|| ApiError::invalid("filters", "a cohort filter's value is the cohort's id"))
}

type CohortRow = (
    i64,
    String,
    Option<sqlx::types::Json<Definition>>,
    Option<Vec<String>>,
    Option<i64>,
    Option<time::OffsetDateTime>,
    time::OffsetDateTime,
    time::OffsetDateTime,
);

const COLUMNS: &str = "id, name, definition, static_ids, size, size_computed_at, created_at, updated_at";

fn spec_of(project_id: u64, row: &CohortRow) -> CohortSpec {
    let rule = match (&row.2, &row.3) {
        (_, Some(ids)) => Rule::Static(ids.clone()),
        (Some(def), None) => Rule::Dynamic(def.0.clone()),
        (None, None) => Rule::Static(Vec::new()),
    };
    CohortSpec { project_id, id: row.0, rule }
}

/// Loads the cohorts a request's filters name (400 for one the project does not have).
pub async fn resolve(pg: &PgPool, project_id: u64, req: &mut impl HasFilters) -> Result<(), ApiError> {
    let mut wanted: Vec<i64> = req
        .filters_mut()
        .iter()
        .filter(|f| f.kind == PropertyKind::Cohort)
        .map(|f| cohort_id(f))
        .collect::<Result<_, _>>()?;
    if let Some(b) = req.breakdown_mut().filter(|b| b.kind == PropertyKind::Cohort) {
        wanted.extend(b.cohorts.iter().copied());
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let rows: Vec<CohortRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM cohorts WHERE project_id = $1 AND id = ANY($2)"))
            .bind(project_id as i64)
            .bind(&wanted)
            .fetch_all(pg)
            .await
            .map_err(cairn_postgres::api_error)?;
    for f in req.filters_mut().into_iter().filter(|f| f.kind == PropertyKind::Cohort) {
        let id = cohort_id(f)?;
        let row = rows
            .iter()
            .find(|r| r.0 == id)
            .ok_or_else(|| ApiError::invalid("filters", format!("no cohort {id} in this project")))?;
        f.cohort = Some(Arc::new(spec_of(project_id, row)));
    }
    if let Some(b) = req.breakdown_mut().filter(|b| b.kind == PropertyKind::Cohort) {
        b.cohort_specs =
            b.cohorts
                .iter()
                .map(|id| {
                    rows.iter().find(|r| r.0 == *id).map(|row| Arc::new(spec_of(project_id, row))).ok_or_else(|| {
                        ApiError::invalid("breakdown.cohorts", format!("no cohort {id} in this project"))
                    })
                })
                .collect::<Result<_, _>>()?;
    }
    Ok(())
}

fn to_api(row: CohortRow) -> Cohort {
    let (kind, def, count) = match (&row.2, &row.3) {
        (_, Some(ids)) => ("static", Definition::default(), ids.len()),
        (Some(d), None) => ("dynamic", d.0.clone(), 0),
        (None, None) => ("static", Definition::default(), 0),
    };
    Cohort {
        id: row.0,
        name: row.1,
        kind: kind.into(),
        properties: def.properties,
        behaviour: def.behaviour,
        distinct_id_count: count,
        size: row.4,
        size_computed_at: row.5.map(rfc3339),
        created_at: rfc3339(row.6),
        updated_at: rfc3339(row.7),
    }
}

pub async fn create(pg: &PgPool, project_id: u64, user_id: i64, input: CohortInput) -> Result<Cohort, ApiError> {
    let name = input.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::invalid("name", "1 to 200 characters"));
    }
    let (definition, static_ids) = match (input.distinct_ids, input.properties, input.behaviour) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::invalid(
                "distinct_ids",
                "a cohort is either static (distinct_ids) or dynamic (properties, behaviour)",
            ))
        }
        (Some(ids), None, None) => {
            let mut ids: Vec<String> =
                ids.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            ids.sort();
            ids.dedup();
            if ids.is_empty() || ids.len() > MAX_STATIC_IDS {
                return Err(ApiError::invalid("distinct_ids", format!("1 to {MAX_STATIC_IDS} distinct ids")));
            }
            if ids.iter().any(|id| id.len() > 400) {
                return Err(ApiError::invalid("distinct_ids", "a distinct id has at most 400 characters"));
            }
            (None, Some(ids))
        }
        (None, properties, behaviour) => {
            let def =
                Definition { properties: properties.unwrap_or_default(), behaviour: behaviour.unwrap_or_default() };
            validate_rule(&def)?;
            (Some(sqlx::types::Json(def)), None)
        }
    };
    let row: CohortRow = sqlx::query_as(&format!(
        "INSERT INTO cohorts (project_id, name, definition, static_ids, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(project_id as i64)
    .bind(name)
    .bind(definition)
    .bind(static_ids)
    .bind(user_id)
    .fetch_one(pg)
    .await
    .map_err(cairn_postgres::api_error)?;
    Ok(to_api(row))
}

pub async fn list(pg: &PgPool, project_id: u64) -> Result<Cohorts, ApiError> {
    let rows: Vec<CohortRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM cohorts WHERE project_id = $1 ORDER BY id DESC LIMIT 500"))
            .bind(project_id as i64)
            .fetch_all(pg)
            .await
            .map_err(cairn_postgres::api_error)?;
    Ok(Cohorts { results: rows.into_iter().map(to_api).collect() })
}

async fn row(pg: &PgPool, project_id: u64, id: i64) -> Result<CohortRow, ApiError> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM cohorts WHERE project_id = $1 AND id = $2"))
        .bind(project_id as i64)
        .bind(id)
        .fetch_optional(pg)
        .await
        .map_err(cairn_postgres::api_error)?
        .ok_or_else(|| ApiError::not_found("no such cohort in this project"))
}

pub async fn get(pg: &PgPool, project_id: u64, id: i64) -> Result<Cohort, ApiError> {
    row(pg, project_id, id).await.map(to_api)
}

pub async fn delete(pg: &PgPool, project_id: u64, id: i64) -> Result<(), ApiError> {
    let done = sqlx::query("DELETE FROM cohorts WHERE project_id = $1 AND id = $2")
        .bind(project_id as i64)
        .bind(id)
        .execute(pg)
        .await
        .map_err(cairn_postgres::api_error)?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("no such cohort in this project"));
    }
    Ok(())
}

#[derive(Row, Deserialize)]
struct SizeRow {
    n: u64,
}

/// Computes the cohort's size now and stores it.
pub async fn compute(engine: &Engine, pg: &PgPool, project_id: u64, id: i64) -> Result<Cohort, ApiError> {
    let r = row(pg, project_id, id).await?;
    let spec = spec_of(project_id, &r);
    let mut sql = Sql::new();
    let persons = persons_sql(&mut sql, &spec)?;
    sql.push("SELECT count() AS n FROM ").push(&persons);
    let rows: Vec<SizeRow> = engine.fetch_all(&sql).await?;
    let n = rows.first().map_or(0, |r| r.n);
    let row: CohortRow = sqlx::query_as(&format!(
        "UPDATE cohorts SET size = $3, size_computed_at = now() WHERE project_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(project_id as i64)
    .bind(id)
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .fetch_one(pg)
    .await
    .map_err(cairn_postgres::api_error)?;
    Ok(to_api(row))
}

/// Recomputes the sizes older than `stale` (at most `batch` cohorts), for query's periodic pass.
pub async fn refresh_stale(
    engine: &Engine,
    pg: &PgPool,
    stale: std::time::Duration,
    batch: i64,
) -> Result<usize, ApiError> {
    let due: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT project_id, id FROM cohorts WHERE size_computed_at IS NULL OR size_computed_at < now() - make_interval(secs => $1) \
         ORDER BY size_computed_at NULLS FIRST LIMIT $2",
    )
    .bind(stale.as_secs_f64())
    .bind(batch)
    .fetch_all(pg)
    .await
    .map_err(cairn_postgres::api_error)?;
    for (project, id) in &due {
        compute(engine, pg, *project as u64, *id).await?;
    }
    Ok(due.len())
}
