//! SQL written by people: `POST /api/v1/projects/{id}/query/sql`.
//!
//! The statement is parsed (sqlparser's ClickHouse dialect) and checked, then **printed back from
//! the parsed tree** — ClickHouse never sees the text the person wrote, only what the parser
//! understood of it, so comments, odd quoting or escapes cannot smuggle anything past the check.
//!
//! What a statement may be: one `SELECT` (with `WITH`, joins, subqueries, `UNION`, window
//! functions, `ARRAY JOIN`, lambdas) over these tables, each of which holds this project's rows
//! only:
//! - `events`: uuid, event, distinct_id, person_id, properties (JSON text), timestamp, received_at
//!   — as the analyses see them (changed events in their latest version, deleted ones and those
//!   of persons being deleted left out, `person_id` after merges);
//! - `persons`: person_id, properties (JSON text) — the persons that have properties.
//!
//! Each reference to one of them is replaced by a subquery over the real table restricted to the
//! project (the project id a bound parameter), under the name the statement used. Everything
//! else is refused with a 400 naming what: other tables (qualified or not, `system.*`), table
//! functions (`remote`, `url`, `file`, `s3`, `numbers`, …), functions outside an allow-list (no
//! `dictGet`, `joinGet`, `file`, `getSetting`, …), `IN <table>`, `SETTINGS`, `FORMAT`, `INTO
//! OUTFILE`, placeholders, writes and every statement that is not a query. `WITH` names are
//! renamed to names of this statement's own (so a `WITH` that shadows a table can never fall
//! through to the table), and every string literal becomes a bound parameter (so no literal is
//! ever printed back with an escape ClickHouse would read differently).
//!
//! The statement then runs read-only with the service's time, memory and rows-read limits, and a
//! cap on the rows and bytes it returns.

use std::collections::HashSet;
use std::ops::ControlFlow;

use cairn_common::http::ApiError;
use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    Expr, FunctionArguments, Ident, InTarget, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SetExpr,
    Statement, TableAlias, TableFactor, Value, ValueWithSpan, VisitMut, VisitorMut,
};
use sqlparser::dialect::ClickHouseDialect;
use sqlparser::parser::Parser;

use crate::engine::Engine;
use crate::sql::Sql;

/// The longest statement accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;
/// How deep the parser may nest (expressions, subqueries) before it refuses.
const MAX_NESTING: usize = 64;
/// Rows returned by default, and at most.
pub const DEFAULT_ROWS: usize = 1_000;
pub const MAX_ROWS: usize = 10_000;
/// Bytes of result at most (ClickHouse stops producing past it).
const MAX_RESULT_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    pub query: String,
    /// Rows to return (default 1,000, at most 10,000); `truncated` says when there were more.
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Column {
    pub name: String,
    /// ClickHouse's type of the column, e.g. `UInt64`, `String`, `DateTime64(3, 'UTC')`.
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SqlResponse {
    pub columns: Vec<Column>,
    /// One array per row, in the columns' order (64-bit integers as strings, as ClickHouse's JSON
    /// formats give them, so no precision is lost in JavaScript).
    pub rows: Vec<serde_json::Value>,
    /// Whether the statement had more rows than were returned.
    pub truncated: bool,
    /// The statement as it ran, with the project's tables as `events`/`persons` (not their
    /// subqueries), for the person to see what was understood.
    pub statement: String,
}

/// The tables a statement may read, by the name it uses for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exposed {
    Events,
    Persons,
}

impl Exposed {
    fn of(name: &str) -> Option<Self> {
        match name {
            "events" => Some(Exposed::Events),
            "persons" => Some(Exposed::Persons),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Exposed::Events => "events",
            Exposed::Persons => "persons",
        }
    }
}

/// A statement ready to run: its text, with the bound parameters in `sql`.
#[derive(Debug)]
pub struct Checked {
    pub sql: Sql,
    /// The statement as printed back, before the project's tables were put in (for the answer).
    pub shown: String,
}

fn refuse(reason: impl Into<String>) -> ApiError {
    ApiError::invalid("query", reason)
}

