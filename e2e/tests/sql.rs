//! `POST /query/sql` against the real ClickHouse engine: answers equal to a count over the
//! fixtures, and every way out of the project (other tables, `system.*`, table functions,
//! settings, comments, unions, subqueries, CTEs, escapes in literals) either refused with a 400
//! or confined to the project's rows.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use cairn_e2e::call;
use serde_json::{json, Value};

mod query_support;
use query_support::*;

fn fixtures(project: i64, base: i64, users: usize, prefix: &str) -> Vec<Ev> {
    let mut r = Lcg(project as u64 + 11);
    let mut out = Vec::new();
    for u in 0..users {
        for _ in 0..=r.next(5) {
            let event = ["pageview", "signup", "purchase"][r.next(3) as usize];
            let browser = ["Chrome", "Firefox", "Safari"][r.next(3) as usize];
            out.push(Ev {
                project,
                event: event.into(),
                distinct_id: format!("{prefix}{u}"),
                props: json!({"browser": browser, "secret": format!("{prefix}-only")}),
                ts: base + r.next(6) as i64 * DAY + r.next(86_400) as i64 * 1000,
            });
        }
    }
    out
}

async fn sql(s: &Setup, query: &str) -> Result<(u16, Value)> {
    s.post(s.a.project_id, "/query/sql", json!({ "query": query })).await
}

async fn rows(s: &Setup, query: &str) -> Result<Vec<Value>> {
    let (status, v) = sql(s, query).await?;
    if status != 200 {
        bail!("{query}: {status} {v}");
    }
    Ok(v["rows"].as_array().cloned().unwrap_or_default())
}

fn number(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(i64::MIN),
        Value::Number(n) => n.as_i64().unwrap_or(i64::MIN),
        _ => i64::MIN,
    }
}

