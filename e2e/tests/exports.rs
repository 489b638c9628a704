//! Taking data out against the real services: the events explorer's events streamed as CSV and
//! JSON lines (every event the filters select, this project's only, bounded), and a saved
//! insight's result as CSV and JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Result};
use cairn_e2e::Service;
use serde_json::{json, Value};

mod query_support;
use query_support::*;

/// A small RFC 4180 reader (quoted fields, doubled quotes, CRLF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

async fn download(url: &str, token: &str) -> Result<(u16, reqwest::header::HeaderMap, String)> {
    let r = reqwest::Client::new().get(url).bearer_auth(token).timeout(Duration::from_secs(60)).send().await?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Ok((status, headers, r.text().await?))
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

#[tokio::test]
async fn events_and_insights_export_as_files() -> Result<()> {
    let s = setup(&[]).await?;
    let p = s.a.project_id;
    let mut r = Lcg(9);
    let mut events = Vec::new();
    for i in 0..300 {
        let event = ["pageview", "signup", "=HYPERLINK(\"http://evil\")"][r.next(3) as usize];
        let plan = ["free", "pro"][r.next(2) as usize];
        events.push(Ev {
            project: p,
            event: event.into(),
            distinct_id: if i % 50 == 0 { "+33 6 12".into() } else { format!("user{}", r.next(40)) },
            props: json!({"plan": plan, "note": "a, \"quoted\"\nline", "n": i}),
            ts: s.base + r.next(7) as i64 * DAY + r.next(86_400) as i64 * 1000,
        });
        events.push(Ev {
            project: s.b.project_id,
            event: "pageview".into(),
            distinct_id: "other".into(),
            props: json!({"n": i}),
            ts: s.base + DAY,
        });
    }
    s.insert(&events).await?;
    let mine: Vec<&Ev> = events.iter().filter(|e| e.project == p).collect();
    let range = format!("date_from={}&date_to={}", day_text(s.base), day_text(s.base + 7 * DAY));

    // CSV: every event of the project in the range, newest first, formulas made inert.
    let (status, h, text) =
        download(&s.url(p, &format!("/exports/events?format=csv&{range}")), &s.a.access_token).await?;
    assert_eq!(status, 200, "{text}");
    assert!(header(&h, "content-type").starts_with("text/csv"));
    assert!(header(&h, "content-disposition").starts_with("attachment; filename=\"events-"));
    assert_eq!(header(&h, "x-cairn-export-rows"), mine.len().to_string());
    assert_eq!(header(&h, "x-cairn-export-truncated"), "false");
    let rows = parse_csv(&text);
    assert_eq!(rows[0], vec!["uuid", "event", "distinct_id", "timestamp", "properties"]);
    assert_eq!(rows.len() - 1, mine.len());
    let ns: BTreeSet<i64> = rows[1..]
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r[4]).ok().and_then(|v| v["n"].as_i64()).unwrap_or(-1))
        .collect();
    let want: BTreeSet<i64> = mine.iter().filter_map(|e| e.props["n"].as_i64()).collect();
    assert_eq!(ns, want, "the project's events, each once");
    let formula = rows.iter().find(|r| r[1].contains("HYPERLINK")).map(|r| r[1].clone()).unwrap_or_default();
    assert_eq!(formula, "'=HYPERLINK(\"http://evil\")");
    assert!(rows.iter().any(|r| r[2] == "'+33 6 12"), "a distinct id starting with + is made inert");
    let note = serde_json::from_str::<Value>(&rows[1][4])?;
    assert_eq!(note["note"], "a, \"quoted\"\nline");
    let times: Vec<&String> = rows[1..].iter().map(|r| &r[3]).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(times[0].ends_with('Z') && times[0].len() == 24, "{}", times[0]);

    // JSON lines, with the list's filters.
    let filters = urlencode(&json!([{"key": "plan", "value": "pro"}]).to_string());
    let (status, h, text) = download(
        &s.url(p, &format!("/exports/events?format=json&event=signup&properties={filters}&{range}")),
        &s.a.access_token,
    )
    .await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header(&h, "content-type"), "application/x-ndjson");
    let got: BTreeSet<i64> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            serde_json::from_str::<Value>(v["properties"].as_str().unwrap_or("{}"))
                .ok()
                .and_then(|p| p["n"].as_i64())
                .unwrap_or(-1)
        })
        .collect();
    let want: BTreeSet<i64> = mine
        .iter()
        .filter(|e| e.event == "signup" && e.props["plan"] == "pro")
        .filter_map(|e| e.props["n"].as_i64())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // Refusals: a bad format, a cursor, another project.
    let (status, _, _) = download(&s.url(p, "/exports/events?format=xlsx"), &s.a.access_token).await?;
    assert_eq!(status, 400);
    let (status, _, _) = download(&s.url(p, "/exports/events?cursor=abc"), &s.a.access_token).await?;
    assert_eq!(status, 400);
    let (status, _, _) = download(&s.url(p, "/exports/events"), &s.b.access_token).await?;
    assert!(status == 403 || status == 404, "{status}");

    // Bounded: a service allowed 25 rows cuts there and says so.
    let mut env = s.env.clone();
    env.insert("CAIRN_QUERY_EXPORT_MAX_ROWS".into(), "25".into());
    let small = Service::start("query", &env).await?;
    small.wait_ready(Duration::from_secs(60)).await?;
    let url = small.url(&format!("/api/v1/projects/{p}/exports/events?format=csv&{range}"));
    let (status, h, text) = download(&url, &s.a.access_token).await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        (header(&h, "x-cairn-export-rows").as_str(), header(&h, "x-cairn-export-truncated").as_str()),
        ("25", "true")
    );
    assert_eq!(parse_csv(&text).len(), 26);

    // A saved insight's result as CSV and as JSON.
    let query = json!({"kind": "trends", "series": [{"event": "pageview"}], "date_from": day_text(s.base), "date_to": day_text(s.base + 6 * DAY), "breakdown": {"property": "plan"}});
    let (status, insight) = s.post(p, "/insights", json!({"name": "by plan", "query": query})).await?;
    assert_eq!(status, 201, "{insight}");
    let id = insight["id"].as_i64().unwrap_or_default();
    let (status, h, text) =
        download(&s.url(p, &format!("/insights/{id}/export?format=csv")), &s.a.access_token).await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header(&h, "content-disposition"), format!("attachment; filename=\"insight-{id}-trends.csv\""));
    let rows = parse_csv(&text);
    assert_eq!(rows[0][..5], ["series", "name", "math", "breakdown_value", "total"]);
    assert_eq!(rows[0].len(), 5 + 7, "a column per day");
    let mut by_plan: BTreeMap<String, u64> = BTreeMap::new();
    for e in mine.iter().filter(|e| e.event == "pageview" && e.ts < s.base + 7 * DAY) {
        *by_plan.entry(e.props["plan"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    let got: BTreeMap<String, u64> =
        rows[1..].iter().map(|r| (r[3].clone(), r[4].parse::<f64>().unwrap_or(-1.0) as u64)).collect();
    assert_eq!(got, by_plan);
    let (status, _, json_text) =
        download(&s.url(p, &format!("/insights/{id}/export?format=json")), &s.a.access_token).await?;
    assert_eq!(status, 200);
    let (_, result) =
        cairn_e2e::call("GET", &s.url(p, &format!("/insights/{id}/result")), Some(&s.a.access_token), None).await?;
    let exported: Value = serde_json::from_str(&json_text)?;
    if exported["results"] != result["results"] {
        bail!("the JSON export differs from /result:\n{exported}\n{result}");
    }
    Ok(())
}

/// A dashboard's tiles (saved insights' results) are computed once per cache period: ten tiles
/// opened twice cost ten computations; `refresh=true` computes again; another member opening the
/// same dashboard is answered from the same results.
#[tokio::test]
async fn a_dashboard_opened_twice_computes_each_tile_once() -> Result<()> {
    let s = setup(&[]).await?;
    let p = s.a.project_id;
    let mut events = Vec::new();
    for i in 0..200 {
        events.push(Ev {
            project: p,
            event: format!("e{}", i % 10),
            distinct_id: format!("u{}", i % 17),
            props: json!({}),
            ts: s.base + (i % 6) * DAY + i * 1000,
        });
    }
    s.insert(&events).await?;
    let mut ids = Vec::new();
    for i in 0..10 {
        let query = json!({"kind": "trends", "series": [{"event": format!("e{i}")}], "date_from": day_text(s.base), "date_to": day_text(s.base + 6 * DAY)});
        let (status, insight) = s.post(p, "/insights", json!({"name": format!("tile {i}"), "query": query})).await?;
        assert_eq!(status, 201, "{insight}");
        ids.push(insight["id"].as_i64().unwrap_or_default());
    }
    let open = |refresh: bool| {
        let ids = ids.clone();
        let s = &s;
        async move {
            let mut out = Vec::new();
            for id in ids {
                let q = if refresh { "?refresh=true" } else { "" };
                let (status, h, body) =
                    download(&s.url(p, &format!("/insights/{id}/result{q}")), &s.a.access_token).await?;
                if status != 200 {
                    bail!("tile {id}: {status} {body}");
                }
                let v: Value = serde_json::from_str(&body)?;
                out.push((header(&h, "x-cairn-cached"), v["results"][0]["aggregated_value"].clone()));
            }
            Ok::<_, anyhow::Error>(out)
        }
    };
    let first = open(false).await?;
    assert!(first.iter().all(|(cached, _)| cached == "false"), "{first:?}");
    assert!(first.iter().all(|(_, v)| *v == json!(20.0)), "{first:?}");
    let second = open(false).await?;
    assert!(second.iter().all(|(cached, _)| cached == "true"), "the second opening computes nothing: {second:?}");
    assert_eq!(first.iter().map(|x| &x.1).collect::<Vec<_>>(), second.iter().map(|x| &x.1).collect::<Vec<_>>());
    let refreshed = open(true).await?;
    assert!(refreshed.iter().all(|(cached, _)| cached == "false"), "{refreshed:?}");
    Ok(())
}
