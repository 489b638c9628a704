//! SQL with bound parameters only.
//!
//! Every value that comes from a request (event names, property keys and values, dates, the
//! timezone, the project) reaches ClickHouse as a server-side query parameter (`{p3:String}`,
//! sent as `param_p3`), never as text pasted into the statement. The statement text is built
//! from fixed fragments of this crate alone. Every statement over the events table starts from
//! [`Sql::events`], which scopes it to one project.

use std::time::Duration;

use cairn_common::clickhouse::{EVENTS_BY_PERSON_TABLE, EVENTS_TABLE, EVENT_CHANGES_TABLE};
use cairn_common::http::ApiError;
use serde::Serialize;

/// A parameter's value (its ClickHouse type is written in the placeholder).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Param {
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Strs(Vec<String>),
    U64s(Vec<u64>),
}

/// A statement being built, with its parameters.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    text: String,
    params: Vec<(String, Param)>,
    /// Event properties the statement reads by parsing the JSON (no column of their own): what
    /// it tells ClickHouse's query log, so that the operator can make the most used ones columns.
    parsed: std::collections::BTreeSet<String>,
    /// Whether the statement joins each event's session's properties
    /// ([`crate::sessions::join_session_properties`], where it reads the events).
    sessions: bool,
}

impl Sql {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a fixed fragment of SQL. Never pass request data here: bind it.
    pub fn push(&mut self, fragment: &str) -> &mut Self {
        self.text.push_str(fragment);
        self
    }

    fn bind(&mut self, ty: &str, value: Param) -> String {
        let name = format!("p{}", self.params.len());
        let placeholder = format!("{{{name}:{ty}}}");
        self.params.push((name, value));
        placeholder
    }

    /// A `String` parameter's placeholder.
    pub fn str(&mut self, value: impl Into<String>) -> String {
        self.bind("String", Param::Str(value.into()))
    }

    pub fn u64(&mut self, value: u64) -> String {
        self.bind("UInt64", Param::U64(value))
    }

    pub fn i64(&mut self, value: i64) -> String {
        self.bind("Int64", Param::I64(value))
    }

    pub fn f64(&mut self, value: f64) -> String {
        self.bind("Float64", Param::F64(value))
    }

    /// An `Array(String)` parameter's placeholder.
    pub fn strs(&mut self, values: Vec<String>) -> String {
        self.bind("Array(String)", Param::Strs(values))
    }

    /// An `Array(UInt64)` parameter's placeholder.
    pub fn u64s(&mut self, values: Vec<u64>) -> String {
        self.bind("Array(UInt64)", Param::U64s(values))
    }