#[tokio::test]
async fn sql_reads_only_the_project_and_cannot_escape() -> Result<()> {
    let s = setup(&[]).await?;
    let mine = fixtures(s.a.project_id, s.base, 30, "a");
    let theirs = fixtures(s.b.project_id, s.base, 40, "b");
    s.insert(&mine).await?;
    s.insert(&theirs).await?;
    let total = mine.len() as i64;

    // Answers equal to the fixtures.
    let r = rows(&s, "SELECT count() FROM events").await?;
    assert_eq!(number(&r[0][0]), total);
    let mut by_event: BTreeMap<String, i64> = BTreeMap::new();
    for e in &mine {
        *by_event.entry(e.event.clone()).or_default() += 1;
    }
    let r = rows(&s, "SELECT event, count() AS n FROM events GROUP BY event ORDER BY event").await?;
    let got: BTreeMap<String, i64> =
        r.iter().map(|row| (row[0].as_str().unwrap_or_default().to_string(), number(&row[1]))).collect();
    assert_eq!(got, by_event);
    let mut by_browser: BTreeMap<String, i64> = BTreeMap::new();
    for e in &mine {
        *by_browser.entry(e.props["browser"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    let r = rows(
        &s,
        "SELECT JSONExtractString(properties, 'browser') AS b, countIf(event != '') FROM events GROUP BY b ORDER BY b",
    )
    .await?;
    let got: BTreeMap<String, i64> =
        r.iter().map(|row| (row[0].as_str().unwrap_or_default().to_string(), number(&row[1]))).collect();
    assert_eq!(got, by_browser);
    let (_, v) = sql(&s, "SELECT uniq(person_id) AS persons, min(timestamp) FROM events").await?;
    assert_eq!(v["columns"][0], json!({"name": "persons", "type": "UInt64"}), "{v}");
    assert_eq!(number(&v["rows"][0][0]), 30);

    // Statements that are accepted stay within the project: whichever way they read events,
    // they see exactly its rows.
    for q in [
        "SELECT count() FROM events AS e",
        "SELECT count() FROM (SELECT * FROM events)",
        "SELECT count() FROM (SELECT uuid FROM events UNION ALL SELECT uuid FROM events) WHERE 1 = 0 OR 1 = 1",
        "WITH person_overrides AS (SELECT * FROM events) SELECT count() FROM person_overrides",
        "WITH events_by_person AS (SELECT uuid FROM events) SELECT count() FROM events_by_person",
        "WITH x AS (SELECT * FROM events), y AS (SELECT * FROM x) SELECT count() FROM y",
        "SELECT count() FROM events WHERE uuid IN (SELECT uuid FROM events)",
        "SELECT count() FROM events e JOIN (SELECT uuid FROM events) f ON e.uuid = f.uuid",
        "SELECT count() FROM events /* UNION ALL SELECT * FROM system.tables */",
        "SELECT count() FROM events -- ; SELECT * FROM default.events",
        "SELECT count() FROM events WHERE distinct_id NOT LIKE 'b%'",
        "SELECT count() FROM events WHERE JSONExtractString(properties, 'secret') = 'a-only'",
        "select COUNT() from events",
    ] {
        let r = rows(&s, q).await?;
        let n = number(&r[0][0]);
        let expected = if q.contains("UNION ALL SELECT uuid") { 2 * total } else { total };
        assert_eq!(n, expected, "{q}");
    }
    let r = rows(&s, "SELECT count() FROM events WHERE JSONExtractString(properties, 'secret') = 'b-only'").await?;
    assert_eq!(number(&r[0][0]), 0, "project b's rows are not visible");
    let r = rows(&s, "SELECT count() FROM events WHERE distinct_id LIKE 'b%'").await?;
    assert_eq!(number(&r[0][0]), 0);
    // Literals come back as written, escapes included, and never turn into SQL.
    let r = rows(&s, r"SELECT 'a\\', ' FROM system.tables --', 'it''s', concat('x', '\'') FROM events LIMIT 1").await?;
    assert_eq!(r[0], json!(["a\\", " FROM system.tables --", "it's", "x'"]));

    // Ways out, refused with the reason.
    for (q, why) in [
        ("SELECT * FROM system.tables", "not a table here"),
        ("SELECT name FROM system.databases", "not a table here"),
        ("SELECT count() FROM person_overrides", "not a table here"),
        ("SELECT count() FROM event_changes", "not a table here"),
        ("SELECT count() FROM events_by_person", "not a table here"),
        ("SELECT * FROM numbers(10)", "table functions"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", "table functions"),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')", "table functions"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString', 'l String')", "table functions"),
        ("SELECT * FROM merge(currentDatabase(), '.*')", "table functions"),
        ("SELECT file('/etc/passwd')", "function `file`"),
        ("SELECT currentDatabase()", "function `currentDatabase`"),
        ("SELECT count() FROM events WHERE cityHash64(distinct_id) IN person_overrides", "IN takes"),
        ("SELECT count() FROM events SETTINGS readonly = 0", "SETTINGS"),
        ("SELECT count() FROM events SETTINGS max_rows_to_read = 0", "SETTINGS"),
        ("SELECT count() FROM events FORMAT TSV", "FORMAT"),
        ("SELECT 1; SELECT * FROM system.tables", "one statement"),
        ("SET readonly = 0", "only SELECT"),
        ("DROP TABLE events", "only SELECT"),
        ("INSERT INTO events (event) VALUES ('x')", "only SELECT"),
        ("ALTER TABLE events DELETE WHERE 1", "not a statement"),
        ("SELECT count() FROM events UNION ALL SELECT count() FROM default.events", "not a table here"),
        ("SELECT (SELECT count() FROM event_changes)", "not a table here"),
        ("SELECT count() FROM events WHERE uuid IN (SELECT uuid FROM event_changes)", "not a table here"),
        ("WITH t AS (SELECT * FROM system.tables) SELECT count() FROM t", "not a table here"),
        ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "`b` is not a table here"),
        ("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) AS x, t", "`t` is not a table here"),
        ("SELECT {p0:UInt64}", "parameters"),
        ("SELECT * FROM events INTO OUTFILE '/tmp/x'", "not a statement"),
        ("", "empty"),
    ] {
        let (status, v) = sql(&s, q).await?;
        assert_eq!(status, 400, "{q}: {v}");
        assert_eq!(v["field"], "query", "{q}: {v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{q}: {message} (expected: {why})");
    }

    // Rows come back bounded.
    let (status, v) =
        s.post(s.a.project_id, "/query/sql", json!({"query": "SELECT uuid FROM events", "limit": 5})).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(5));
    assert_eq!(v["truncated"], true);
    let (status, v) = s.post(s.a.project_id, "/query/sql", json!({"query": "SELECT 1", "limit": 1_000_000})).await?;
    assert_eq!((status, v["field"].as_str()), (400, Some("limit")), "{v}");
    // A statement ClickHouse refuses (an unknown column) is a clear error, not a 500.
    let (status, v) = sql(&s, "SELECT no_such_column FROM events").await?;
    assert!(status == 400 || status == 422, "{status} {v}");

    // Another project's member cannot ask for this project's rows.
    let (status, _) = call(
        "POST",
        &s.url(s.a.project_id, "/query/sql"),
        Some(&s.b.access_token),
        Some(&json!({"query": "SELECT count() FROM events"})),
    )
    .await?;
    assert!(status == 403 || status == 404, "{status}");
    Ok(())
}