/// Parses, checks and rewrites `text` for `project_id`.
pub fn check(engine: &Engine, project_id: u64, text: &str) -> Result<Checked, ApiError> {
    if text.trim().is_empty() {
        return Err(refuse("the statement is empty"));
    }
    if text.len() > MAX_SQL_BYTES {
        return Err(refuse(format!("the statement is longer than {MAX_SQL_BYTES} bytes")));
    }
    let mut statements = Parser::new(&ClickHouseDialect {})
        .with_recursion_limit(MAX_NESTING)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| refuse(format!("not a statement this service understands: {e}")))?;
    if statements.len() != 1 {
        return Err(refuse(format!("one statement, not {}", statements.len())));
    }
    let Some(mut statement) = statements.pop() else {
        return Err(refuse("the statement is empty"));
    };
    let marker = format!("cairn_{}", uuid::Uuid::new_v4().simple());
    let mut rewriter = Rewriter {
        sql: Sql::new(),
        marker: marker.clone(),
        frames: Vec::new(),
        array_joins: HashSet::new(),
        used: Vec::new(),
        cte_count: 0,
    };
    if let ControlFlow::Break(e) = statement.visit(&mut rewriter) {
        return Err(e);
    }
    let printed = statement.to_string();
    let mut sql = rewriter.sql;
    let mut shown = printed.clone();
    let mut text = printed;
    for table in rewriter.used {
        let name = format!("{marker}_{}", table.name());
        let subquery = match table {
            Exposed::Events => events_subquery(engine, &mut sql, project_id),
            Exposed::Persons => persons_subquery(&mut sql, project_id),
        };
        text = text.replace(&name, &format!("({subquery})"));
        shown = shown.replace(&name, table.name());
    }
    // CTE names are `{marker}_cte{n}_{name}`: shown as the person wrote them.
    let shown = strip_cte_marker(&shown, &marker);
    sql.push(&text);
    Ok(Checked { sql, shown })
}

fn strip_cte_marker(text: &str, marker: &str) -> String {
    let prefix = format!("{marker}_cte");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(&prefix) {
        out.push_str(&rest[..i]);
        rest = &rest[i + prefix.len()..];
        // digits, then `_`
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        rest = rest[digits..].strip_prefix('_').unwrap_or(&rest[digits..]);
    }
    out.push_str(rest);
    out
}

/// `SELECT … FROM <the project's events, as analyses read them>`.
fn events_subquery(engine: &Engine, sql: &mut Sql, project_id: u64) -> String {
    // Nothing else is written into `sql` until every subquery is built.
    sql.push("SELECT uuid, event, distinct_id, properties, timestamp, received_at");
    engine.source.scoped(sql, project_id, None, None);
    let inner = sql.take_text();
    let overrides = crate::persons::overrides(sql, project_id);
    format!(
        "SELECT e.uuid AS uuid, e.event AS event, e.distinct_id AS distinct_id, \
         if(o.person_id = 0, cityHash64(e.distinct_id), o.person_id) AS person_id, e.properties AS properties, \
         e.timestamp AS timestamp, e.received_at AS received_at FROM ({inner}) AS e LEFT JOIN {overrides} AS o \
         ON cityHash64(e.distinct_id) = o.id_hash"
    )
}

/// `SELECT person_id, properties FROM <the project's persons with properties>`.
fn persons_subquery(sql: &mut Sql, project_id: u64) -> String {
    let persons = crate::persons::persons_with_properties(sql, project_id);
    format!("SELECT person AS person_id, properties FROM {persons}")
}

/// One query's `WITH` names: as written, as renamed, and how many are visible (a CTE sees only
/// those before it).
struct Frame {
    names: Vec<(String, String)>,
    ctes: Vec<*const Query>,
    visible: usize,
}

struct Rewriter {
    sql: Sql,
    marker: String,
    frames: Vec<Frame>,
    /// `ARRAY JOIN` targets: expressions, not tables.
    array_joins: HashSet<*const TableFactor>,
    used: Vec<Exposed>,
    cte_count: usize,
}

impl Rewriter {
    fn cte(&self, name: &str) -> Option<String> {
        self.frames
            .iter()
            .rev()
            .flat_map(|f| f.names[..f.visible].iter().rev())
            .find(|(written, _)| written == name)
            .map(|(_, renamed)| renamed.clone())
    }
}

fn single_name(name: &ObjectName) -> Option<&Ident> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(ident),
        _ => None,
    }
}

impl VisitorMut for Rewriter {
    type Break = ApiError;

