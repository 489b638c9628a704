//! Paths: the most common sequences of events (or `$pathname`s of `$pageview`s) that persons
//! followed in the range, after a start point and/or before an end point, as a flow of steps.
//!
//! A person's path is their matching elements in time order (ties by name), with repeats in a
//! row folded into one; then
//! - with `start_point`: from its first occurrence;
//! - with `end_point` (alone): the `depth` elements up to and including its first occurrence;
//! - with both: from the start to the first end after it;
//!
//! cut to `depth` elements. Persons without the start (or end) point have no path. Each link
//! (step i's element → step i + 1's) counts the persons whose path has it; a node counts the
//! persons at that step with that element.

use std::collections::BTreeMap;

use cairn_common::clickhouse::EVENTS_TABLE;
use cairn_common::http::ApiError;
use clickhouse::Row;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::filters::{all_conditions, uses_person, PropertyFilter};
use crate::persons;
use crate::sql::Sql;
use crate::timerange::{label, resolve};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathType {
    /// Event names.
    #[default]
    Event,
    /// The `$pathname` property of `$pageview` events.
    Pathname,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PathsRequest {
    #[serde(default)]
    pub path_type: PathType,
    /// The element paths start at (an event name, or a pathname).
    #[serde(default)]
    pub start_point: Option<String>,
    /// The element paths end at.
    #[serde(default)]
    pub end_point: Option<String>,
    /// Elements per path, 2 to 10 (default 5).
    #[serde(default)]
    pub depth: Option<usize>,
    /// Links followed by fewer persons are left out (default 1).
    #[serde(default)]
    pub min_count: Option<u64>,
    /// The most frequent links shown (default 50, at most 500).
    #[serde(default)]
    pub max_links: Option<usize>,
    /// Elements left out of every path.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub date_from: Option<String>,
    #[serde(default)]
    pub date_to: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PathNode {
    /// 1 for the first element of paths.
    pub step: usize,
    pub name: String,
    /// Persons whose path has this element at this step.
    pub persons: u64,
    /// Of them, those whose path ends here.
    pub dropped_off: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PathLink {
    /// The source's step (the target is at step + 1).
    pub step: usize,
    pub source: String,
    pub target: String,
    pub persons: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PathsResponse {
    pub path_type: PathType,
    pub timezone: String,
    pub date_from: String,
    pub date_to: String,
    /// Persons with a path.
    pub persons: u64,
    /// The nodes the links shown touch, by step then persons.
    pub nodes: Vec<PathNode>,
    /// The most frequent links, most persons first.
    pub links: Vec<PathLink>,
}

#[derive(Row, Deserialize)]
struct StepRow {
    step: u64,
    el: String,
    next: String,
    c: u64,
}

const MAX_DEPTH: usize = 10;
const MAX_LINKS: usize = 500;

/// The links, nodes and persons from `(step, element, next element or "" at the end, persons)`.
pub fn assemble(
    rows: &[(usize, String, String, u64)],
    min_count: u64,
    max_links: usize,
) -> (u64, Vec<PathNode>, Vec<PathLink>) {
    let persons: u64 = rows.iter().filter(|r| r.0 == 1).map(|r| r.3).sum();
    let mut nodes: BTreeMap<(usize, String), (u64, u64)> = BTreeMap::new();
    let mut links: BTreeMap<(usize, String, String), u64> = BTreeMap::new();
    for (step, el, next, c) in rows {
        let node = nodes.entry((*step, el.clone())).or_default();
        node.0 += c;
        if next.is_empty() {
            node.1 += c;
        } else {
            *links.entry((*step, el.clone(), next.clone())).or_default() += c;
        }
    }
    let mut links: Vec<PathLink> = links
        .into_iter()
        .filter(|(_, c)| *c >= min_count)
        .map(|((step, source, target), persons)| PathLink { step, source, target, persons })
        .collect();
    links.sort_by(|a, b| {
        b.persons.cmp(&a.persons).then(a.step.cmp(&b.step)).then(a.source.cmp(&b.source)).then(a.target.cmp(&b.target))
    });
    links.truncate(max_links);
    let mut shown: Vec<PathNode> = nodes
        .into_iter()
        .filter(|((step, name), _)| {
            links.iter().any(|l| (l.step == *step && l.source == *name) || (l.step + 1 == *step && l.target == *name))
        })
        .map(|((step, name), (persons, dropped_off))| PathNode { step, name, persons, dropped_off })
        .collect();
    shown.sort_by(|a, b| a.step.cmp(&b.step).then(b.persons.cmp(&a.persons)).then(a.name.cmp(&b.name)));
    (persons, shown, links)
}

pub async fn run(
    engine: &Engine,
    project_id: u64,
    req: &PathsRequest,
    now: Timestamp,
) -> Result<PathsResponse, ApiError> {
    let depth = req.depth.unwrap_or(5);
    if !(2..=MAX_DEPTH).contains(&depth) {
        return Err(ApiError::invalid("depth", format!("between 2 and {MAX_DEPTH}")));
    }
    let max_links = req.max_links.unwrap_or(50);
    if max_links == 0 || max_links > MAX_LINKS {
        return Err(ApiError::invalid("max_links", format!("between 1 and {MAX_LINKS}")));
    }
    let min_count = req.min_count.unwrap_or(1).max(1);
    for (field, point) in [("start_point", &req.start_point), ("end_point", &req.end_point)] {
        if point.as_deref().is_some_and(|p| p.is_empty() || p.len() > 400) {
            return Err(ApiError::invalid(field, "1 to 400 characters"));
        }
    }
    if req.exclude.len() > engine.limits.max_filters {
        return Err(ApiError::invalid("exclude", format!("at most {} elements", engine.limits.max_filters)));
    }
    let range = resolve(
        req.date_from.as_deref(),
        req.date_to.as_deref(),
        req.timezone.as_deref(),
        "-7d",
        engine.limits.max_range_days,
        now,
    )?;

    let mut sql = Sql::new();
    let (element, only) = match req.path_type {
        PathType::Event => ("event".to_string(), "1".to_string()),
        PathType::Pathname => {
            let key = sql.str("$pathname");
            let pageview = sql.str("$pageview");
            (format!("JSONExtractString(properties, {key})"), format!("event = {pageview}"))
        }
    };
    let exclude = sql.strs(req.exclude.clone());
    let depth_p = sql.i64(depth as i64);
    // `c`: the person's elements with repeats in a row folded.
    let path = match (&req.start_point, &req.end_point) {
        (None, None) => format!("arraySlice(c, 1, {depth_p})"),
        (Some(start), None) => {
            let s = sql.str(start.clone());
            format!("if(indexOf(c, {s}) = 0, [], arraySlice(c, indexOf(c, {s}), {depth_p}))")
        }
        (None, Some(end)) => {
            let e = sql.str(end.clone());
            format!(
                "if(indexOf(c, {e}) = 0, [], arraySlice(c, toInt64(greatest(1, toInt64(indexOf(c, {e})) - {depth_p} + 1)), \
                 toInt64(least(indexOf(c, {e}), {depth_p}))))"
            )
        }
        (Some(start), Some(end)) => {
            let s = sql.str(start.clone());
            let e = sql.str(end.clone());
            format!(
                "if(indexOf(c, {s}) = 0 OR indexOf(arraySlice(c, indexOf(c, {s})), {e}) = 0, [], \
                 arraySlice(arraySlice(c, indexOf(c, {s})), 1, least(indexOf(arraySlice(c, indexOf(c, {s})), {e}), {depth_p})))"
            )
        }
    };
    sql.push("SELECT toUInt64(i) AS step, el, next, count() AS c FROM (SELECT ")
        .push(&path)
        .push(" AS path FROM (SELECT arrayMap(x -> x.2, arraySort(groupArrayArray(u.els))) AS elems, ")
        .push("arrayFilter((x, y) -> x != y, elems, arrayPushFront(arrayPopBack(elems), '')) AS c, ")
        .push(&persons::person_of("u.h"))
        .push(" AS person FROM (SELECT cityHash64(distinct_id) AS h, groupArray((timestamp, el)) AS els FROM (SELECT distinct_id, timestamp, ")
        .push(&element)
        .push(" AS el");
    let person_properties = uses_person(&req.filters);
    engine.source.scoped_with(
        &mut sql,
        EVENTS_TABLE,
        project_id,
        Some(range.from_ms()),
        Some(range.to_ms()),
        person_properties,
    );
    let shared = all_conditions(&mut sql, &req.filters, "filters", engine.limits.max_filters)?;
    sql.push(" AND (")
        .push(&only)
        .push(") AND (")
        .push(&shared)
        .push(")) WHERE el != '' AND NOT has(")
        .push(&exclude)
        .push(", el) GROUP BY h) AS u");
    persons::join_overrides(&mut sql, project_id, "u.h");
    sql.push(
        " GROUP BY person) WHERE length(path) > 0) ARRAY JOIN arrayEnumerate(path) AS i, path AS el, \
         arrayPushBack(arrayPopFront(path), '') AS next GROUP BY i, el, next ORDER BY c DESC LIMIT 100000",
    );
    let rows: Vec<StepRow> = engine.fetch_all(&sql).await?;
    let rows: Vec<(usize, String, String, u64)> =
        rows.into_iter().map(|r| (r.step as usize, r.el, r.next, r.c)).collect();
    let (persons, nodes, links) = assemble(&rows, min_count, max_links);
    Ok(PathsResponse {
        path_type: req.path_type,
        timezone: range.tz_name.clone(),
        date_from: label(&range.from),
        date_to: label(&range.to),
        persons,
        nodes,
        links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_nodes_from_step_rows() {
        let r = |s: usize, a: &str, b: &str, c: u64| (s, a.to_string(), b.to_string(), c);
        // 3 persons: home→pricing→signup, home→pricing, home→docs.
        let rows = vec![
            r(1, "home", "pricing", 2),
            r(1, "home", "docs", 1),
            r(2, "pricing", "signup", 1),
            r(2, "pricing", "", 1),
            r(2, "docs", "", 1),
            r(3, "signup", "", 1),
        ];
        let (persons, nodes, links) = assemble(&rows, 1, 50);
        assert_eq!(persons, 3);
        assert_eq!(links[0], PathLink { step: 1, source: "home".into(), target: "pricing".into(), persons: 2 });
        assert_eq!(links.len(), 3);
        assert_eq!(nodes[0], PathNode { step: 1, name: "home".into(), persons: 3, dropped_off: 0 });
        assert!(nodes.contains(&PathNode { step: 2, name: "pricing".into(), persons: 2, dropped_off: 1 }));
        let (_, nodes, links) = assemble(&rows, 2, 50);
        assert_eq!(links.len(), 1);
        assert_eq!(nodes.len(), 2);
    }
}
