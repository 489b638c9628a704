//! Materialised property columns against the real ClickHouse engine: two databases hold the same
//! events (one with `browser` and `$pathname` made columns — some rows inserted before the column
//! existed, some after, one event changed after capture), and a query service on each answers
//! every analysis that reads those properties identically.

use std::time::Duration;

use anyhow::{bail, Result};
use cairn_e2e::{call, unique, Service, TestClickHouse};
use serde_json::{json, Value};

mod query_support;
use query_support::*;

fn fixtures(project: i64, base: i64, seed: u64) -> Vec<Ev> {
    let mut r = Lcg(seed);
    let mut out = Vec::new();
    for u in 0..60 {
        let mut ts = base + r.next(5) as i64 * DAY + r.next(40_000) as i64 * 1000;
        for _ in 0..(1 + r.next(8)) {
            let event = ["pageview", "view_item", "purchase"][r.next(3) as usize];
            let path = ["/", "/a", "/b"][r.next(3) as usize];
            let mut props = json!({"$pathname": path, "$session_id": format!("s{u}")});
            match r.next(5) {
                0 => {}                              // missing
                1 => props["browser"] = Value::Null, // JSON null
                2 => props["browser"] = json!(42),   // a number
                _ => {
                    let browser = ["Chrome", "Firefox", "Safari"][r.next(3) as usize];
                    props["browser"] = json!(browser);
                }
            }
            let event = if event == "pageview" { "$pageview" } else { event };
            out.push(Ev { project, event: event.into(), distinct_id: format!("u{u}"), props, ts });
            ts += 1000 + r.next(900) as i64 * 1000;
        }
    }
    out
}

fn rows_json(events: &[Ev]) -> Vec<Value> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "uuid": format!("00000000-0000-4000-8000-{:012}", i),
                "project_id": e.project,
                "event": e.event,
                "distinct_id": e.distinct_id,
                "properties": e.props.to_string(),
                "timestamp": ch_time(e.ts),
                "received_at": ch_time(e.ts),
            })
        })
        .collect()
}