    fn pre_visit_statement(&mut self, statement: &mut Statement) -> ControlFlow<ApiError> {
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(refuse("only SELECT statements (a query) may run here")),
        }
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<ApiError> {
        if query.settings.is_some() {
            return ControlFlow::Break(refuse("SETTINGS may not be given: the service sets the limits"));
        }
        if query.format_clause.is_some() {
            return ControlFlow::Break(refuse("FORMAT may not be given: results come back as JSON"));
        }
        if !query.locks.is_empty() || query.for_clause.is_some() || !query.pipe_operators.is_empty() {
            return ControlFlow::Break(refuse("FOR, locking and pipe clauses are not supported"));
        }
        match query.body.as_ref() {
            SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::SetOperation { .. } => {}
            _ => return ControlFlow::Break(refuse("only SELECT statements (a query) may run here")),
        }
        // A CTE of the enclosing query sees the CTEs before it only.
        let me = query as *const Query;
        if let Some(parent) = self.frames.last_mut() {
            if let Some(i) = parent.ctes.iter().position(|c| *c == me) {
                parent.visible = i;
            }
        }
        let mut frame = Frame { names: Vec::new(), ctes: Vec::new(), visible: 0 };
        if let Some(with) = &mut query.with {
            if with.recursive {
                return ControlFlow::Break(refuse("WITH RECURSIVE is not supported"));
            }
            for cte in &mut with.cte_tables {
                if cte.from.is_some() {
                    return ControlFlow::Break(refuse("WITH … FROM is not supported"));
                }
                let written = cte.alias.name.value.clone();
                if frame.names.iter().any(|(w, _)| *w == written) {
                    return ControlFlow::Break(refuse(format!("WITH names `{written}` twice")));
                }
                self.cte_count += 1;
                let renamed = format!("{}_cte{}_{written}", self.marker, self.cte_count);
                cte.alias.name = Ident::new(renamed.clone());
                frame.names.push((written, renamed));
                frame.ctes.push(cte.query.as_ref() as *const Query);
            }
        }
        frame.visible = frame.names.len();
        self.frames.push(frame);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<ApiError> {
        self.frames.pop();
        let me = query as *const Query;
        if let Some(parent) = self.frames.last_mut() {
            if parent.ctes.contains(&me) {
                parent.visible = parent.names.len();
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<ApiError> {
        if select.into.is_some() {
            return ControlFlow::Break(refuse("SELECT … INTO is not supported"));
        }
        if !select.lateral_views.is_empty() || !select.connect_by.is_empty() {
            return ControlFlow::Break(refuse("LATERAL VIEW and CONNECT BY are not supported"));
        }
        for from in &select.from {
            for join in &from.joins {
                if matches!(
                    join.join_operator,
                    JoinOperator::ArrayJoin | JoinOperator::LeftArrayJoin | JoinOperator::InnerArrayJoin
                ) {
                    self.array_joins.insert(&join.relation as *const TableFactor);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<ApiError> {
        let is_array_join = self.array_joins.contains(&(factor as *const TableFactor));
        match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_directives,
                inheritance,
            } => {
                if is_array_join {
                    // `ARRAY JOIN arr AS a` or `ARRAY JOIN f(…) AS a`: an expression.
                    let Some(ident) = single_name(name) else {
                        return ControlFlow::Break(refuse("ARRAY JOIN takes a column or a function of columns"));
                    };
                    if args.is_some() && !function_allowed(&ident.value) {
                        return ControlFlow::Break(refuse(format!("the function `{}` is not allowed", ident.value)));
                    }
                    return ControlFlow::Continue(());
                }
                if args.is_some() {
                    return ControlFlow::Break(refuse(format!(
                        "table functions (`{name}(…)`) are not allowed: read `events` or `persons`"
                    )));
                }
                if !with_hints.is_empty()
                    || version.is_some()
                    || *with_ordinality
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                    || !index_directives.is_empty()
                    || inheritance.is_some()
                {
                    return ControlFlow::Break(refuse(format!("table modifiers on `{name}` are not supported")));
                }
                let Some(ident) = single_name(name).cloned() else {
                    return ControlFlow::Break(refuse(format!(
                        "`{name}` is not a table here: only `events` and `persons` (of this project) may be read"
                    )));
                };
                let replacement = if let Some(renamed) = self.cte(&ident.value) {
                    renamed
                } else if let Some(table) = Exposed::of(&ident.value) {
                    if !self.used.contains(&table) {
                        self.used.push(table);
                    }
                    format!("{}_{}", self.marker, table.name())
                } else {
                    return ControlFlow::Break(refuse(format!(
                        "`{}` is not a table here: only `events` and `persons` (of this project) may be read",
                        ident.value
                    )));
                };
                *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(replacement))]);
                if alias.is_none() {
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: Ident::new(ident.value),
                        columns: Vec::new(),
                        at: None,
                    });
                }
                ControlFlow::Continue(())
            }
            TableFactor::Derived { lateral: false, sample: None, .. } | TableFactor::NestedJoin { .. } => {
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Break(refuse("only tables, subqueries and joins may follow FROM")),
        }
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ApiError> {
        match expr {
            Expr::Function(f) => {
                let Some(ident) = single_name(&f.name) else {
                    return ControlFlow::Break(refuse(format!("the function `{}` is not allowed", f.name)));
                };
                if !function_allowed(&ident.value) {
                    return ControlFlow::Break(refuse(format!("the function `{}` is not allowed", ident.value)));
                }
                if let FunctionArguments::Subquery(_) = f.args {
                    return ControlFlow::Break(refuse("a function of a subquery is not supported"));
                }
            }
            // `x IN t` reads the table `t` in ClickHouse: the right side is a list of values or
            // a subquery.
            // `{name:Type}` (read as a DuckDB dictionary here) is a query parameter in ClickHouse.
            Expr::Dictionary(_) => {
                return ControlFlow::Break(refuse("query parameters ({name:Type}, ?, $1) are not supported"))
            }
            Expr::In { target, .. } => match target {
                InTarget::Subquery(_) => {}
                InTarget::List(list)
                    if !list.iter().any(|e| matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))) => {}
                _ => {
                    return ControlFlow::Break(refuse(
                        "IN takes a list of values or a subquery, not a name (a name would be read as a table)",
                    ))
                }
            },
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<ApiError> {
        let text = match &value.value {
            Value::Number(..) | Value::Boolean(_) | Value::Null => return ControlFlow::Continue(()),
            Value::SingleQuotedString(s) | Value::TripleSingleQuotedString(s) => s.clone(),
            Value::DollarQuotedString(d) => d.value.clone(),
            Value::Placeholder(_) => {
                return ControlFlow::Break(refuse("query parameters ({name:Type}, ?, $1) are not supported"))
            }
            _ => return ControlFlow::Break(refuse(format!("the literal {} is not supported", value.value))),
        };
        // Bound, never printed: ClickHouse reads the parameter's value as it is.
        let placeholder = self.sql.str(text);
        value.value = Value::Placeholder(placeholder);
        ControlFlow::Continue(())
    }

    fn pre_visit_ident(&mut self, ident: &mut Ident) -> ControlFlow<ApiError> {
        if !matches!(ident.quote_style, None | Some('"') | Some('`')) {
            return ControlFlow::Break(refuse(format!("the quoting of `{}` is not supported", ident.value)));
        }
        if ident.value.contains(['\\', '\0']) {
            return ControlFlow::Break(refuse("names may not contain backslashes"));
        }
        if ident.value.starts_with(&self.marker) {
            return ControlFlow::Continue(());
        }
        if ident.value.to_ascii_lowercase().starts_with("cairn_") {
            return ControlFlow::Break(refuse("names starting with `cairn_` are reserved"));
        }
        ControlFlow::Continue(())
    }
}

/// Aggregate functions, which also take ClickHouse's combinators (`countIf`, `sumArray`,
/// `uniqMerge`, …).
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "any",
    "anylast",
    "anyheavy",
    "argmin",
    "argmax",
    "uniq",
    "uniqexact",
    "uniqcombined",
    "uniqcombined64",
    "uniqhll12",
    "uniqtheta",
    "grouparray",
    "groupuniqarray",
    "grouparraysorted",
    "grouparrayinsertat",
    "groupbitand",
    "groupbitor",
    "groupbitxor",
    "groupbitmap",
    "median",
    "medianexact",
    "quantile",
    "quantiles",
    "quantileexact",
    "quantilesexact",
    "quantileexactinclusive",
    "quantileexactexclusive",
    "quantiletdigest",
    "quantilestdigest",
    "quantiletiming",
    "quantiledeterministic",
    "quantilebfloat16",
    "stddevpop",
    "stddevsamp",
    "varpop",
    "varsamp",
    "covarpop",
    "covarsamp",
    "corr",
    "topk",
    "topkweighted",
    "summap",
    "minmap",
    "maxmap",
    "avgweighted",
    "entropy",
    "skewpop",
    "skewsamp",
    "kurtpop",
    "kurtsamp",
    "simplelinearregression",
    "windowfunnel",
    "retention",
    "sequencematch",
    "sequencecount",
    "histogram",
    "first_value",
    "last_value",
    "any_value",
    "sumwithoverflow",
    "sumkahan",
    "countdistinct",
    "grouparraymovingsum",
    "grouparraymovingavg",
    "singlevalueornull",
    "mode",
    "boundingratio",
    "deltasum",
    "rankcorr",
    "contingency",
    "cramersv",
];

const COMBINATORS: &[&str] =
    &["if", "array", "distinct", "ornull", "ordefault", "foreach", "merge", "state", "map", "resample", "simplestate"];

/// Other functions: arithmetic, comparison, logic, conditionals, types, dates, strings, search,
/// JSON, arrays, maps, tuples, hashes, rounding, math, URLs, window functions. Nothing that reads
/// a table, a file, a dictionary, the network, settings or the server.
const FUNCTIONS: &[&str] = &[
    // arithmetic, comparison, logic, conditionals
    "plus",
    "minus",
    "multiply",
    "divide",
    "intdiv",
    "intdivorzero",
    "modulo",
    "moduloorzero",
    "negate",
    "abs",
    "gcd",
    "lcm",
    "equals",
    "notequals",
    "less",
    "greater",
    "lessorequals",
    "greaterorequals",
    "and",
    "or",
    "not",
    "xor",
    "if",
    "multiif",
    "ifnull",
    "nullif",
    "coalesce",
    "assumenotnull",
    "tonullable",
    "isnull",
    "isnotnull",
    "greatest",
    "least",
    "in",
    "notin",
    "transform",
    // types
    "toint8",
    "toint16",
    "toint32",
    "toint64",
    "touint8",
    "touint16",
    "touint32",
    "touint64",
    "tofloat32",
    "tofloat64",
    "toint64orzero",
    "toint64ornull",
    "tofloat64orzero",
    "tofloat64ornull",
    "touint64orzero",
    "touint64ornull",
    "toint32orzero",
    "toint32ornull",
    "todecimal64",
    "todecimal32",
    "tostring",
    "tofixedstring",
    "touuid",
    "touuidornull",
    "tobool",
    "totypename",
    "cast",
    "accuratecastornull",
    "reinterpretasstring",
    "todate",
    "todate32",
    "todatetime",
    "todatetime64",
    "todateornull",
    "todatetimeornull",
    "todatetime64ornull",
    "parsedatetimebesteffort",
    "parsedatetimebesteffortornull",
    "parsedatetime64besteffort",
    "parsedatetime64besteffortornull",
    "tounixtimestamp",
    "tounixtimestamp64milli",
    "fromunixtimestamp",
    "fromunixtimestamp64milli",
    "tointervalsecond",
    "tointervalminute",
    "tointervalhour",
    "tointervalday",
    "tointervalweek",
    "tointervalmonth",
    "tointervalquarter",
    "tointervalyear",
    // dates and times
    "now",
    "now64",
    "today",
    "yesterday",
    "toyear",
    "toquarter",
    "tomonth",
    "todayofyear",
    "todayofmonth",
    "todayofweek",
    "tohour",
    "tominute",
    "tosecond",
    "tostartofyear",
    "tostartofquarter",
    "tostartofmonth",
    "tomonday",
    "tostartofweek",
    "tostartofday",
    "tostartofhour",
    "tostartofminute",
    "tostartoffiveminutes",
    "tostartoffifteenminutes",
    "tostartofinterval",
    "totimezone",
    "totime",
    "toyyyymm",
    "toyyyymmdd",
    "toisoweek",
    "toisoyear",
    "toweek",
    "toyearweek",
    "date_trunc",
    "datetrunc",
    "datediff",
    "date_diff",
    "dateadd",
    "date_add",
    "datesub",
    "date_sub",
    "addseconds",
    "addminutes",
    "addhours",
    "adddays",
    "addweeks",
    "addmonths",
    "addyears",
    "subtractseconds",
    "subtractminutes",
    "subtracthours",
    "subtractdays",
    "subtractweeks",
    "subtractmonths",
    "subtractyears",
    "formatdatetime",
    "timeslot",
    "age",
    "tolastdayofmonth",
    "torelativedaynum",
    "torelativehournum",
    "torelativeweeknum",
    "torelativemonthnum",
    "timestamp_add",
    "timestamp_sub",
    // strings
    "length",
    "lengthutf8",
    "char_length",
    "empty",
    "notempty",
    "lower",
    "upper",
    "lowerutf8",
    "upperutf8",
    "reverse",
    "concat",
    "concatwithseparator",
    "substring",
    "substr",
    "substringutf8",
    "left",
    "right",
    "trim",
    "trimleft",
    "trimright",
    "trimboth",
    "ltrim",
    "rtrim",
    "leftpad",
    "rightpad",
    "startswith",
    "endswith",
    "position",
    "positioncaseinsensitive",
    "locate",
    "like",
    "notlike",
    "ilike",
    "notilike",
    "match",
    "extract",
    "extractall",
    "extractgroups",
    "replaceone",
    "replaceall",
    "replace",
    "replaceregexpone",
    "replaceregexpall",
    "splitbychar",
    "splitbystring",
    "splitbyregexp",
    "arraystringconcat",
    "format",
    "repeat",
    "base64encode",
    "base64decode",
    "trybase64decode",
    "hex",
    "unhex",
    "multisearchany",
    "multisearchfirstindex",
    "multimatchany",
    "countsubstrings",
    "initcap",
    "normalizeutf8nfc",
    "tovalidutf8",
    "levenshteindistance",
    "editdistance",
    // JSON
    "jsonhas",
    "jsonlength",
    "jsontype",
    "jsonextract",
    "jsonextractstring",
    "jsonextractint",
    "jsonextractuint",
    "jsonextractfloat",
    "jsonextractbool",
    "jsonextractraw",
    "jsonextractkeys",
    "jsonextractkeysandvalues",
    "jsonextractarrayraw",
    "jsonextractkeysandvaluesraw",
    "simplejsonextractstring",
    "simplejsonextractraw",
    "simplejsonhas",
    "visitparamextractstring",
    "isvalidjson",
    "tojsonstring",
    "json_value",
    "json_query",
    "json_exists",
    // arrays, maps, tuples
    "array",
    "arrayjoin",
    "has",
    "hasall",
    "hasany",
    "indexof",
    "countequal",
    "arrayelement",
    "arrayconcat",
    "arrayslice",
    "arraypushback",
    "arraypushfront",
    "arraypopback",
    "arraypopfront",
    "arraysort",
    "arrayreversesort",
    "arrayreverse",
    "arraydistinct",
    "arrayuniq",
    "arrayenumerate",
    "arrayenumerateuniq",
    "arraymap",
    "arrayfilter",
    "arrayexists",
    "arrayall",
    "arraycount",
    "arraysum",
    "arrayavg",
    "arraymin",
    "arraymax",
    "arrayfirst",
    "arraylast",
    "arrayfirstindex",
    "arraycumsum",
    "arraydifference",
    "arrayzip",
    "arrayflatten",
    "arraycompact",
    "arrayintersect",
    "arrayreduce",
    "arrayfold",
    "arraysplit",
    "arrayresize",
    "arraystringconcat",
    "range",
    "emptyarraystring",
    "emptyarrayuint64",
    "tuple",
    "tupleelement",
    "untuple",
    "map",
    "mapkeys",
    "mapvalues",
    "mapcontains",
    "notempty",
    "arrayshuffle",
    "arraypartialsort",
    "arraysample",
    // hashes, rounding, maths, URLs, misc pure functions
    "cityhash64",
    "siphash64",
    "xxhash64",
    "murmurhash3_64",
    "md5",
    "sha256",
    "farmhash64",
    "generateuuidv4",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "truncate",
    "roundbankers",
    "rounddown",
    "exp",
    "log",
    "ln",
    "log2",
    "log10",
    "sqrt",
    "cbrt",
    "pow",
    "power",
    "sign",
    "e",
    "pi",
    "sin",
    "cos",
    "tan",
    "isnan",
    "isinfinite",
    "isfinite",
    "domain",
    "domainwithoutwww",
    "topleveldomain",
    "protocol",
    "path",
    "pathfull",
    "querystring",
    "fragment",
    "extracturlparameter",
    "extracturlparameters",
    "cutquerystring",
    "cutwww",
    "rand",
    "rand64",
    "randuniform",
    "bar",
    "formatreadablesize",
    "formatreadablequantity",
    "formatreadabletimedelta",
    "runningaccumulate",
    "neighbor",
    "bitand",
    "bitor",
    "bitxor",
    "bitnot",
    "bitshiftleft",
    "bitshiftright",
    "ipv4numtostring",
    "tostartofweekday",
    "identity",
    "ignore",
    "materialize",
    "tolowcardinality",
    "tocolumntypename",
    // window functions
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "laginframe",
    "leadinframe",
    "nth_value",
];

/// Whether `name` (as written; ClickHouse's names are matched without case) may be called.
pub fn function_allowed(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if FUNCTIONS.contains(&lower.as_str()) || AGGREGATES.contains(&lower.as_str()) {
        return true;
    }
    // An aggregate with combinators: strip them from the end.
    let mut base = lower.as_str();
    for _ in 0..4 {
        let Some(stripped) = COMBINATORS.iter().find_map(|c| base.strip_suffix(c).filter(|b| !b.is_empty())) else {
            break;
        };
        base = stripped;
        if AGGREGATES.contains(&base) {
            return true;
        }
    }
    false
}

/// Runs a checked statement: at most `limit` rows (more means `truncated`), within the service's
/// limits.
pub async fn run(engine: &Engine, project_id: u64, req: &SqlRequest) -> Result<SqlResponse, ApiError> {
    let limit = req.limit.unwrap_or(DEFAULT_ROWS);
    if limit == 0 || limit > MAX_ROWS {
        return Err(ApiError::invalid("limit", format!("between 1 and {MAX_ROWS}")));
    }
    let checked = check(engine, project_id, &req.query)?;
    let bytes = engine
        .fetch_bytes(
            &checked.sql,
            "JSONCompact",
            &[
                ("max_result_rows", (limit + 1).to_string()),
                ("max_result_bytes", MAX_RESULT_BYTES.to_string()),
                ("result_overflow_mode", "break".to_string()),
            ],
        )
        .await?
        .map_err(statement_error)?;
    let mut parsed: JsonCompact = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("ClickHouse's JSONCompact answer did not parse: {e}")))?;
    let truncated = parsed.data.len() > limit;
    parsed.data.truncate(limit);
    Ok(SqlResponse {
        columns: parsed.meta.into_iter().map(|m| Column { name: m.name, ty: m.ty }).collect(),
        rows: parsed.data,
        truncated,
        statement: checked.shown,
    })
}

