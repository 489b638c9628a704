//! The events explorer: recent events with filters and pagination, one person's timeline, and
//! the pickers' lists (event names, property keys and values, with counts).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cairn_common::http::{parse_json, ApiError};
use clickhouse::Row;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::Engine;
use crate::filters::{event_condition, prop_nullable, push_all, PropertyFilter};
use crate::sql::Sql;
use crate::timerange::resolve;

/// Query-string parameters of the events list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    pub event: Option<String>,
    pub distinct_id: Option<String>,
    /// A JSON array of property filters.
    pub properties: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventItem {
    pub uuid: String,
    pub event: String,
    pub distinct_id: String,
    pub properties: Value,
    /// RFC 3339, UTC.
    pub timestamp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventsPage {
    pub results: Vec<EventItem>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// An event as the explorer's statements select it (`event_uuid`, `event_name`, `distinct_id`,
/// `properties`, `ts`).
#[derive(Row, Deserialize)]
pub(crate) struct EventRowOut {
    pub event_uuid: String,
    pub event_name: String,
    pub distinct_id: String,
    pub properties: String,
    pub ts: i64,
}

impl From<EventRowOut> for EventItem {
    fn from(r: EventRowOut) -> Self {
        EventItem {
            properties: serde_json::from_str(&r.properties).unwrap_or(Value::String(r.properties)),
            timestamp: iso(r.ts),
            uuid: r.event_uuid,
            event: r.event_name,
            distinct_id: r.distinct_id,
        }
    }
}

fn encode_cursor(ts: i64, uuid: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{ts}:{uuid}"))
}

/// A cursor as `events` pages answer it; anything else is 400.
pub fn decode_cursor(text: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::invalid("cursor", "not a cursor returned by this API");
    let raw = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (ts, uuid) = raw.split_once(':').ok_or_else(bad)?;
    let ts: i64 = ts.parse().map_err(|_| bad())?;
    let uuid = uuid::Uuid::parse_str(uuid).map_err(|_| bad())?;
    Ok((ts, uuid.to_string()))
}

fn page_limit(limit: Option<usize>, engine: &Engine, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default.min(engine.limits.max_rows)),
        Some(0) => Err(ApiError::invalid("limit", "at least 1")),
        Some(l) if l > engine.limits.max_rows => {
            Err(ApiError::invalid("limit", format!("at most {}", engine.limits.max_rows)))
        }
        Some(l) => Ok(l),
    }
}

/// Property filters given as a JSON array in a query string.
pub fn filters_param(text: Option<&str>) -> Result<Vec<PropertyFilter>, ApiError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(Vec::new()),
        Some(t) => parse_json::<Vec<PropertyFilter>>(t.as_bytes()).map_err(|e| {
            let inner = e
                .field
                .filter(|f| f != "body")
                .map(|f| format!("properties{f}"))
                .unwrap_or_else(|| "properties".into());
            ApiError::invalid(inner, e.message)
        }),
    }
}

/// `SELECT <columns> FROM events … WHERE` the project, the range (`-30d` by default) and the
/// event when one is named: the start of every explorer statement.
fn scoped_select(
    engine: &Engine,
    project_id: u64,
    columns: &str,
    sql: &mut Sql,
    (date_from, date_to): (Option<&str>, Option<&str>),
    event: Option<&str>,
    now: Timestamp,
) -> Result<(), ApiError> {
    let range = resolve(date_from, date_to, None, "-30d", engine.limits.max_range_days, now)?;
    sql.push("SELECT ").push(columns);
    engine.source.scoped(sql, project_id, Some(range.from_ms()), Some(range.to_ms()));
    if let Some(e) = event.filter(|e| !e.is_empty()) {
        let c = event_condition(sql, Some(e), "event")?;
        sql.push(" AND ").push(&c);
    }
    Ok(())
}