#[tokio::test]
async fn analyses_answer_the_same_with_property_columns() -> Result<()> {
    let s = setup(&[]).await?;
    let p = s.a.project_id;
    let events = fixtures(p, s.base, 3);
    let rows = rows_json(&events);
    let (first, second) = rows.split_at(rows.len() / 2);

    // Database 2: the same rows, half inserted before the columns exist, half after.
    let clickhouse = TestClickHouse::shared()?;
    let db2 = unique("query_cols");
    let cfg2 = clickhouse.config(&db2);
    cairn_common::clickhouse::migrate(&cfg2).await?;
    let ch2 = clickhouse.db(&db2);
    ch2.insert_json("events", first).await?;
    let client2 = cairn_common::clickhouse::client(&cfg2);
    let keys = vec!["browser".to_string(), "$pathname".to_string(), "it's".to_string()];
    let report =
        cairn_common::clickhouse::ensure_property_columns(&client2, &cairn_common::clickhouse::Topology::Single, &keys)
            .await?;
    assert_eq!(report.added, vec!["browser", "$pathname"]);
    assert_eq!(report.refused, vec!["it's"]);
    let again =
        cairn_common::clickhouse::ensure_property_columns(&client2, &cairn_common::clickhouse::Topology::Single, &keys)
            .await?;
    assert_eq!((again.added.len(), again.present.len()), (0, 2), "adding again is a no-op");
    ch2.insert_json("events", second).await?;
    // Database 1 (the setup's): the same rows, no columns.
    s.ch.insert_json("events", &rows).await?;
    // One event changed after capture, in both: its browser is now "Edge".
    let change = json!({
        "project_id": p, "uuid": "00000000-0000-4000-8000-000000000003", "version": 1, "deleted": 0,
        "event": events[3].event, "distinct_id": events[3].distinct_id,
        "properties": json!({"browser": "Edge", "$pathname": "/changed"}).to_string(),
        "timestamp": ch_time(events[3].ts), "received_at": ch_time(events[3].ts), "changed_at": ch_time(events[3].ts),
        "change_id": "00000000-0000-4000-8000-999999999999", "retain_until": ch_time(events[3].ts + 400 * DAY),
    });
    s.ch.insert_json("event_changes", std::slice::from_ref(&change)).await?;
    ch2.insert_json("event_changes", std::slice::from_ref(&change)).await?;

    let columns = cairn_common::clickhouse::property_columns(&client2).await?;
    assert_eq!(columns.len(), 2, "{columns:?}");

    let mut env = s.env.clone();
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), db2.clone());
    let with_columns = Service::start("query", &env).await?;
    with_columns.wait_ready(Duration::from_secs(60)).await?;

    let range = json!({"date_from": day_text(s.base), "date_to": day_text(s.base + 6 * DAY)});
    let with = |mut body: Value| {
        for (k, v) in range.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        ("trends", with(json!({"series": [{"event": "$pageview"}], "breakdown": {"property": "browser"}}))),
        (
            "trends",
            with(json!({"series": [{"event": "$pageview"}], "filters": [{"key": "browser", "value": "Chrome"}]})),
        ),
        (
            "trends",
            with(json!({"series": [{"event": null}], "filters": [{"key": "browser", "operator": "is_not_set"}]})),
        ),
        ("trends", with(json!({"series": [{"event": null, "math": "sum", "math_property": "browser"}]}))),
        (
            "funnels",
            with(
                json!({"steps": [{"event": "$pageview"}, {"event": "purchase"}], "breakdown": {"property": "browser"}}),
            ),
        ),
        ("sessions", with(json!({"breakdown": "browser"}))),
        ("paths", with(json!({"path_type": "pathname", "max_links": 500}))),
        (
            "stickiness",
            with(json!({"series": [{"event": "$pageview", "filters": [{"key": "$pathname", "value": "/a"}]}]})),
        ),
    ];
    for (kind, body) in cases {
        let (st1, a) = s.post(p, &format!("/query/{kind}"), body.clone()).await?;
        let url = with_columns.url(&format!("/api/v1/projects/{p}/query/{kind}"));
        let (st2, b) = call("POST", &url, Some(&s.a.access_token), Some(&body)).await?;
        if st1 != 200 || st2 != 200 {
            bail!("{kind} {body}: {st1} {a} / {st2} {b}");
        }
        assert_eq!(a, b, "{kind} {body}: without and with property columns");
    }
    // The changed event counts with its new browser (read from its change, not the column).
    let (_, v) = call(
        "POST",
        &with_columns.url(&format!("/api/v1/projects/{p}/query/trends")),
        Some(&s.a.access_token),
        Some(&with(json!({"series": [{"event": null}], "filters": [{"key": "browser", "value": "Edge"}]}))),
    )
    .await?;
    assert_eq!(v["results"][0]["aggregated_value"], json!(1.0), "{v}");

    // The backfill ends; the answers stay the same.
    for _ in 0..100 {
        if cairn_common::clickhouse::property_backfills_running(&client2, &cairn_common::clickhouse::Topology::Single)
            .await?
            == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = with(json!({"series": [{"event": "$pageview"}], "breakdown": {"property": "browser"}}));
    let (_, a) = s.post(p, "/query/trends", body.clone()).await?;
    let (_, b) = call(
        "POST",
        &with_columns.url(&format!("/api/v1/projects/{p}/query/trends")),
        Some(&s.a.access_token),
        Some(&body),
    )
    .await?;
    assert_eq!(a, b);
    Ok(())
}

