//! Taking data out: an insight's result as CSV or JSON, and the events explorer's events as CSV
//! or JSON lines, streamed from ClickHouse as it produces them.
//!
//! Events exports are bounded (`CAIRN_QUERY_EXPORT_MAX_ROWS`, default 1,000,000 rows; more is
//! cut there and said so in `X-Cairn-Export-Truncated`), run under their own time limit
//! (`CAIRN_QUERY_EXPORT_TIMEOUT_SECS`, default 600) and announce their size first
//! (`X-Cairn-Export-Rows`) so a client can show progress as the rows arrive. CSV cells that a
//! spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, CR at the start of a text) are
//! prefixed with `'`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use cairn_common::http::ApiError;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::Engine;
use crate::explorer::EventsParams;
use crate::sql::Sql;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Csv,
    Json,
}

impl Format {
    pub fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        match text.map(str::trim) {
            None | Some("") | Some("csv") => Ok(Format::Csv),
            Some("json") => Ok(Format::Json),
            Some(_) => Err(ApiError::invalid("format", "csv or json")),
        }
    }
}

/// The limits of events exports.
#[derive(Debug, Clone)]
pub struct ExportLimits {
    pub max_rows: u64,
    pub timeout: Duration,
}

/// One CSV field (RFC 4180), with text a spreadsheet would run as a formula made inert.
pub fn csv_field(v: &Value) -> String {
    let text = match v {
        Value::Null => return String::new(),
        Value::Bool(b) => return b.to_string(),
        Value::Number(n) => return n.to_string(),
        Value::String(s) => {
            if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{s}")
            } else {
                s.clone()
            }
        }
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// CSV text from a header and rows.
pub fn csv(header: &[String], rows: &[Vec<Value>]) -> String {
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(header.iter().map(|h| csv_field(&Value::String(h.clone()))).collect(), &mut out);
    for row in rows {
        line(row.iter().map(csv_field).collect(), &mut out);
    }
    out
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// An analysis' result as a table: one row per series (per breakdown value) with a column per
/// period for trends and stickiness, one per step for funnels, per cohort for retention, per
/// period for lifecycle and sessions, per link for paths.
pub fn table(kind: &str, r: &Value) -> (Vec<String>, Vec<Vec<Value>>) {
    match kind {
        "trends" => {
            let labels: Vec<String> =
                arr(&r["labels"]).iter().map(|l| l.as_str().unwrap_or_default().to_string()).collect();
            let mut header =
                vec!["series".into(), "name".into(), "math".into(), "breakdown_value".into(), "total".into()];
            header.extend(labels.iter().cloned());
            let mut rows: Vec<Vec<Value>> = arr(&r["results"])
                .iter()
                .map(|x| {
                    let mut row = vec![
                        x["label"].clone(),
                        x["name"].clone(),
                        x["math"].clone(),
                        x["breakdown_value"].clone(),
                        x["aggregated_value"].clone(),
                    ];
                    row.extend(arr(&x["data"]).iter().cloned());
                    row
                })
                .collect();
            for f in arr(&r["formula"]) {
                let mut row = vec![
                    f["formula"].clone(),
                    f["formula"].clone(),
                    s("formula"),
                    f["breakdown_value"].clone(),
                    Value::Null,
                ];
                row.extend(arr(&f["data"]).iter().cloned());
                rows.push(row);
            }
            (header, rows)
        }
        "funnels" => {
            let header = [
                "breakdown_value",
                "step",
                "name",
                "count",
                "conversion_rate",
                "step_conversion_rate",
                "median_time_to_convert_seconds",
                "average_time_to_convert_seconds",
            ]
            .map(String::from)
            .to_vec();
            let step_rows = |bd: &Value, steps: &Value| -> Vec<Vec<Value>> {
                arr(steps)
                    .iter()
                    .map(|st| {
                        vec![
                            bd.clone(),
                            st["index"].clone(),
                            st["name"].clone(),
                            st["count"].clone(),
                            st["conversion_rate"].clone(),
                            st["step_conversion_rate"].clone(),
                            st["median_time_to_convert_seconds"].clone(),
                            st["average_time_to_convert_seconds"].clone(),
                        ]
                    })
                    .collect()
            };
            let mut rows = step_rows(&Value::Null, &r["steps"]);
            for b in arr(&r["breakdown"]) {
                rows.extend(step_rows(&b["breakdown_value"], &b["steps"]));
            }
            (header, rows)
        }
        "retention" => {
            let n = arr(&r["cohorts"]).len();
            let mut header = vec!["cohort".into(), "size".into()];
            header.extend((0..n).map(|k| format!("period_{k}")));
            let rows = arr(&r["cohorts"])
                .iter()
                .map(|c| {
                    let mut row = vec![c["date"].clone(), c["size"].clone()];
                    row.extend(arr(&c["values"]).iter().cloned());
                    row
                })
                .collect();
            (header, rows)
        }
        "stickiness" => {
            let n = r["periods"].as_u64().unwrap_or(0);
            let mut header = vec!["series".into(), "persons".into()];
            header.extend((1..=n).map(|k| format!("active_{k}")));
            let rows = arr(&r["results"])
                .iter()
                .map(|x| {
                    let mut row = vec![x["label"].clone(), x["persons"].clone()];
                    row.extend(arr(&x["data"]).iter().cloned());
                    row
                })
                .collect();
            (header, rows)
        }
        "lifecycle" => {
            let header = ["period", "new", "returning", "resurrecting", "dormant"].map(String::from).to_vec();
            let rows = arr(&r["labels"])
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    vec![
                        l.clone(),
                        r["new"][i].clone(),
                        r["returning"][i].clone(),
                        r["resurrecting"][i].clone(),
                        r["dormant"][i].clone(),
                    ]
                })
                .collect();
            (header, rows)
        }
        "paths" => {
            let header = ["step", "source", "target", "persons"].map(String::from).to_vec();
            let rows = arr(&r["links"])
                .iter()
                .map(|l| vec![l["step"].clone(), l["source"].clone(), l["target"].clone(), l["persons"].clone()])
                .collect();
            (header, rows)
        }
        "sessions" => {
            let stats = [
                "sessions",
                "median_duration_seconds",
                "p90_duration_seconds",
                "avg_duration_seconds",
                "avg_events_per_session",
                "bounce_rate",
            ];
            let mut header = vec!["period".to_string()];
            header.extend(stats.iter().map(|x| x.to_string()));
            let mut rows: Vec<Vec<Value>> = arr(&r["labels"])
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let mut row = vec![l.clone()];
                    row.extend(stats.iter().map(|k| r["series"][i][*k].clone()));
                    row
                })
                .collect();
            let mut total = vec![s("total")];
            total.extend(stats.iter().map(|k| r["totals"][*k].clone()));
            rows.push(total);
            (header, rows)
        }
        _ => (vec!["result".into()], vec![vec![r.clone()]]),
    }
}