pub(crate) fn iso(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

/// Recent events, newest first.
pub async fn events(
    engine: &Engine,
    project_id: u64,
    p: &EventsParams,
    now: Timestamp,
) -> Result<EventsPage, ApiError> {
    let limit = page_limit(p.limit, engine, 100)?;
    let mut sql = Sql::new();
    // Aliases differ from the columns: an alias would shadow its column in WHERE and ORDER BY.
    events_where(
        engine,
        project_id,
        p,
        "toString(uuid) AS event_uuid, toString(event) AS event_name, distinct_id, properties, toUnixTimestamp64Milli(timestamp) AS ts",
        &mut sql,
        now,
    )?;
    page(engine, sql, p.cursor.as_deref(), true, limit).await
}

/// `SELECT <columns> FROM events WHERE` what the events list `p` selects (its range, event,
/// distinct id and property filters): the list's pages and its export.
pub fn events_where(
    engine: &Engine,
    project_id: u64,
    p: &EventsParams,
    columns: &str,
    sql: &mut Sql,
    now: Timestamp,
) -> Result<(), ApiError> {
    let filters = filters_param(p.properties.as_deref())?;
    if filters.iter().any(|f| f.kind != crate::filters::PropertyKind::Event) {
        return Err(ApiError::invalid("properties", "the events list filters by event properties only"));
    }
    scoped_select(
        engine,
        project_id,
        columns,
        sql,
        (p.date_from.as_deref(), p.date_to.as_deref()),
        p.event.as_deref(),
        now,
    )?;
    if let Some(d) = p.distinct_id.as_deref().filter(|d| !d.is_empty()) {
        if d.len() > 400 {
            return Err(ApiError::invalid("distinct_id", "at most 400 characters"));
        }
        let d = sql.str(d);
        sql.push(" AND distinct_id = ").push(&d);
    }
    push_all(sql, &filters, "properties", engine.limits.max_filters)
}

/// Query-string parameters of one session's events.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionParams {
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The events of one session (their `$session_id` property), oldest first, in pages.
pub async fn session_events(
    engine: &Engine,
    project_id: u64,
    session_id: &str,
    p: &SessionParams,
    now: Timestamp,
) -> Result<EventsPage, ApiError> {
    if session_id.is_empty() || session_id.len() > 400 {
        return Err(ApiError::invalid("session_id", "1 to 400 characters"));
    }
    let limit = page_limit(p.limit, engine, 100)?;
    let mut sql = Sql::new();
    scoped_select(
        engine,
        project_id,
        "toString(uuid) AS event_uuid, toString(event) AS event_name, distinct_id, properties, toUnixTimestamp64Milli(timestamp) AS ts",
        &mut sql,
        (p.date_from.as_deref(), p.date_to.as_deref()),
        None,
        now,
    )?;
    let s = sql.str(session_id);
    sql.push(" AND JSONExtractString(properties, '$session_id') = ").push(&s);
    page(engine, sql, p.cursor.as_deref(), false, limit).await
}

/// Ends `sql` (a select of [`EventRowOut`] columns) with the keyset page after `cursor`, newest
/// first when `newest_first`, and runs it: `limit` rows and the cursor of the next page.
async fn page(
    engine: &Engine,
    mut sql: Sql,
    cursor: Option<&str>,
    newest_first: bool,
    limit: usize,
) -> Result<EventsPage, ApiError> {
    let (after, order) = if newest_first { ("<", " DESC") } else { (">", "") };
    if let Some(c) = cursor.filter(|c| !c.is_empty()) {
        let (ts, uuid) = decode_cursor(c)?;
        let t = sql.millis(ts);
        let u = sql.str(uuid);
        sql.push(&format!(" AND (timestamp {after} "))
            .push(&t)
            .push(" OR (timestamp = ")
            .push(&t)
            .push(&format!(" AND uuid {after} toUUID("))
            .push(&u)
            .push(")))");
    }
    sql.push(&format!(" ORDER BY timestamp{order}, uuid{order} LIMIT ")).push(&(limit + 1).to_string());
    let mut rows: Vec<EventRowOut> = engine.fetch_all(&sql).await?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| encode_cursor(r.ts, &r.event_uuid))
    } else {
        None
    };
    Ok(EventsPage { results: rows.into_iter().map(EventItem::from).collect(), next_cursor })
}

/// Query-string parameters of the pickers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PickerParams {
    pub event: Option<String>,
    /// The property whose values to list (property values only).
    pub key: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Row)]
pub struct NameCount {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NameCounts {
    pub results: Vec<NameCount>,
}

/// What a picker lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picker {
    EventNames,
    PropertyKeys,
    PropertyValues,
}

pub async fn picker(
    engine: &Engine,
    project_id: u64,
    what: Picker,
    p: &PickerParams,
    now: Timestamp,
) -> Result<NameCounts, ApiError> {
    let limit = page_limit(p.limit, engine, 100)?;
    let mut sql = Sql::new();
    let key = p.key.as_deref().filter(|k| !k.is_empty());
    // For property values, one expression (one JSON parse) serves as the value and the filter.
    let value = match (what, key) {
        (Picker::PropertyValues, Some(k)) => Some(prop_nullable(&mut sql, k)),
        (Picker::PropertyValues, None) => return Err(ApiError::invalid("key", "the property whose values to list")),
        _ => None,
    };
    let name = match (what, &value) {
        (Picker::EventNames, _) => "toString(event)".to_string(),
        (Picker::PropertyKeys, _) => "arrayJoin(JSONExtractKeys(properties))".to_string(),
        (Picker::PropertyValues, v) => format!("assumeNotNull({})", v.as_deref().unwrap_or("''")),
    };
    scoped_select(
        engine,
        project_id,
        &format!("{name} AS name, count() AS count"),
        &mut sql,
        (p.date_from.as_deref(), p.date_to.as_deref()),
        p.event.as_deref(),
        now,
    )?;
    if let Some(v) = &value {
        sql.push(" AND isNotNull(").push(v).push(")");
    }
    sql.push(" GROUP BY name ORDER BY count DESC, name LIMIT ").push(&limit.to_string());
    Ok(NameCounts { results: engine.fetch_all(&sql).await? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let u = "0190f1a2-0000-7000-8000-000000000001";
        assert_eq!(decode_cursor(&encode_cursor(1234, u)).unwrap(), (1234, u.to_string()));
        for bad in ["", "!!", &URL_SAFE_NO_PAD.encode("12:not-a-uuid"), &URL_SAFE_NO_PAD.encode("x:y")] {
            assert_eq!(decode_cursor(bad).unwrap_err().field.as_deref(), Some("cursor"));
        }
    }

    #[test]
    fn filters_in_the_query_string_name_the_field() {
        assert_eq!(filters_param(Some(r#"[{"key":"a","value":"b"}]"#)).unwrap().len(), 1);
        let e = filters_param(Some(r#"[{"key":"a","operator":"nope"}]"#)).unwrap_err();
        assert!(e.field.as_deref().unwrap_or("").starts_with("properties"), "{e}");
        assert!(filters_param(Some("not json")).is_err());
    }
}