/// The query service names, in each statement's `log_comment`, the event properties it parses
/// out of the JSON; ClickHouse's query log then tells which are used most (what the operator
/// chooses columns by: `cairn_common::clickhouse::property_usage`). Properties that are columns,
/// and keys that could never be one, are not named.
#[tokio::test]
async fn the_query_log_says_which_properties_statements_parse() -> Result<()> {
    let s = setup(&[]).await?;
    let p = s.a.project_id;
    s.insert(&fixtures(p, s.base, 5)).await?;
    let range = (day_text(s.base), day_text(s.base + 6 * DAY));
    let trend = |extra: Value| {
        let mut body = json!({"series": [{"event": "$pageview"}], "date_from": range.0, "date_to": range.1});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        body
    };
    // Three different queries (an answer kept in a cache runs no statement).
    for limit in 3..6 {
        s.ok("/query/trends", trend(json!({"breakdown": {"property": "browser", "limit": limit}}))).await?;
    }
    s.ok("/query/trends", trend(json!({"filters": [{"key": "$pathname", "value": "/a"}]}))).await?;
    s.ok("/query/trends", trend(json!({"filters": [{"key": "it's", "operator": "is_set"}]}))).await?;
    // A job's statements say both their job and their properties (its progress reads the job).
    let job_query = trend(json!({"breakdown": {"property": "browser", "limit": 2}}));
    let (status, job) = s.post(p, "/query-jobs", json!({"kind": "trends", "query": job_query})).await?;
    assert!(status == 200 || status == 202, "{status} {job}");
    let id = job["id"].as_str().unwrap_or_default().to_string();
    cairn_e2e::wait_until("the job", Duration::from_secs(30), || async {
        let got = call("GET", &s.url(p, &format!("/query-jobs/{id}")), Some(&s.a.access_token), None).await;
        matches!(&got, Ok((_, j)) if j["status"] == "done")
    })
    .await?;
    s.ch.rows("SYSTEM FLUSH LOGS").await?;

    let database = s.env.get("CAIRN_CLICKHOUSE_DATABASE").cloned().unwrap_or_default();
    let client = cairn_common::clickhouse::client(&TestClickHouse::shared()?.config(&database));
    let usage =
        cairn_common::clickhouse::property_usage(&client, &cairn_common::clickhouse::Topology::Single, 1, 1, 10)
            .await?;
    let queries = |key: &str| usage.iter().find(|u| u.key == key).map_or(0, |u| u.queries);
    assert!(queries("browser") >= 3, "{usage:?}");
    assert!(queries("$pathname") >= 1, "{usage:?}");
    assert_eq!(queries("it's"), 0, "a key that cannot be a column is not counted: {usage:?}");
    assert!(usage.iter().all(|u| u.duration_ms < 600_000), "{usage:?}");
    // At least three: `$pathname` (parsed once) is left out.
    let often =
        cairn_common::clickhouse::property_usage(&client, &cairn_common::clickhouse::Topology::Single, 1, 3, 10)
            .await?;
    assert!(often.iter().any(|u| u.key == "browser") && often.iter().all(|u| u.key != "$pathname"), "{often:?}");
    // The job's statements carry its id next to the properties.
    let logged =
        s.ch.rows(&format!(
            "SELECT log_comment FROM system.query_log WHERE type = 'QueryFinish' AND has(databases, currentDatabase()) \
             AND JSONExtractString(log_comment, 'job') = 'cairn-job:{id}' LIMIT 1"
        ))
        .await?;
    let comment: Value = serde_json::from_str(logged.first().and_then(|r| r["log_comment"].as_str()).unwrap_or("{}"))?;
    assert_eq!(comment["properties"], json!(["browser"]), "{comment}");

    // Made a column, a property is no longer parsed (the service reads the columns every 30 s).
    cairn_common::clickhouse::ensure_property_columns(
        &client,
        &cairn_common::clickhouse::Topology::Single,
        &["browser".to_string()],
    )
    .await?;
    let round = std::sync::atomic::AtomicUsize::new(10);
    cairn_e2e::wait_until("statements that no longer parse `browser`", Duration::from_secs(60), || async {
        // A new query each round (1 to 50 values), every 2 seconds.
        let limit = 1 + round.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 50;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(before) = s.ch.rows("SELECT toString(now64(6)) AS t").await else { return false };
        let t = before.first().and_then(|r| r["t"].as_str()).unwrap_or_default().to_string();
        if let Err(e) =
            s.ok("/query/trends", trend(json!({"breakdown": {"property": "browser", "limit": limit}}))).await
        {
            eprintln!("the trend failed: {e:#}");
            return false;
        }
        if let Err(e) = s.ch.rows("SYSTEM FLUSH LOGS").await {
            eprintln!("flushing the logs failed: {e:#}");
            return false;
        }
        let Ok(n) =
            s.ch.scalar(&format!(
                "SELECT count() FROM system.query_log WHERE type = 'QueryFinish' AND query_kind = 'Select' \
                 AND has(databases, currentDatabase()) AND event_time_microseconds >= toDateTime64('{t}', 6) \
                 AND position(log_comment, 'browser') > 0"
            ))
            .await
        else {
            return false;
        };
        n == 0
    })
    .await?;
    Ok(())
}