fn disposition(name: &str) -> HeaderValue {
    // `name` is built here from a kind, an id and a date: ASCII without quotes.
    HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).unwrap_or(HeaderValue::from_static("attachment"))
}

/// An analysis' result as a download.
pub fn result_download(kind: &str, name_stem: &str, result: &Value, format: Format) -> Response {
    match format {
        Format::Json => {
            let body = serde_json::to_vec_pretty(result).unwrap_or_default();
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                    (header::CONTENT_DISPOSITION, disposition(&format!("{name_stem}.json"))),
                ],
                body,
            )
                .into_response()
        }
        Format::Csv => {
            let (header_row, rows) = table(kind, result);
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
                    (header::CONTENT_DISPOSITION, disposition(&format!("{name_stem}.csv"))),
                ],
                csv(&header_row, &rows),
            )
                .into_response()
        }
    }
}

/// A `DateTime64(3)` column as RFC 3339 text in UTC with milliseconds (`2026-12-05T10:00:00.123Z`),
/// as exported files carry times.
pub fn iso_sql(column: &str) -> String {
    format!(
        "formatDateTime({column}, '%Y-%m-%dT%H:%i:%S', 'UTC') || '.' || \
         leftPad(toString(toUnixTimestamp64Milli({column}) % 1000), 3, '0') || 'Z'"
    )
}

#[derive(clickhouse::Row, Deserialize)]
struct Count {
    n: u64,
}

