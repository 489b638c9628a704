//! The persons API: the project's persons (newest activity first, searchable), and one person
//! with their properties, distinct ids and recent events.
//!
//! A person is listed by the id analyses count them by (`cityHash64` of the distinct id that
//! started them, as a decimal string: JavaScript numbers cannot hold it), with every distinct id
//! that is theirs (`distinct_id_activity` grouped through `person_overrides`) and their
//! properties (folded from `person_property_ops`, see [`crate::persons`]).

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use cairn_common::clickhouse::{DISTINCT_ID_ACTIVITY_TABLE, EVENTS_TABLE};
use cairn_common::http::ApiError;

use crate::engine::Engine;
use crate::explorer::{iso, EventItem, EventRowOut};
use crate::persons::{join_overrides, person_of, persons_with_properties};
use crate::sql::{EventsSource, Sql};

/// Query-string parameters of the persons list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonsParams {
    /// Persons one of whose distinct ids, or whose properties, contain this (case-insensitive).
    pub search: Option<String>,
    /// The person of this distinct id (exactly).
    pub distinct_id: Option<String>,
    pub limit: Option<usize>,
    /// The `next_offset` of the previous page.
    pub offset: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Person {
    /// The person's id, a 64-bit number as a decimal string.
    pub id: String,
    pub distinct_ids: Vec<String>,
    pub properties: Value,
    /// RFC 3339, UTC.
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersonsPage {
    pub results: Vec<Person>,
    /// Pass as `offset` for the next page; absent on the last page.
    pub next_offset: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersonDetail {
    #[serde(flatten)]
    pub person: Person,
    /// Every event of every distinct id of the person.
    pub event_count: u64,
    /// The latest events (at most 50), newest first.
    pub recent_events: Vec<EventItem>,
}

#[derive(Row, Deserialize)]
struct PersonRow {
    id: u64,
    distinct_ids: Vec<String>,
    properties: String,
    first_seen: i64,
    last_seen: i64,
}

/// Deepest page of the list.
const MAX_OFFSET: usize = 10_000;
/// Events shown with a person.
const RECENT_EVENTS: usize = 50;

/// JSON text from ClickHouse as a value (an object when empty: a person without properties).
fn json_object(text: &str) -> Value {
    if text.is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(text).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "person properties are not JSON");
        Value::Object(Default::default())
    })
}

impl From<PersonRow> for Person {
    fn from(r: PersonRow) -> Self {
        let mut ids = r.distinct_ids;
        ids.sort();
        Person {
            id: r.id.to_string(),
            distinct_ids: ids,
            properties: json_object(&r.properties),
            first_seen: iso(r.first_seen),
            last_seen: iso(r.last_seen),
        }
    }
}

/// `SELECT id, distinct_ids, properties, first_seen, last_seen FROM (every person) WHERE 1`: the
/// caller adds conditions, order and limit.
fn persons_select(sql: &mut Sql, source: &EventsSource, project_id: u64) {
    let project = sql.u64(project_id);
    let with_properties = persons_with_properties(sql, project_id);
    sql.push("SELECT a.person AS id, a.ids AS distinct_ids, ifNull(pp.properties, '') AS properties, ")
        .push("toUnixTimestamp64Milli(a.first_seen) AS first_seen, toUnixTimestamp64Milli(a.last_seen) AS last_seen FROM (SELECT ")
        .push(&person_of("d.id_hash"))
        .push(" AS person, groupArray(d.distinct_id) AS ids, min(d.first_seen) AS first_seen, max(d.last_seen) AS last_seen FROM ")
        .push("(SELECT id_hash, any(distinct_id) AS distinct_id, min(first_seen) AS first_seen, max(last_seen) AS last_seen FROM ")
        .push(DISTINCT_ID_ACTIVITY_TABLE)
        .push(" WHERE project_id = ")
        .push(&project);
    // Persons being deleted are not listed.
    source.exclude(sql, "id_hash");
    sql.push(" GROUP BY id_hash) AS d");
    join_overrides(sql, project_id, "d.id_hash");
    sql.push(" GROUP BY person) AS a LEFT JOIN ").push(&with_properties).push(" AS pp ON a.person = pp.person WHERE 1");
}

fn text_param<'a>(field: &str, v: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if v.len() > 400 => Err(ApiError::invalid(field, "at most 400 characters")),
        other => Ok(other),
    }
}