    /// A point in time (milliseconds since the epoch) as a `DateTime64(3, 'UTC')` expression.
    pub fn millis(&mut self, ms: i64) -> String {
        let p = self.i64(ms);
        format!("fromUnixTimestamp64Milli({p}, 'UTC')")
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Takes the text written so far, leaving the parameters (for a fragment built apart and
    /// placed into another statement of the same parameters).
    pub fn take_text(&mut self) -> String {
        std::mem::take(&mut self.text)
    }

    /// Makes the statement join each event's session's properties where it reads the events:
    /// session property filters and breakdowns are allowed from then on.
    pub fn join_sessions(&mut self) {
        self.sessions = true;
    }

    pub fn sessions_joined(&self) -> bool {
        self.sessions
    }

    /// Sets whether sessions are joined, answering what it was (a subquery over the events that
    /// must not join them itself turns it off for its time).
    pub fn set_sessions_joined(&mut self, joined: bool) -> bool {
        std::mem::replace(&mut self.sessions, joined)
    }

    /// Notes that the statement parses event property `key` out of the JSON.
    pub fn note_parsed(&mut self, key: &str) {
        if !self.parsed.contains(key) {
            self.parsed.insert(key.to_string());
        }
    }

    /// The event properties the statement parses out of the JSON, in order.
    pub fn parsed(&self) -> impl Iterator<Item = &str> {
        self.parsed.iter().map(String::as_str)
    }

    pub fn params(&self) -> &[(String, Param)] {
        &self.params
    }

    /// The ClickHouse query with its parameters bound.
    pub fn query(&self, client: &clickhouse::Client) -> clickhouse::query::Query {
        let mut q = client.query(&self.text);
        for (name, value) in &self.params {
            q = q.param(name, value);
        }
        q
    }
}

/// Where the events of one project are read from, and how.
#[derive(Debug, Clone)]
pub struct EventsSource {
    pub read_final: bool,
    /// The hashes of distinct ids whose events are being deleted (a pending person deletion):
    /// every statement leaves them out.
    pub excluded: std::sync::Arc<[u64]>,
    /// Whether the project has events changed after capture (rows in `event_changes`): reads
    /// then take the latest versions from there, and leave deleted events out.
    pub changes: bool,
}

impl EventsSource {
    pub fn new(read_final: bool) -> Self {
        Self { read_final, excluded: std::sync::Arc::from(Vec::new()), changes: false }
    }

    /// What a statement reads `table` (`events` or `events_by_person`) as: the table itself, or,
    /// when the project has changed events, [`EventsSource::merged`].
    pub fn relation(
        &self,
        sql: &mut Sql,
        table: &'static str,
        project_id: u64,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> String {
        if self.changes {
            Self::merged(sql, table, project_id, from_ms, to_ms, self.read_final)
        } else if self.read_final {
            format!("{table} FINAL")
        } else {
            table.to_string()
        }
    }

    /// `(SELECT … FROM table WHERE <the project, the range> AND uuid NOT IN <changed uuids> UNION
    /// ALL SELECT … FROM event_changes FINAL WHERE <the same> AND deleted = 0) AS table`: the
    /// project's events as they are now — captured events never changed, and the latest version
    /// of those changed, without deleted ones. Same columns (and name) as `table`.
    pub fn merged(
        sql: &mut Sql,
        table: &'static str,
        project_id: u64,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        read_final: bool,
    ) -> String {
        let p = sql.u64(project_id);
        let mut range = String::new();
        if let Some(from) = from_ms {
            range.push_str(&format!(" AND timestamp >= {}", sql.millis(from)));
        }
        if let Some(to) = to_ms {
            range.push_str(&format!(" AND timestamp < {}", sql.millis(to)));
        }
        let (columns, changed) = if table == EVENTS_BY_PERSON_TABLE {
            (
                "project_id, person, event, timestamp, uuid".to_string(),
                "project_id, cityHash64(distinct_id) AS person, event, timestamp, uuid".to_string(),
            )
        } else {
            // The property columns too (statements read them in place of the JSON): from the
            // changed events, computed from their properties as the column's own expression.
            let mut columns = "uuid, project_id, event, distinct_id, properties, timestamp, received_at".to_string();
            let mut changed = columns.clone();
            for (key, column) in crate::materialized::all().iter() {
                let k = sql.str(key.clone());
                columns.push_str(&format!(", {column}"));
                changed.push_str(&format!(", JSONExtract(properties, {k}, 'Nullable(String)') AS {column}"));
            }
            (columns, changed)
        };
        let fin = if read_final { " FINAL" } else { "" };
        format!(
            "(SELECT {columns} FROM {table}{fin} WHERE project_id = {p}{range} AND uuid NOT IN \
             (SELECT uuid FROM {EVENT_CHANGES_TABLE} WHERE project_id = {p}) UNION ALL SELECT {changed} FROM \
             {EVENT_CHANGES_TABLE} FINAL WHERE project_id = {p}{range} AND deleted = 0) AS {table}"
        )
    }

    /// ` AND <the id's hash> NOT IN (the excluded ids)` when there are any; `hash` is the
    /// distinct id's hash in the table read (`cityHash64(distinct_id)`, or a column holding it).
    pub fn exclude(&self, sql: &mut Sql, hash: &str) {
        if !self.excluded.is_empty() {
            let ids = sql.u64s(self.excluded.to_vec());
            sql.push(" AND ").push(hash).push(" NOT IN ").push(&ids);
        }
    }

    /// `FROM events [FINAL] WHERE project_id = {p:UInt64} AND timestamp >= … AND timestamp < …`:
    /// the start of every statement over events. The range is `[from_ms, to_ms)`.
    pub fn scoped(&self, sql: &mut Sql, project_id: u64, from_ms: Option<i64>, to_ms: Option<i64>) {
        self.scoped_in(sql, EVENTS_TABLE, project_id, from_ms, to_ms)
    }

    /// The same over `table`: `events` or its copy ordered by person, `events_by_person` (a
    /// constant, never request data).
    pub fn scoped_in(
        &self,
        sql: &mut Sql,
        table: &'static str,
        project_id: u64,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) {
        self.scoped_with(sql, table, project_id, from_ms, to_ms, false)
    }

    /// The same, with each event's person's properties joined in (`person_properties`, for
    /// `"type": "person"` filters and breakdowns) when `person_properties` is true.
    pub fn scoped_with(
        &self,
        sql: &mut Sql,
        table: &'static str,
        project_id: u64,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        person_properties: bool,
    ) {
        let relation = self.relation(sql, table, project_id, from_ms, to_ms);
        let project = sql.u64(project_id);
        sql.push(" FROM ").push(&relation);
        if person_properties {
            crate::persons::join_person_properties(sql, project_id);
        }
        if sql.sessions_joined() && table == EVENTS_TABLE {
            crate::sessions::join_session_properties(self, sql, project_id, from_ms, to_ms);
        }
        sql.push(" WHERE project_id = ").push(&project);
        if let Some(from) = from_ms {
            let p = sql.millis(from);
            sql.push(" AND timestamp >= ").push(&p);
        }
        if let Some(to) = to_ms {
            let p = sql.millis(to);
            sql.push(" AND timestamp < ").push(&p);
        }
        // `events_by_person` holds the hash as `person`.
        self.exclude(sql, if table == EVENTS_TABLE { "cityHash64(distinct_id)" } else { "person" });
    }
}

/// Runs `fut` (a ClickHouse round trip) within `timeout`: a slow query answers 504, an
/// unreachable server 503, anything else 500 with the detail in the log.
pub async fn with_timeout<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, clickhouse::error::Error>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(timed_out(timeout)),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(clickhouse_error(e)),
    }
}

/// The answer to a query that ran past `timeout`.
pub fn timed_out(timeout: Duration) -> ApiError {
    ApiError::timeout(format!(
        "the query did not finish within {} ms; narrow the date range, add filters or ask for fewer series",
        timeout.as_millis()
    ))
}

/// A ClickHouse error as an answer.
pub fn clickhouse_error(e: clickhouse::error::Error) -> ApiError {
    let text = e.to_string();
    // TIMEOUT_EXCEEDED (159): ClickHouse's own max_execution_time.
    if text.contains("TIMEOUT_EXCEEDED") || text.contains("Code: 159") {
        return ApiError::timeout("the query exceeded its time limit; narrow the date range or add filters");
    }
    // MEMORY_LIMIT_EXCEEDED (241), TOO_MANY_ROWS (158), TOO_MANY_ROWS_OR_BYTES (396): over the
    // per-statement limits.
    if ["MEMORY_LIMIT_EXCEEDED", "Code: 241", "TOO_MANY_ROWS", "Code: 158", "Code: 396"]
        .iter()
        .any(|m| text.contains(m))
    {
        return ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "too_expensive",
            "the query needs more memory or rows than one query may use; narrow the date range or add filters",
        );
    }
    // AUTHENTICATION_FAILED (516) / REQUIRED_PASSWORD (194): query's account is being rotated
    // (the operator altered it and this pod still has the old password until it is replaced).
    if ["AUTHENTICATION_FAILED", "Code: 516", "REQUIRED_PASSWORD", "Code: 194"].iter().any(|m| text.contains(m)) {
        tracing::warn!(error = %text, "ClickHouse refused query's credentials");
        return ApiError::unavailable("the events store refused this service's credentials; try again shortly");
    }
    match e {
        clickhouse::error::Error::Network(_) => {
            tracing::warn!(error = %text, "ClickHouse unreachable");
            ApiError::unavailable("the events store is unreachable; try again shortly")
        }
        _ => ApiError::internal(format!("ClickHouse: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_credentials_are_retryable_not_internal() {
        let e = clickhouse::error::Error::BadResponse(
            "Code: 516. DB::Exception: cairn_query.ns.p: Authentication failed. (AUTHENTICATION_FAILED)".into(),
        );
        let r = clickhouse_error(e);
        assert_eq!(r.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let e = clickhouse::error::Error::BadResponse("Code: 60. DB::Exception: Unknown table".into());
        assert_eq!(clickhouse_error(e).status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn request_values_become_parameters_never_text() {
        let mut sql = Sql::new();
        let source = EventsSource::new(true);
        sql.push("SELECT count()");
        source.scoped(&mut sql, 7, Some(1000), Some(2000));
        let evil = "x' OR 1=1 --";
        let p = sql.str(evil);
        sql.push(" AND event = ").push(&p);
        assert_eq!(
            sql.text(),
            "SELECT count() FROM events FINAL WHERE project_id = {p0:UInt64} AND timestamp >= \
             fromUnixTimestamp64Milli({p1:Int64}, 'UTC') AND timestamp < fromUnixTimestamp64Milli({p2:Int64}, 'UTC') \
             AND event = {p3:String}"
        );
        assert!(!sql.text().contains(evil));
        assert_eq!(sql.params()[3].1, Param::Str(evil.into()));
        assert_eq!(sql.params()[0].1, Param::U64(7));
    }

    #[test]
    fn a_project_with_changed_events_reads_their_latest_versions() {
        let mut sql = Sql::new();
        let source = EventsSource { changes: true, ..EventsSource::new(true) };
        sql.push("SELECT count()");
        source.scoped(&mut sql, 7, Some(1000), None);
        assert_eq!(
            sql.text(),
            "SELECT count() FROM (SELECT uuid, project_id, event, distinct_id, properties, timestamp, received_at \
             FROM events FINAL WHERE project_id = {p0:UInt64} AND timestamp >= fromUnixTimestamp64Milli({p1:Int64}, 'UTC') \
             AND uuid NOT IN (SELECT uuid FROM event_changes WHERE project_id = {p0:UInt64}) UNION ALL SELECT uuid, \
             project_id, event, distinct_id, properties, timestamp, received_at FROM event_changes FINAL WHERE \
             project_id = {p0:UInt64} AND timestamp >= fromUnixTimestamp64Milli({p1:Int64}, 'UTC') AND deleted = 0) \
             AS events WHERE project_id = {p2:UInt64} AND timestamp >= fromUnixTimestamp64Milli({p3:Int64}, 'UTC')"
        );
        let mut sql = Sql::new();
        source.scoped_in(&mut sql, EVENTS_BY_PERSON_TABLE, 7, None, None);
        assert!(sql.text().contains(
            "SELECT project_id, cityHash64(distinct_id) AS person, event, timestamp, uuid FROM event_changes FINAL"
        ));
        assert!(sql.text().ends_with(") AS events_by_person WHERE project_id = {p1:UInt64}"), "{}", sql.text());
    }
}