/// The events the explorer would list for `params` (every page of them, newest first), streamed
/// as CSV or JSON lines.
pub async fn events_download(
    engine: &Engine,
    limits: &ExportLimits,
    project_id: u64,
    params: &EventsParams,
    format: Format,
    now: jiff::Timestamp,
) -> Result<Response, ApiError> {
    if params.cursor.is_some() || params.limit.is_some() {
        return Err(ApiError::invalid("cursor", "an export takes every event the filters select: no cursor or limit"));
    }
    // How many: announced first, so a client can show progress.
    let mut count = Sql::new();
    crate::explorer::events_where(engine, project_id, params, "count() AS n", &mut count, now)?;
    let total = engine.fetch_all::<Count>(&count).await?.first().map_or(0, |c| c.n);
    let rows = total.min(limits.max_rows);

    // Selected under names of their own (an alias named like its column would shadow it in
    // WHERE), ordered, limited, then renamed outside.
    let inert = |c: &str| format!("if(match({c}, '^[=+\\\\-@\\t\\r]'), concat('''', {c}), {c})");
    let (event, distinct_id, ch_format, content_type, ext) = match format {
        // Text a spreadsheet would run as a formula gets a leading `'`.
        Format::Csv => (inert("event"), inert("distinct_id"), "CSVWithNames", "text/csv; charset=utf-8", "csv"),
        Format::Json => {
            ("toString(event)".to_string(), "distinct_id".to_string(), "JSONEachRow", "application/x-ndjson", "jsonl")
        }
    };
    let columns = format!(
        "toString(uuid) AS x_uuid, {event} AS x_event, {distinct_id} AS x_distinct_id, \
         {} AS x_timestamp, properties AS x_properties, timestamp AS x_ts",
        iso_sql("timestamp")
    );
    let mut sql = Sql::new();
    sql.push("SELECT x_uuid AS uuid, x_event AS event, x_distinct_id AS distinct_id, x_timestamp AS timestamp, x_properties AS properties FROM (");
    crate::explorer::events_where(engine, project_id, params, &columns, &mut sql, now)?;
    let limit = sql.u64(limits.max_rows);
    sql.push(" ORDER BY x_ts DESC, x_uuid DESC LIMIT ").push(&limit).push(") ORDER BY x_ts DESC, x_uuid DESC");

    let mut export_engine = engine.clone();
    export_engine.timeout = limits.timeout;
    let mut cursor = export_engine.stream_bytes(&sql, ch_format).map_err(crate::sql::clickhouse_error)?;
    // The first bytes (or the error ClickHouse answers at once) before the 200 is sent.
    let first = match tokio::time::timeout(limits.timeout, cursor.next()).await {
        Err(_) => return Err(crate::sql::timed_out(limits.timeout)),
        Ok(Err(e)) => return Err(crate::sql::clickhouse_error(e)),
        Ok(Ok(first)) => first,
    };
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let rest = futures::stream::unfold((cursor, false), move |(mut cursor, done)| async move {
        if done {
            return None;
        }
        match tokio::time::timeout_at(deadline, cursor.next()).await {
            Ok(Ok(Some(bytes))) => Some((Ok(bytes), (cursor, false))),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "an events export failed while streaming");
                Some((Err(std::io::Error::other(e.to_string())), (cursor, true)))
            }
            Err(_) => {
                tracing::warn!("an events export ran past its time limit");
                Some((Err(std::io::Error::other("the export ran past its time limit")), (cursor, true)))
            }
        }
    });
    let head = futures::stream::iter(first.map(Ok::<_, std::io::Error>));
    let body = Body::from_stream(futures::StreamExt::chain(head, rest));
    let name = format!("events-{project_id}-{}.{ext}", now.strftime("%Y%m%d-%H%M%S"));
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition(&name)),
        ],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-cairn-export-rows", HeaderValue::from(rows));
    headers.insert(
        "x-cairn-export-truncated",
        HeaderValue::from_static(if total > limits.max_rows { "true" } else { "false" }),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field(&json!("plain")), "plain");
        assert_eq!(csv_field(&json!("a,b")), "\"a,b\"");
        assert_eq!(csv_field(&json!("say \"hi\"\nbye")), "\"say \"\"hi\"\"\nbye\"");
        assert_eq!(csv_field(&json!("=HYPERLINK(\"x\")")), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field(&json!("-1+2")), "'-1+2");
        assert_eq!(csv_field(&json!(-3.5)), "-3.5");
        assert_eq!(csv_field(&Value::Null), "");
    }

    #[test]
    fn results_become_tables() {
        let r = json!({"labels": ["d1", "d2"], "results": [{"label": "A", "name": "$pageview", "math": "total", "breakdown_value": null, "aggregated_value": 3.0, "data": [1.0, 2.0]}]});
        let (h, rows) = table("trends", &r);
        assert_eq!(h, vec!["series", "name", "math", "breakdown_value", "total", "d1", "d2"]);
        assert_eq!(
            csv(&h, &rows),
            "series,name,math,breakdown_value,total,d1,d2\r\nA,$pageview,total,,3.0,1.0,2.0\r\n"
        );
        let (h, rows) = table(
            "lifecycle",
            &json!({"labels": ["p"], "new": [1], "returning": [2], "resurrecting": [3], "dormant": [4]}),
        );
        assert_eq!((h.len(), rows[0].len()), (5, 5));
    }
}