/// ClickHouse's refusal of a person's statement (an unknown column, a type mismatch, a syntax
/// ClickHouse reads differently): a 400 with ClickHouse's reason. Limits, credentials and an
/// unreachable server are answered as for every analysis.
fn statement_error(e: clickhouse::error::Error) -> ApiError {
    let clickhouse::error::Error::BadResponse(text) = &e else {
        return crate::sql::clickhouse_error(e);
    };
    let limits = ["Code: 159.", "Code: 241.", "Code: 158.", "Code: 396.", "Code: 516.", "Code: 194.", "Code: 164."];
    if limits.iter().any(|c| text.contains(c)) {
        return crate::sql::clickhouse_error(e);
    }
    // `Code: 47. DB::Exception: Unknown expression identifier `x` in scope …. (UNKNOWN_IDENTIFIER)
    // (version …)`: the reason, without the statement ClickHouse quotes back or the version.
    let reason = text.split_once("DB::Exception: ").map_or(text.as_str(), |(_, r)| r);
    let reason = reason.split(" in scope ").next().unwrap_or(reason);
    let reason = reason.split(" (version ").next().unwrap_or(reason).trim();
    let reason: String = reason.chars().take(500).collect();
    ApiError::invalid("query", format!("ClickHouse refused the statement: {reason}"))
}