/// The persons list.
pub async fn list(engine: &Engine, project_id: u64, p: &PersonsParams) -> Result<PersonsPage, ApiError> {
    let limit = match p.limit {
        None => 50.min(engine.limits.max_rows),
        Some(0) => return Err(ApiError::invalid("limit", "at least 1")),
        Some(l) if l > engine.limits.max_rows.min(1000) => {
            return Err(ApiError::invalid("limit", format!("at most {}", engine.limits.max_rows.min(1000))))
        }
        Some(l) => l,
    };
    let offset = p.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::invalid("offset", format!("at most {MAX_OFFSET}; search to narrow the list")));
    }
    let mut sql = Sql::new();
    persons_select(&mut sql, &engine.source, project_id);
    if let Some(d) = text_param("distinct_id", p.distinct_id.as_deref())? {
        let d = sql.str(d);
        sql.push(" AND has(a.ids, ").push(&d).push(")");
    }
    if let Some(q) = text_param("search", p.search.as_deref())? {
        let q = sql.str(q);
        sql.push(" AND (positionCaseInsensitiveUTF8(arrayStringConcat(a.ids, ' '), ")
            .push(&q)
            .push(") > 0 OR positionCaseInsensitiveUTF8(ifNull(pp.properties, ''), ")
            .push(&q)
            .push(") > 0)");
    }
    sql.push(" ORDER BY last_seen DESC, id LIMIT ")
        .push(&(limit + 1).to_string())
        .push(" OFFSET ")
        .push(&offset.to_string());
    let rows: Vec<PersonRow> = engine.fetch_all(&sql).await?;
    let more = rows.len() > limit;
    Ok(PersonsPage {
        results: rows.into_iter().take(limit).map(Person::from).collect(),
        next_offset: more.then_some(offset + limit),
    })
}

/// One person, by id, without their events (404 when the project has no such person).
pub async fn find(engine: &Engine, project_id: u64, person_id: &str) -> Result<Person, ApiError> {
    let id: u64 = person_id
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid("person_id", "a person id is a 64-bit number in decimal"))?;
    let mut sql = Sql::new();
    persons_select(&mut sql, &engine.source, project_id);
    let p = sql.u64(id);
    sql.push(" AND a.person = ").push(&p);
    let rows: Vec<PersonRow> = engine.fetch_all(&sql).await?;
    let row = rows.into_iter().next().ok_or_else(|| ApiError::not_found("no such person in this project"))?;
    Ok(Person::from(row))
}

/// One person with their event count and latest events (404 when the project has no such person).
pub async fn get(engine: &Engine, project_id: u64, person_id: &str) -> Result<PersonDetail, ApiError> {
    let person = find(engine, project_id, person_id).await?;

    // Their events: every distinct id's, by its hash (the events' sort key has it).
    let ids = person.distinct_ids.clone();
    let mut sql = Sql::new();
    let ids_p = sql.strs(ids.clone());
    sql.push("SELECT count() AS n");
    engine.source.scoped(&mut sql, project_id, None, None);
    sql.push(" AND cityHash64(distinct_id) IN (SELECT cityHash64(arrayJoin(").push(&ids_p).push(")))");
    let counts: Vec<CountRow> = engine.fetch_all(&sql).await?;
    let event_count = counts.first().map_or(0, |c| c.n);

    let mut sql = Sql::new();
    let ids_p = sql.strs(ids);
    sql.push("SELECT toString(uuid) AS event_uuid, toString(event) AS event_name, distinct_id, properties, toUnixTimestamp64Milli(timestamp) AS ts");
    engine.source.scoped_in(&mut sql, EVENTS_TABLE, project_id, None, None);
    sql.push(" AND cityHash64(distinct_id) IN (SELECT cityHash64(arrayJoin(")
        .push(&ids_p)
        .push("))) ORDER BY timestamp DESC, uuid DESC LIMIT ")
        .push(&RECENT_EVENTS.to_string());
    let events: Vec<EventRowOut> = engine.fetch_all(&sql).await?;
    let recent_events = events.into_iter().map(EventItem::from).collect();
    Ok(PersonDetail { person, event_count, recent_events })
}

#[derive(Row, Deserialize)]
struct CountRow {
    n: u64,
}

