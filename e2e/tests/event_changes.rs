//! Events as records that can change, on the real services: `PUT` and `DELETE
//! /api/v1/projects/{id}/events/{uuid}` go through query → Kafka → consumer → ClickHouse as
//! versioned appends; every answer (GET, analyses, funnels, lists, a session's events) sees the
//! latest version and no deleted event; a consumer reading the topic again applies nothing twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{anyhow, Result};
use cairn_e2e::{call, sign_up, unique, wait_until, Pipeline, Service, TestClickHouse, TestKafka, TestPostgres};
use serde_json::{json, Value};
use uuid::Uuid;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())
        .unwrap_or_default()
}

fn day_text(ms: i64) -> String {
    iso(ms)[..10].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletions_reach_every_answer_in_order_and_once() -> Result<()> {
    let kafka = TestKafka::shared()?;
    let ch = TestClickHouse::shared()?;
    let pg = TestPostgres::shared()?;
    let url = pg.fresh_database("event_changes").await?;
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), url.clone());
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "changes-internal-token".into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    let account = sign_up(&auth, &format!("{}@changes.example", unique("chg"))).await?;
    let project = account.project_id;
    let p = Pipeline::new(&kafka, &ch, &format!("phc_chg={project}"));
    let consumer = p.consumer().await?;
    let capture = p.capture().await?;
    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), ch.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), p.database.clone());
    env.insert("CAIRN_KAFKA_BROKERS".into(), kafka.brokers());
    env.insert("CAIRN_KAFKA_TOPIC".into(), p.topic.clone());
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;
    let db = ch.db(&p.database);

    // 10 pageviews (5 people, 3 sessions) on day 0 and 5 purchases on day 1.
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let base = now.div_euclid(DAY) * DAY - 5 * DAY;
    let mut sent: Vec<(Uuid, Value)> = Vec::new();
    for i in 0..15i64 {
        let uuid = Uuid::now_v7();
        let body = if i < 10 {
            json!({"event": "pageview", "distinct_id": format!("u{}", i % 5), "uuid": uuid, "timestamp": iso(base + i * HOUR),
                   "properties": {"$session_id": format!("s{}", i % 3)}})
        } else {
            json!({"event": "purchase", "distinct_id": format!("u{}", i % 5), "uuid": uuid, "timestamp": iso(base + DAY + i * HOUR),
                   "properties": {"amount": 10 * (i - 9), "coupon": "X"}})
        };
        sent.push((uuid, body));
    }
    let r = reqwest::Client::new()
        .post(capture.url("/batch"))
        .json(&json!({"api_key": "phc_chg", "batch": sent.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>()}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "capture answered {}", r.status());
    wait_until("the 15 events stored", Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            db.scalar(&format!("SELECT count() FROM events FINAL WHERE project_id = {project}")).await.unwrap_or(0)
                == 15
        }
    })
    .await?;

    let token = account.access_token.clone();
    let events_url = |uuid: &Uuid| query.url(&format!("/api/v1/projects/{project}/events/{uuid}"));
    let id = |i: usize| sent[i].0;

    // Who may: a key with query:read only may read but not change; one with events:write may.
    let key_with = |scopes: Value| {
        let (auth, token) = (&auth, token.clone());
        async move {
            let (status, key) = call(
                "POST",
                &auth.url("/api/v1/personal-keys"),
                Some(&token),
                Some(&json!({"name": unique("key"), "scopes": scopes})),
            )
            .await?;
            anyhow::ensure!(status == 201, "{status} {key}");
            Ok::<String, anyhow::Error>(key["key"].as_str().unwrap_or_default().to_string())
        }
    };
    let reader = key_with(json!(["query:read"])).await?;
    let writer = key_with(json!(["events:write"])).await?;
    let (status, got) = call("GET", &events_url(&id(10)), Some(&reader), None).await?;
    assert_eq!(status, 200, "{got}");
    assert_eq!((got["event"].as_str(), got["version"].as_u64()), (Some("purchase"), Some(0)), "{got}");
    assert_eq!(got["properties"]["amount"], 10);
    let (status, body) = call("PUT", &events_url(&id(10)), Some(&reader), Some(&json!({"event": "refund"}))).await?;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call("DELETE", &events_url(&id(10)), Some(&reader), None).await?;
    assert_eq!(status, 403, "{body}");

    // Bad requests name the field; unknown events are 404.
    let (status, body) =
        call("PUT", &events_url(&id(10)), Some(&token), Some(&json!({"distinct_id": "someone-else"}))).await?;
    assert_eq!((status, body["field"].as_str()), (400, Some("distinct_id")), "{body}");
    let (status, body) = call("PUT", &events_url(&id(10)), Some(&token), Some(&json!({}))).await?;
    assert_eq!((status, body["field"].as_str()), (400, Some("body")), "{body}");
    let (status, body) = call(
        "PUT",
        &query.url(&format!("/api/v1/projects/{project}/events/not-a-uuid")),
        Some(&token),
        Some(&json!({"event": "x"})),
    )
    .await?;
    assert_eq!((status, body["field"].as_str()), (400, Some("event_id")), "{body}");
    let (status, _) = call("DELETE", &events_url(&Uuid::now_v7()), Some(&token), None).await?;
    assert_eq!(status, 404);

    // A query job's result is reused until the events change.
    let jobs_url = query.url(&format!("/api/v1/projects/{project}/query-jobs"));
    let purchases = json!({"kind": "trends", "query": {"series": [{"event": "purchase"}], "date_from": "-30d"}});
    let (status, first) = call("POST", &jobs_url, Some(&token), Some(&purchases)).await?;
    assert_eq!(status, 202, "{first}");
    wait_until("the purchases job done", Duration::from_secs(30), || {
        let (url, token) = (format!("{jobs_url}/{}", first["id"].as_str().unwrap_or("")), token.clone());
        async move { call("GET", &url, Some(&token), None).await.map(|(_, j)| j["status"] == "done").unwrap_or(false) }
    })
    .await?;
    let (status, cached) = call("POST", &jobs_url, Some(&token), Some(&purchases)).await?;
    assert_eq!((status, &cached["cached"], &cached["id"]), (200, &json!(true), &first["id"]), "{cached}");

    // The changes. Each is 202 once Kafka has it.
    let put = |i: usize, body: Value, bearer: String| {
        let url = events_url(&id(i));
        async move { call("PUT", &url, Some(&bearer), Some(&body)).await }
    };
    let del = |i: usize| {
        let (url, token) = (events_url(&id(i)), token.clone());
        async move { call("DELETE", &url, Some(&token), None).await }
    };
    // A purchase renamed (a field of events' sorting key), one property set and one removed.
    let (status, body) =
        put(10, json!({"event": "refund", "properties": {"amount": 0, "coupon": null}}), writer.clone()).await?;
    assert_eq!(
        (status, body["op"].as_str(), body["status"].as_str()),
        (202, Some("update"), Some("accepted")),
        "{body}"
    );
    // The change ends the reuse: the same request is computed again.
    let (status, after) = call("POST", &jobs_url, Some(&token), Some(&purchases)).await?;
    assert_eq!((status, &after["cached"]), (202, &json!(false)), "{after}");
    assert_ne!(after["id"], first["id"]);
    // A pageview moved two days later.
    let moved_to = base + 2 * DAY + HOUR;
    assert_eq!(put(1, json!({"timestamp": iso(moved_to)}), token.clone()).await?.0, 202);
    // Deleted.
    assert_eq!(del(2).await?.0, 202);
    // Updated then deleted at once: the deletion, applied after, wins.
    assert_eq!(put(3, json!({"properties": {"x": 1}}), token.clone()).await?.0, 202);
    assert_eq!(del(3).await?.0, 202);
    // Deleted then updated: the update is dropped (refused already, or dropped by the consumer).
    assert_eq!(del(4).await?.0, 202);
    let late = put(4, json!({"properties": {"x": 2}}), token.clone()).await?.0;
    assert!(late == 202 || late == 404, "{late}");
    // Three updates in a row: the last one stays.
    for n in 1..=3 {
        assert_eq!(put(11, json!({"properties": {"n": n}}), token.clone()).await?.0, 202);
    }

    wait_until("every change stored", Duration::from_secs(60), || {
        let (a, f, c) = (events_url(&id(10)), events_url(&id(11)), events_url(&id(4)));
        let token = token.clone();
        async move {
            let v = |u: String| {
                let token = token.clone();
                async move { call("GET", &u, Some(&token), None).await.ok() }
            };
            matches!(v(a).await, Some((200, b)) if b["version"] == 1)
                && matches!(v(f).await, Some((200, b)) if b["version"] == 3)
                && matches!(v(c).await, Some((404, _)))
        }
    })
    .await
    .map_err(|e| anyhow!("{e}\n{}", consumer.log_tail()))?;

    let get = |i: usize| {
        let (url, token) = (events_url(&id(i)), token.clone());
        async move { call("GET", &url, Some(&token), None).await }
    };
    let (_, a) = get(10).await?;
    assert_eq!(a["event"], "refund");
    assert_eq!(a["properties"]["amount"], 0);
    assert!(a["properties"].get("coupon").is_none(), "{a}");
    assert_eq!(a["distinct_id"], "u0");
    assert!(a["changed_at"].is_string(), "{a}");
    let (_, f) = get(11).await?;
    assert_eq!((f["properties"]["n"].as_i64(), f["properties"]["amount"].as_i64()), (Some(3), Some(20)), "{f}");
    let (_, b) = get(1).await?;
    assert_eq!(b["timestamp"].as_str(), Some(iso(moved_to).as_str()), "{b}");
    for gone in [2, 3, 4] {
        assert_eq!(get(gone).await?.0, 404, "event {gone} is deleted");
    }

    // The versions in ClickHouse: appended, never rewritten.
    let versions = || {
        let db = db.clone();
        async move {
            let rows = db
                .rows(&format!(
                    "SELECT toString(uuid) AS u, version AS v, deleted AS d FROM event_changes FINAL \
                     WHERE project_id = {project}"
                ))
                .await?;
            Ok::<BTreeMap<String, (u64, u64)>, anyhow::Error>(
                rows.iter()
                    .filter_map(|r| {
                        let num = |k: &str| r[k].as_u64().or_else(|| r[k].as_str()?.parse().ok());
                        Some((r["u"].as_str()?.to_string(), (num("v")?, num("d")?)))
                    })
                    .collect(),
            )
        }
    };
    let stored = versions().await?;
    let expect = |i: usize| stored.get(&id(i).to_string()).copied();
    assert_eq!(expect(10), Some((1, 0)));
    assert_eq!(expect(1), Some((1, 0)));
    assert_eq!(expect(2), Some((1, 1)));
    assert_eq!(expect(3), Some((2, 1)));
    assert_eq!(expect(4), Some((1, 1)), "the update after the deletion made no version");
    assert_eq!(expect(11), Some((3, 0)));
    assert_eq!(stored.len(), 6);
    assert_eq!(db.scalar("SELECT count() FROM events").await?, 15, "the captured rows are untouched");

    // Every analysis sees the events as they are now.
    let post = |path: &str, body: Value| {
        let (url, token) = (query.url(&format!("/api/v1/projects/{project}{path}")), token.clone());
        async move { call("POST", &url, Some(&token), Some(&body)).await.map(|(_, v)| v) }
    };
    let (from, to) = (day_text(base), day_text(base + 4 * DAY));
    let v = post(
        "/query/trends",
        json!({"series": [{"event": "pageview"}, {"event": "purchase"}, {"event": "refund"},
                          {"event": "purchase", "math": "sum", "math_property": "amount"}],
               "date_from": from, "date_to": to, "interval": "day", "timezone": "UTC"}),
    )
    .await?;
    let data = |s: usize| -> Vec<f64> {
        v["results"][s]["data"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
    };
    // Pageviews: 0, 5..9 on day 0; 1 moved to day 2; 2, 3, 4 deleted.
    assert_eq!(data(0), vec![6.0, 0.0, 1.0, 0.0, 0.0], "{v}");
    assert_eq!(v["results"][1]["total"].as_f64(), Some(4.0), "{v}");
    assert_eq!(v["results"][2]["total"].as_f64(), Some(1.0), "{v}");
    assert_eq!(v["results"][3]["total"].as_f64(), Some(20.0 + 30.0 + 40.0 + 50.0), "{v}");
    // Funnels (from events_by_person, or events while its backfill runs): u0 viewed, then refunded.
    let v = post(
        "/query/funnels",
        json!({"steps": [{"event": "pageview"}, {"event": "refund"}], "date_from": from, "date_to": to,
               "timezone": "UTC", "conversion_window": {"value": 7, "unit": "day"}}),
    )
    .await?;
    let counts: Vec<u64> =
        v["steps"].as_array().map(|s| s.iter().filter_map(|s| s["count"].as_u64()).collect()).unwrap_or_default();
    assert_eq!(counts, vec![5, 1], "{v}");
    // The events list and one session's events, in time order.
    let (_, list) = call(
        "GET",
        &query.url(&format!("/api/v1/projects/{project}/events?event=pageview&limit=100")),
        Some(&token),
        None,
    )
    .await?;
    assert_eq!(list["results"].as_array().map(Vec::len), Some(7), "{list}");
    let (status, session) =
        call("GET", &query.url(&format!("/api/v1/projects/{project}/sessions/s1/events")), Some(&token), None).await?;
    assert_eq!(status, 200, "{session}");
    let order: Vec<String> = session["results"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["uuid"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    // Session s1: events 1, 4, 7; 4 is deleted and 1 now comes last.
    assert_eq!(order, vec![id(7).to_string(), id(1).to_string()], "{session}");

    // A second consumer group reads the whole topic again, as after a crash before every commit:
    // the captures collapse, and every change is recognised as applied.
    let mut again =
        Pipeline { topic: p.topic.clone(), database: p.database.clone(), group: unique("group"), env: p.env.clone() };
    let group = again.group.clone();
    again.set("CAIRN_CONSUMER_GROUP", group);
    let replay = again.consumer().await?;
    // Nine changes were applied (the update after a deletion, if Kafka got it, was dropped).
    wait_until("the replay recognised every change", Duration::from_secs(60), || {
        let f = replay.metric("cairn_consumer_event_changes_total{outcome=\"already_applied\"}");
        async move { f.await.unwrap_or(0.0) >= 9.0 }
    })
    .await
    .map_err(|e| anyhow!("{e}\n{}", replay.log_tail()))?;
    assert_eq!(versions().await?, stored, "nothing applied twice");
    assert_eq!(replay.metric("cairn_consumer_event_changes_total{outcome=\"already_applied\"}").await?, 9.0);
    assert_eq!(replay.metric("cairn_consumer_event_changes_total{outcome=\"applied\"}").await?, 0.0);
    Ok(())
}