#[derive(Deserialize)]
struct JsonCompact {
    meta: Vec<Meta>,
    data: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    fn engine() -> Engine {
        Engine::for_tests()
    }

    fn ok(text: &str) -> Checked {
        match check(&engine(), 7, text) {
            Ok(c) => c,
            Err(e) => panic!("{text}: refused: {}", e.message),
        }
    }

    fn refused(text: &str) -> String {
        match check(&engine(), 7, text) {
            Ok(c) => panic!("{text}: accepted as {}", c.sql.text()),
            Err(e) => e.message,
        }
    }

    #[test]
    fn the_project_tables_become_scoped_subqueries() {
        let c = ok("SELECT event, count() FROM events GROUP BY event");
        let text = c.sql.text();
        assert!(text.starts_with("SELECT event, count() FROM (SELECT e.uuid AS uuid"), "{text}");
        assert!(text.contains("WHERE project_id = {p0:UInt64}"), "{text}");
        assert!(text.ends_with(") AS events GROUP BY event"), "{text}");
        assert_eq!(c.shown, "SELECT event, count() FROM events AS events GROUP BY event");
        assert!(c.sql.params().iter().all(|(_, p)| *p == crate::sql::Param::U64(7)), "{:?}", c.sql.params());
        let c = ok("SELECT p.properties FROM events AS e JOIN persons AS p ON e.person_id = p.person_id");
        assert!(c.sql.text().contains(") AS e JOIN (SELECT person AS person_id"), "{}", c.sql.text());
    }