/// Events per statement of an export.
const EXPORT_PAGE: usize = 10_000;

/// Everything stored about a person (GDPR/CCPA access and portability), as one JSON document:
/// `{"person": {id, distinct_ids, properties, first_seen, last_seen}, "events": [every event of
/// every id, oldest first]}`. Streamed: the events are read in pages of 10,000 (each page one
/// bounded statement, resuming after the last event's time and uuid), so memory does not grow with
/// the person's history.
pub async fn export(engine: &Engine, project_id: u64, person_id: &str) -> Result<axum::response::Response, ApiError> {
    let person = find(engine, project_id, person_id).await?;
    let head = serde_json::to_string(&serde_json::json!({ "person": person }))
        .map_err(|e| ApiError::internal(format!("encoding a person: {e}")))?;
    // `{"person":{…}` then `,"events":[` … `]}`.
    let head = head
        .strip_suffix('}')
        .ok_or_else(|| ApiError::internal("a person encoded as something else than an object"))?;
    let head = format!("{head},\"events\":[");
    let ids = person.distinct_ids.clone();
    let (engine, id) = (engine.clone(), person.id.clone());
    struct Page {
        after: Option<(i64, String)>,
        first: bool,
        done: bool,
    }
    let pages = futures::stream::unfold(Page { after: None, first: true, done: false }, move |mut state| {
        let (engine, ids, id) = (engine.clone(), ids.clone(), id.clone());
        async move {
            if state.done {
                return None;
            }
            let mut sql = Sql::new();
            let ids_p = sql.strs(ids);
            sql.push("SELECT toString(uuid) AS event_uuid, toString(event) AS event_name, distinct_id, properties, toUnixTimestamp64Milli(timestamp) AS ts");
            engine.source.scoped_in(&mut sql, EVENTS_TABLE, project_id, None, None);
            sql.push(" AND cityHash64(distinct_id) IN (SELECT cityHash64(arrayJoin(").push(&ids_p).push(")))");
            if let Some((ts, uuid)) = &state.after {
                let t = sql.millis(*ts);
                let u = sql.str(uuid.clone());
                sql.push(" AND (timestamp > ")
                    .push(&t)
                    .push(" OR (timestamp = ")
                    .push(&t)
                    .push(" AND uuid > toUUID(")
                    .push(&u)
                    .push(")))");
            }
            sql.push(" ORDER BY timestamp, uuid LIMIT ").push(&EXPORT_PAGE.to_string());
            let rows: Vec<EventRowOut> = match engine.fetch_all(&sql).await {
                Ok(rows) => rows,
                Err(e) => {
                    // The status is sent already: end the body early, which the client sees as
                    // a truncated document (invalid JSON), never as a complete one.
                    tracing::error!(person = %id, error = %e.message, "person export failed midway");
                    return Some((Err(std::io::Error::other(e.message)), Page { done: true, ..state }));
                }
            };
            let mut chunk = String::new();
            let full = rows.len() == EXPORT_PAGE;
            state.after = rows.last().map(|r| (r.ts, r.event_uuid.clone()));
            for r in rows {
                if !state.first {
                    chunk.push(',');
                }
                state.first = false;
                let item = EventItem::from(r);
                match serde_json::to_string(&item) {
                    Ok(text) => chunk.push_str(&text),
                    Err(e) => return Some((Err(std::io::Error::other(e)), Page { done: true, ..state })),
                }
            }
            if !full {
                chunk.push_str("]}");
                state.done = true;
            }
            Some((Ok(bytes::Bytes::from(chunk)), state))
        }
    });
    let body =
        futures::StreamExt::chain(futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(head))]), pages);
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header(axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"person-{}.json\"", person.id))
        .body(axum::body::Body::from_stream(body))
        .map_err(|e| ApiError::internal(format!("building the export: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_binds_what_the_caller_gives() {
        let evil = "x') OR 1=1 --";
        let mut sql = Sql::new();
        persons_select(&mut sql, &EventsSource::new(true), 7);
        let q = sql.str(evil);
        sql.push(" AND has(a.ids, ").push(&q).push(")");
        assert!(!sql.text().contains(evil));
        assert!(sql.text().contains("FROM distinct_id_activity WHERE project_id = {p"));
        assert!(sql.text().contains("LEFT JOIN (SELECT id_hash, argMax(person_id, version)"));
    }
}