    #[test]
    fn string_literals_are_bound_never_printed() {
        // sqlparser reads `'a\\'` as `a\`; printed back it would be `'a\'`, which ClickHouse reads
        // as an escaped quote — the literal is a parameter instead.
        let c = ok(r"SELECT 'a\\', ' FROM system.tables --' FROM events");
        assert!(!c.sql.text().contains("system"), "{}", c.sql.text());
        assert!(c.sql.params().contains(&("p0".into(), crate::sql::Param::Str("a\\".into()))), "{:?}", c.sql.params());
        let c = ok("SELECT count() FROM events WHERE event = 'it''s'");
        assert!(c.sql.text().contains("event = {p0:String}"), "{}", c.sql.text());
    }

    #[test]
    fn escapes_are_refused() {
        for (text, why) in [
            ("SELECT * FROM system.tables", "is not a table here"),
            ("SELECT * FROM default.events", "is not a table here"),
            ("SELECT * FROM person_overrides", "is not a table here"),
            ("SELECT * FROM events_by_person", "is not a table here"),
            ("SELECT * FROM numbers(10)", "table functions"),
            ("SELECT * FROM remote('127.0.0.1', default.events)", "table functions"),
            ("SELECT * FROM url('http://x/', CSV, 'a String')", "table functions"),
            ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table functions"),
            ("SELECT * FROM s3('http://x/b/k', 'CSV')", "table functions"),
            ("SELECT file('/etc/passwd') FROM events", "function `file`"),
            ("SELECT dictGet('d', 'a', 1)", "function `dictGet`"),
            ("SELECT joinGet('person_overrides', 'person_id', 1)", "function `joinGet`"),
            ("SELECT getSetting('readonly')", "function `getSetting`"),
            ("SELECT system.x(1)", "function `system.x`"),
            ("SELECT count() FROM events WHERE distinct_id IN person_overrides", "IN takes a list"),
            ("SELECT * FROM events SETTINGS readonly = 0", "SETTINGS"),
            ("SELECT * FROM events FORMAT TabSeparated", "FORMAT"),
            ("SELECT 1; SELECT 2", "one statement"),
            ("SELECT 1; DROP TABLE events", "one statement"),
            ("INSERT INTO events VALUES (1)", "only SELECT"),
            ("DROP TABLE events", "only SELECT"),
            ("SET readonly = 0", "only SELECT"),
            ("SHOW TABLES", "only SELECT"),
            ("SELECT {p0:UInt64}", "parameters"),
            ("SELECT * FROM events UNION ALL SELECT * FROM system.one", "is not a table here"),
            ("SELECT * FROM (SELECT * FROM event_changes)", "is not a table here"),
            ("SELECT * FROM events WHERE uuid IN (SELECT uuid FROM event_changes)", "is not a table here"),
            ("SELECT (SELECT count() FROM person_property_ops)", "is not a table here"),
            ("WITH t AS (SELECT * FROM system.tables) SELECT * FROM t", "is not a table here"),
            // A CTE sees only those before it, and none of a subquery's is seen outside it.
            ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "`b` is not a table here"),
            ("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) AS x, t", "`t` is not a table here"),
            ("SELECT * FROM cairn_x", "is not a table here"),
            ("SELECT cairn_x FROM events", "reserved"),
            ("SELECT `a\\b` FROM events", "backslashes"),
        ] {
            let message = refused(text);
            assert!(message.contains(why), "{text}: {message} (expected to mention {why})");
        }
    }

    #[test]
    fn comments_are_dropped_and_ctes_renamed() {
        let c = ok("WITH events AS (SELECT 1 AS x) /* SELECT * FROM system.tables */ SELECT x FROM events -- hi");
        // `events` as a WITH name is the CTE: renamed, no project table read at all.
        assert!(!c.sql.text().contains("system") && !c.sql.text().contains("-- hi"), "{}", c.sql.text());
        assert!(!c.sql.text().contains("project_id"), "{}", c.sql.text());
        assert_eq!(c.shown, "WITH events AS (SELECT 1 AS x) SELECT x FROM events AS events");
        let c = ok("WITH t AS (SELECT event FROM events) SELECT t.event FROM t");
        assert!(c.sql.text().contains("project_id = {p0:UInt64}"), "{}", c.sql.text());
    }

    #[test]
    fn functions_with_combinators_are_recognised() {
        for f in ["countIf", "sumArrayIf", "uniqExactIf", "quantilesIf", "argMax", "JSONExtractString", "toStartOfDay"]
        {
            assert!(function_allowed(f), "{f}");
        }
        for f in [
            "file",
            "dictGet",
            "joinGet",
            "url",
            "remote",
            "currentUser",
            "hostName",
            "getSetting",
            "sleep",
            "sleepEachRow",
        ] {
            assert!(!function_allowed(f), "{f}");
        }
    }
}
