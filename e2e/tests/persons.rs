//! Persons on the real services: identity events sent through capture are decided by the
//! consumer's persons pipeline in PostgreSQL, and the ids they move reach ClickHouse's
//! `person_overrides`; a redelivered event is not decided twice; with ClickHouse down, decisions
//! wait in the outbox and arrive when it returns.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use cairn_e2e::{wait_until, ChQuery, Pipeline, Service, TestClickHouse, TestKafka, TestPostgres};
use cairn_persons::id_hash;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// An event as an SDK sends it, with its uuid (so that it can be sent again).
fn ev(event: &str, distinct_id: &str, properties: Value) -> Value {
    json!({"event": event, "distinct_id": distinct_id, "properties": properties, "uuid": Uuid::now_v7()})
}

async fn send(capture: &Service, key: &str, batch: &[Value]) -> Result<()> {
    let r = reqwest::Client::new()
        .post(capture.url("/batch"))
        .json(&json!({"api_key": key, "batch": batch}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "capture answered {}: {}", r.status(), r.text().await?);
    Ok(())
}

async fn decisions(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM identity_decisions").fetch_one(pool).await?)
}

/// Sends a step and waits until its identity events are decided (steps whose order matters are
/// sent one after the other: events of different ids travel on different partitions).
async fn step(capture: &Service, pool: &PgPool, key: &str, batch: &[Value]) -> Result<()> {
    let before = decisions(pool).await?;
    send(capture, key, batch).await?;
    let want = before
        + batch
            .iter()
            .filter(|e| {
                e["event"].as_str().is_some_and(|n| n.starts_with("$i") || n.starts_with("$c") || n.starts_with("$m"))
            })
            .count() as i64;
    wait_until("identity decisions", Duration::from_secs(60), || async move {
        decisions(pool).await.map(|n| n >= want).unwrap_or(false)
    })
    .await
}

/// Each id's person as ClickHouse resolves it: its override, or its own hash.
async fn ch_persons(db: &ChQuery, project: u64, ids: &[&str]) -> Result<BTreeMap<String, u64>> {
    let rows = db
        .rows(&format!(
            "SELECT toString(id_hash) AS h, toString(argMax(person_id, version)) AS p FROM person_overrides \
             WHERE project_id = {project} GROUP BY id_hash"
        ))
        .await?;
    let overrides: BTreeMap<u64, u64> = rows
        .iter()
        .map(|r| Ok((r["h"].as_str().unwrap_or("").parse()?, r["p"].as_str().unwrap_or("").parse()?)))
        .collect::<Result<_>>()?;
    Ok(ids.iter().map(|id| (id.to_string(), overrides.get(&id_hash(id)).copied().unwrap_or(id_hash(id)))).collect())
}

async fn pg_persons(pool: &PgPool, project: u64, ids: &[&str]) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for id in ids {
        out.insert(id.to_string(), cairn_persons::store::person_of(pool, project, id).await?);
    }
    Ok(out)
}

async fn setup_postgres() -> Result<(String, PgPool)> {
    let pg = TestPostgres::shared()?;
    let url = pg.fresh_database("persons").await?;
    let pool = PgPool::connect(&url).await?;
    cairn_postgres::migrate(&pool).await?;
    // Project 32 allows $merge_dangerously; project 31 is not in the table (the default policy).
    let org: i64 =
        sqlx::query_scalar("INSERT INTO organizations (name) VALUES ('o') RETURNING id").fetch_one(&pool).await?;
    sqlx::query("INSERT INTO projects (id, organization_id, name, allow_merge_dangerously) VALUES (32, $1, 'p', true)")
        .bind(org)
        .execute(&pool)
        .await?;
    Ok((url, pool))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_events_make_persons_once_and_reach_clickhouse() -> Result<()> {
    let kafka = TestKafka::shared()?;
    let ch = TestClickHouse::shared()?;
    let (url, pool) = setup_postgres().await?;
    let mut p = Pipeline::new(&kafka, &ch, "phc_p31=31,phc_p32=32");
    p.persons(&url);
    let mut consumer = p.consumer().await?;
    let capture = p.capture().await?;
    let db = ch.db(&p.database);

    let identify = |user: &str, anon: &str| ev("$identify", user, json!({"$anon_distinct_id": anon}));
    let alias = |id: &str, alias: &str| ev("$create_alias", id, json!({"alias": alias}));
    let mut sent = Vec::new();
    let mut go = |key: &'static str, batch: Vec<Value>| {
        sent.push((key, batch.clone()));
        (key, batch)
    };
    let steps = vec![
        // Anonymous browsing, then login: the anonymous id joins the user's person.
        go(
            "phc_p31",
            vec![
                ev("$pageview", "anon-a", json!({})),
                ev("$pageview", "anon-a", json!({})),
                identify("alice", "anon-a"),
            ],
        ),
        // An alias, then a second device of the same user.
        go("phc_p31", vec![alias("anon-b", "bob")]),
        go("phc_p31", vec![identify("bob", "anon-b2")]),
        // A shared device: the second user is not pulled into the first one's person.
        go("phc_p31", vec![identify("carol", "anon-s")]),
        go("phc_p31", vec![identify("dave", "anon-s")]),
        // Two identified persons are never merged by an event, $merge_dangerously included
        // where the project does not allow it.
        go("phc_p31", vec![alias("alice", "bob")]),
        go("phc_p31", vec![ev("$merge_dangerously", "alice", json!({"alias": "bob"}))]),
        // Two anonymous ids.
        go("phc_p31", vec![alias("anon-x", "anon-y")]),
        // Ids that are never merged.
        go("phc_p31", vec![identify("erin", "null"), identify("anonymous", "anon-z")]),
        // Project 32 allows $merge_dangerously.
        go("phc_p32", vec![identify("e1", "anon-e1"), identify("f1", "anon-f1")]),
        go("phc_p32", vec![ev("$merge_dangerously", "e1", json!({"alias": "f1"}))]),
    ];
    for (key, batch) in &steps {
        step(&capture, &pool, key, batch).await?;
    }
    let ids31 = [
        "alice", "anon-a", "bob", "anon-b", "anon-b2", "carol", "anon-s", "dave", "anon-x", "anon-y", "erin", "anon-z",
    ];
    let want31: BTreeMap<String, u64> = [
        ("alice", "alice"),
        ("anon-a", "alice"),
        ("bob", "anon-b"),
        ("anon-b", "anon-b"),
        ("anon-b2", "anon-b"),
        ("carol", "carol"),
        ("anon-s", "carol"),
        ("dave", "dave"),
        ("anon-x", "anon-x"),
        ("anon-y", "anon-x"),
        ("erin", "erin"),
        ("anon-z", "anon-z"),
    ]
    .into_iter()
    .map(|(id, person)| (id.to_string(), id_hash(person)))
    .collect();
    let ids32 = ["e1", "anon-e1", "f1", "anon-f1"];
    let want32: BTreeMap<String, u64> = ids32.iter().map(|id| (id.to_string(), id_hash("e1"))).collect();
    assert_eq!(pg_persons(&pool, 31, &ids31).await?, want31);
    assert_eq!(pg_persons(&pool, 32, &ids32).await?, want32);
    // ClickHouse resolves the same, once the outbox is copied.
    let (db2, want) = (db.clone(), (want31.clone(), want32.clone()));
    wait_until("the overrides in ClickHouse", Duration::from_secs(30), || {
        let (db, want) = (db2.clone(), want.clone());
        async move {
            let a = ch_persons(&db, 31, &ids31).await.ok();
            let b = ch_persons(&db, 32, &ids32).await.ok();
            a.as_ref() == Some(&want.0) && b.as_ref() == Some(&want.1)
        }
    })
    .await?;
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM person_overrides_outbox").fetch_one(&pool).await?;
    assert_eq!(outbox, 0);
    let by_decision: Vec<(String, i64)> =
        sqlx::query_as("SELECT decision, count(*) FROM identity_decisions GROUP BY decision ORDER BY decision")
            .fetch_all(&pool)
            .await?;
    let by_decision: BTreeMap<String, i64> = by_decision.into_iter().collect();
    assert_eq!(
        by_decision,
        [("illegal_id", 2), ("join", 7), ("merge", 1), ("refused", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
        "{by_decision:?}"
    );
    let decided = decisions(&pool).await?;

    // Every identity event delivered again (a producer retry, a replayed topic): nothing changes.
    consumer.terminate(Duration::from_secs(30))?;
    for (key, batch) in &sent {
        send(&capture, key, batch).await?;
    }
    let consumer = p.consumer().await?;
    wait_until("the replays counted", Duration::from_secs(60), || {
        let c = &consumer;
        async move { c.metric("cairn_persons_identity_events_total{decision=\"replayed\"}").await.unwrap_or(0.0) >= 13.0 }
    })
    .await
    .map_err(|e| anyhow!("{e}\n{}", consumer.log_tail()))?;
    assert_eq!(decisions(&pool).await?, decided);
    assert_eq!(pg_persons(&pool, 31, &ids31).await?, want31);
    assert_eq!(ch_persons(&db, 31, &ids31).await?, want31);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_wait_in_the_outbox_while_clickhouse_is_down() -> Result<()> {
    let kafka = TestKafka::shared()?;
    let ch = TestClickHouse::dedicated("persons")?;
    let (url, pool) = setup_postgres().await?;
    let mut p = Pipeline::new(&kafka, &ch, "phc_p31=31");
    p.persons(&url);
    let consumer = p.consumer().await?;
    let capture = p.capture().await?;
    let db = ch.db(&p.database);

    ch.kill()?;
    let batch: Vec<Value> = (0..20)
        .map(|i| ev("$identify", &format!("user-{i}"), json!({"$anon_distinct_id": format!("anon-{i}")})))
        .collect();
    send(&capture, "phc_p31", &batch).await?;
    // Decided in PostgreSQL although ClickHouse is down; the moved ids wait in the outbox.
    wait_until("decisions with ClickHouse down", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move { decisions(&pool).await.map(|n| n == 20).unwrap_or(false) }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM person_overrides_outbox").fetch_one(&pool).await?;
    assert_eq!(waiting, 20);
    assert!(consumer.metric("cairn_persons_failures_total").await? >= 1.0);

    ch.start()?;
    wait_until("the overrides after ClickHouse returns", Duration::from_secs(90), || {
        let db = db.clone();
        async move {
            db.scalar(
                "SELECT count() FROM (SELECT id_hash FROM person_overrides WHERE project_id = 31 GROUP BY id_hash)",
            )
            .await
            .map(|n| n == 20)
            .unwrap_or(false)
        }
    })
    .await
    .map_err(|e| anyhow!("{e}\n{}", consumer.log_tail()))?;
    let ids: Vec<String> = (0..20).map(|i| format!("anon-{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let got = ch_persons(&db, 31, &refs).await?;
    for i in 0..20 {
        assert_eq!(got[&format!("anon-{i}")], id_hash(&format!("user-{i}")));
    }
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM person_overrides_outbox").fetch_one(&pool).await?;
    assert_eq!(waiting, 0);
    Ok(())
}

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

fn iso_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn day_text(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.date().to_string()
}

/// One event of the journeys: who (the person, as the reference knows it), under which id, what,
/// and when.
#[derive(Clone)]
struct Journey {
    person: usize,
    id: String,
    event: &'static str,
    ts: i64,
    props: Value,
}

impl Journey {
    fn body(&self) -> Value {
        json!({"event": self.event, "distinct_id": self.id, "properties": self.props, "timestamp": iso_ms(self.ts), "uuid": Uuid::now_v7()})
    }
}

/// 30 people over a week: a third browse anonymously, then log in ($identify) and buy as
/// themselves; a third never browse anonymously; a third are aliased ($create_alias) and go on
/// under both ids. Returns the events before and after the identity events, and the late ones
/// (anonymous events sent after the login that made them the user's, dated before it).
fn journeys(base: i64) -> (Vec<Journey>, Vec<Journey>, Vec<Journey>) {
    let (mut before, mut after, mut late) = (Vec::new(), Vec::new(), Vec::new());
    let j = |person: usize, id: String, event: &'static str, ts: i64, props: Value| Journey {
        person,
        id,
        event,
        ts,
        props,
    };
    for i in 0..30 {
        let (anon, user) = (format!("anon-{i}"), format!("user-{i}"));
        let d0 = base + (i as i64 % 5) * DAY + 10 * HOUR;
        match i % 3 {
            0 => {
                before.push(j(i, anon.clone(), "pageview", d0, json!({})));
                before.push(j(i, anon.clone(), "view_item", d0 + HOUR, json!({})));
                after.push(j(i, user.clone(), "$identify", d0 + 2 * HOUR, json!({"$anon_distinct_id": anon})));
                after.push(j(i, user.clone(), "purchase", d0 + 3 * HOUR, json!({})));
                after.push(j(i, user.clone(), "pageview", d0 + DAY + HOUR, json!({})));
                late.push(j(i, anon.clone(), "pageview", d0 + 30 * 60_000, json!({})));
                late.push(j(i, anon, "pageview", d0 + DAY + 2 * HOUR, json!({})));
            }
            1 => {
                before.push(j(i, user.clone(), "pageview", d0, json!({})));
                before.push(j(i, user.clone(), "view_item", d0 + HOUR, json!({})));
                if i % 2 == 1 {
                    before.push(j(i, user.clone(), "purchase", d0 + 3 * HOUR, json!({})));
                }
                before.push(j(i, user, "pageview", d0 + 2 * DAY, json!({})));
            }
            _ => {
                before.push(j(i, anon.clone(), "pageview", d0, json!({})));
                after.push(j(i, anon.clone(), "$create_alias", d0 + HOUR, json!({"alias": user})));
                after.push(j(i, user.clone(), "view_item", d0 + 2 * HOUR, json!({})));
                after.push(j(i, anon.clone(), "purchase", d0 + 4 * HOUR, json!({})));
                after.push(j(i, user, "pageview", d0 + DAY, json!({})));
            }
        }
    }
    (before, after, late)
}

/// The furthest step each person reaches of pageview → view_item → purchase within `window`
/// (steps in order, each after the previous, all within the window of the first).
fn funnel_reference(events: &[&Journey], key: impl Fn(&Journey) -> String, window: i64) -> Vec<u64> {
    let steps = ["pageview", "view_item", "purchase"];
    let mut by: BTreeMap<String, Vec<(i64, usize)>> = BTreeMap::new();
    for e in events {
        if let Some(s) = steps.iter().position(|s| *s == e.event) {
            by.entry(key(e)).or_default().push((e.ts, s));
        }
    }
    let mut counts = vec![0u64; 3];
    for evs in by.values_mut() {
        evs.sort();
        let mut best = 0;
        for &(start, s) in evs.iter() {
            if s != 0 {
                continue;
            }
            let (mut level, mut last) = (1, start);
            for step in 1..3 {
                match evs.iter().find(|&&(t, s)| s == step && t > last && t <= start + window) {
                    Some(&(t, _)) => {
                        level = step + 1;
                        last = t;
                    }
                    None => break,
                }
            }
            best = best.max(level);
        }
        for c in counts.iter_mut().take(best) {
            *c += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyses_count_persons_across_anonymous_and_identified_ids() -> Result<()> {
    use cairn_e2e::{call, sign_up, unique};
    use std::collections::{BTreeSet, HashMap};

    let kafka = TestKafka::shared()?;
    let ch = TestClickHouse::shared()?;
    let pg = TestPostgres::shared()?;
    let url = pg.fresh_database("persons_query").await?;
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), url.clone());
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "persons-internal-token".into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    let account = sign_up(&auth, &format!("{}@persons.example", unique("pat"))).await?;
    let pool = PgPool::connect(&url).await?;

    let mut p = Pipeline::new(&kafka, &ch, &format!("phc_pq={}", account.project_id));
    p.persons(&url);
    let _consumer = p.consumer().await?;
    let capture = p.capture().await?;
    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), ch.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), p.database.clone());
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;
    let db = ch.db(&p.database);

    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let base = now.div_euclid(DAY) * DAY - 10 * DAY;
    let (before, after, late) = journeys(base);
    let body = |v: &[Journey]| v.iter().map(Journey::body).collect::<Vec<_>>();
    send(&capture, "phc_pq", &body(&before)).await?;
    step(&capture, &pool, "phc_pq", &body(&after)).await?;
    // Late anonymous events, dated before the login that made them the user's.
    send(&capture, "phc_pq", &body(&late)).await?;
    let all: Vec<&Journey> = before.iter().chain(&after).chain(&late).collect();
    let total = all.len() as u64;
    let project = account.project_id;
    wait_until("every event and override stored", Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            let events =
                db.scalar(&format!("SELECT count() FROM events FINAL WHERE project_id = {project}")).await.unwrap_or(0);
            let overrides = db.scalar("SELECT count() FROM person_overrides FINAL").await.unwrap_or(0);
            events == total && overrides == 20
        }
    })
    .await?;

    let person = |e: &Journey| e.person.to_string();
    let by_id = |e: &Journey| e.id.clone();
    let ask = |path: &'static str, body: Value| {
        let (url, token) =
            (query.url(&format!("/api/v1/projects/{project}/query/{path}")), account.access_token.clone());
        async move {
            let (status, v) = call("POST", &url, Some(&token), Some(&body)).await?;
            anyhow::ensure!(status == 200, "{path}: {status} {v}");
            Ok::<Value, anyhow::Error>(v)
        }
    };
    let (from, to) = (day_text(base), day_text(base + 6 * DAY));
    let days = |key: &dyn Fn(&Journey) -> String, event: &str| -> Vec<BTreeSet<String>> {
        let mut out = vec![BTreeSet::new(); 7];
        for e in all.iter().filter(|e| e.event == event) {
            out[((e.ts - base) / DAY) as usize].insert(key(e));
        }
        out
    };

    // Trends: unique users per day are persons; events per person too.
    let v = ask(
        "trends",
        json!({"series": [{"event": "pageview", "math": "unique_users"}, {"event": "pageview", "math": "per_user_max"}],
               "date_from": from, "date_to": to, "interval": "day", "timezone": "UTC"}),
    )
    .await?;
    let uniques: Vec<f64> = days(&person, "pageview").iter().map(|d| d.len() as f64).collect();
    let by_ids: Vec<f64> = days(&by_id, "pageview").iter().map(|d| d.len() as f64).collect();
    assert_ne!(uniques, by_ids, "the data must tell persons from ids");
    let got = |r: &Value| {
        r["data"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>()).unwrap_or_default()
    };
    assert_eq!(got(&v["results"][0]), uniques, "{v}");
    let mut per_day_max = vec![0f64; 7];
    for (d, m) in per_day_max.iter_mut().enumerate() {
        let mut c: BTreeMap<String, f64> = BTreeMap::new();
        for e in all.iter().filter(|e| e.event == "pageview" && ((e.ts - base) / DAY) as usize == d) {
            *c.entry(person(e)).or_default() += 1.0;
        }
        *m = c.values().cloned().fold(0.0, f64::max);
    }
    assert_eq!(got(&v["results"][1]), per_day_max, "{v}");

    // Funnels: the anonymous steps and the identified purchase are one person's walk; from both
    // tables (events_by_person without filters, events with one).
    let want = funnel_reference(&all, person, DAY);
    assert_ne!(want, funnel_reference(&all, by_id, DAY), "the data must tell persons from ids");
    for filters in [json!([]), json!([{"key": "missing", "operator": "is_not_set"}])] {
        let v = ask(
            "funnels",
            json!({"steps": [{"event": "pageview"}, {"event": "view_item"}, {"event": "purchase"}],
                   "date_from": from, "date_to": to, "timezone": "UTC", "filters": filters,
                   "conversion_window": {"value": 1, "unit": "day"}}),
        )
        .await?;
        let counts: Vec<u64> =
            v["steps"].as_array().map(|s| s.iter().filter_map(|s| s["count"].as_u64()).collect()).unwrap_or_default();
        assert_eq!(counts, want, "{v}");
    }

    // Retention: a person's pageview days, whichever id they were under.
    let v = ask(
        "retention",
        json!({"target_event": {"event": "pageview"}, "returning_event": {"event": "pageview"}, "period": "day",
               "periods": 7, "date_to": to, "timezone": "UTC"}),
    )
    .await?;
    let active = days(&person, "pageview");
    for (c, cohort) in v["cohorts"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let want: Vec<u64> = (0..7 - c)
            .map(|k| active[c].iter().filter(|p| k == 0 || active[c + k].contains(*p)).count() as u64)
            .collect();
        assert_eq!(cohort["size"].as_u64(), Some(active[c].len() as u64), "cohort {c}: {v}");
        let values: Vec<u64> =
            cohort["values"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
        assert_eq!(values, want, "cohort {c}: {v}");
    }
    Ok(())
}

/// Sent events with their uuids and times, for the reference fold.
struct Sent {
    id: String,
    event: &'static str,
    ts: i64,
    uuid: Uuid,
    props: Value,
}

impl Sent {
    fn body(&self) -> Value {
        json!({"event": self.event, "distinct_id": self.id, "properties": self.props, "timestamp": iso_ms(self.ts), "uuid": self.uuid})
    }

    fn captured(&self) -> cairn_common::event::CapturedEvent {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.ts) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        cairn_common::event::CapturedEvent {
            uuid: self.uuid,
            project_id: 0,
            event: self.event.to_string(),
            distinct_id: self.id.clone(),
            properties: self.props.as_object().cloned().unwrap_or_default(),
            timestamp: t,
            received_at: t,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_properties_filter_and_break_down_analyses() -> Result<()> {
    use cairn_e2e::{call, sign_up, unique};
    use std::collections::HashMap;

    let kafka = TestKafka::shared()?;
    let ch = TestClickHouse::shared()?;
    let pg = TestPostgres::shared()?;
    let url = pg.fresh_database("persons_props").await?;
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), url.clone());
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "persons-internal-token".into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    let account = sign_up(&auth, &format!("{}@persons.example", unique("pp"))).await?;
    let pool = PgPool::connect(&url).await?;
    let mut p = Pipeline::new(&kafka, &ch, &format!("phc_pp={}", account.project_id));
    p.persons(&url);
    let _consumer = p.consumer().await?;
    let capture = p.capture().await?;
    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), ch.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), p.database.clone());
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;
    let db = ch.db(&p.database);

    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let base = now.div_euclid(DAY) * DAY - 10 * DAY;
    let s =
        |id: String, event: &'static str, ts: i64, props: Value| Sent { id, event, ts, uuid: Uuid::now_v7(), props };
    // Sent in this order: later operations first, so that arrival order and event time differ.
    let (mut first, mut identify, mut second) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..24 {
        let (anon, user) = (format!("anon-{i}"), format!("user-{i}"));
        let d0 = base + (i as i64 % 4) * DAY + 10 * HOUR;
        let plan = if i % 3 == 0 { "pro" } else { "free" };
        if i % 4 == 0 {
            first.push(s(user.clone(), "upgraded", d0 + 3 * HOUR, json!({"$set": {"plan": "enterprise"}})));
        }
        if i % 5 == 0 {
            first.push(s(user.clone(), "downgraded", d0 + 4 * HOUR, json!({"$unset": ["plan"]})));
        }
        first.push(s(user.clone(), "pageview", d0 + 5 * HOUR, json!({"$set_once": {"referrer": "late"}})));
        second.push(s(anon.clone(), "pageview", d0, json!({"$set_once": {"referrer": format!("ref-{}", i % 3)}})));
        second.push(s(user.clone(), "signed_in", d0 + 2 * HOUR, json!({"$set": {"plan": plan}})));
        second.push(s(anon.clone(), "pageview", d0 + DAY, json!({})));
        if i % 2 == 0 {
            identify.push(s(
                user.clone(),
                "$identify",
                d0 + HOUR,
                json!({"$anon_distinct_id": anon, "$set": {"email": format!("{user}@example.com")}}),
            ));
        }
    }
    send(&capture, "phc_pp", &first.iter().map(Sent::body).collect::<Vec<_>>()).await?;
    step(&capture, &pool, "phc_pp", &identify.iter().map(Sent::body).collect::<Vec<_>>()).await?;
    send(&capture, "phc_pp", &second.iter().map(Sent::body).collect::<Vec<_>>()).await?;
    let all: Vec<&Sent> = first.iter().chain(&identify).chain(&second).collect();
    let total = all.len() as u64;
    let project = account.project_id;
    wait_until("every event stored", Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            db.scalar(&format!("SELECT count() FROM events FINAL WHERE project_id = {project}")).await.unwrap_or(0)
                == total
        }
    })
    .await?;

    // The reference: each person's ids (the identified ones joined their anonymous id), and their
    // properties folded by cairn-persons from every operation of every id.
    let person_of = |id: &str| -> String {
        let n: usize = id.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if n % 2 == 0 {
            format!("user-{n}")
        } else {
            id.to_string()
        }
    };
    let mut ops: BTreeMap<String, Vec<cairn_persons::properties::PropertyOp>> = BTreeMap::new();
    for e in &all {
        ops.entry(person_of(&e.id)).or_default().extend(cairn_persons::properties::property_ops(&e.captured()));
    }
    let props: BTreeMap<String, serde_json::Map<String, Value>> =
        ops.iter().map(|(p, o)| (p.clone(), cairn_persons::properties::fold(o))).collect();
    let prop = |e: &Sent, key: &str| -> Option<String> {
        props
            .get(&person_of(&e.id))
            .and_then(|m| m.get(key))
            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
    };
    let ask = |path: &'static str, body: Value| {
        let (url, token) =
            (query.url(&format!("/api/v1/projects/{project}/query/{path}")), account.access_token.clone());
        async move {
            let (status, v) = call("POST", &url, Some(&token), Some(&body)).await?;
            anyhow::ensure!(status == 200, "{path}: {status} {v}");
            Ok::<Value, anyhow::Error>(v)
        }
    };
    let (from, to) = (day_text(base), day_text(base + 6 * DAY));
    let in_range = |e: &&&Sent| e.ts >= base && e.ts < base + 7 * DAY;

    // A person filter: pageviews of persons whose plan is pro; and whose referrer is ref-0.
    for (key, value) in [("plan", "pro"), ("referrer", "ref-0"), ("referrer", "late"), ("email", "user-4@example.com")]
    {
        let v = ask(
            "trends",
            json!({"series": [{"event": "pageview"}], "date_from": from, "date_to": to, "interval": "day", "timezone": "UTC",
                   "filters": [{"key": key, "value": value, "type": "person"}]}),
        )
        .await?;
        let want = all
            .iter()
            .filter(in_range)
            .filter(|e| e.event == "pageview" && prop(e, key).as_deref() == Some(value))
            .count();
        assert_eq!(v["results"][0]["total"].as_f64(), Some(want as f64), "{key} = {value}: {v}");
        assert!(want > 0, "{key} = {value} must match something");
    }
    // is_not_set matches persons without the property (those with no properties at all too).
    let v = ask(
        "trends",
        json!({"series": [{}], "date_from": from, "date_to": to, "interval": "day", "timezone": "UTC",
               "filters": [{"key": "plan", "operator": "is_not_set", "type": "person"}]}),
    )
    .await?;
    let want = all.iter().filter(in_range).filter(|e| prop(e, "plan").is_none()).count();
    assert_eq!(v["results"][0]["total"].as_f64(), Some(want as f64), "{v}");

    // A breakdown by the person's plan, counting unique persons.
    let v = ask(
        "trends",
        json!({"series": [{"math": "unique_users"}], "date_from": from, "date_to": to, "interval": "day", "timezone": "UTC",
               "breakdown": {"property": "plan", "type": "person"}}),
    )
    .await?;
    let mut want: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for e in all.iter().filter(in_range) {
        want.entry(prop(e, "plan").unwrap_or_else(|| "$none".into())).or_default().insert(person_of(&e.id));
    }
    let got: BTreeMap<String, f64> = v["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| {
                    (
                        r["breakdown_value"].as_str().unwrap_or("").to_string(),
                        r["aggregated_value"].as_f64().unwrap_or(-1.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let want: BTreeMap<String, f64> = want.into_iter().map(|(k, v)| (k, v.len() as f64)).collect();
    assert_eq!(got, want, "{v}");

    // A funnel of persons whose referrer was ref-1 (first step by the anonymous id, second by the
    // user id after login).
    let v = ask(
        "funnels",
        json!({"steps": [{"event": "pageview"}, {"event": "signed_in"}], "date_from": from, "date_to": to, "timezone": "UTC",
               "conversion_window": {"value": 1, "unit": "day"}, "filters": [{"key": "referrer", "value": "ref-1", "type": "person"}]}),
    )
    .await?;
    let persons: std::collections::BTreeSet<String> =
        all.iter().filter(|e| prop(e, "referrer").as_deref() == Some("ref-1")).map(|e| person_of(&e.id)).collect();
    let converted = persons
        .iter()
        .filter(|p| {
            let ts = |name: &str| {
                all.iter().filter(|e| &person_of(&e.id) == *p && e.event == name).map(|e| e.ts).collect::<Vec<_>>()
            };
            ts("pageview").iter().any(|&a| ts("signed_in").iter().any(|&b| b > a && b <= a + DAY))
        })
        .count() as u64;
    let counts: Vec<u64> =
        v["steps"].as_array().map(|s| s.iter().filter_map(|s| s["count"].as_u64()).collect()).unwrap_or_default();
    assert_eq!(counts, vec![persons.len() as u64, converted], "{v}");

    // The persons API: every person with their ids and the reference's properties.
    let get = |path: String| {
        let (url, token) = (query.url(&format!("/api/v1/projects/{project}{path}")), account.access_token.clone());
        async move {
            let (status, v) = call("GET", &url, Some(&token), None).await?;
            anyhow::ensure!(status == 200, "{status} {v}");
            Ok::<Value, anyhow::Error>(v)
        }
    };
    let mut want: BTreeMap<Vec<String>, Value> = BTreeMap::new();
    for e in &all {
        let person = person_of(&e.id);
        let mut ids: Vec<String> = all.iter().filter(|x| person_of(&x.id) == person).map(|x| x.id.clone()).collect();
        ids.sort();
        ids.dedup();
        want.insert(ids, Value::Object(props.get(&person).cloned().unwrap_or_default()));
    }
    let mut got: BTreeMap<Vec<String>, Value> = BTreeMap::new();
    let mut offset = 0;
    loop {
        let page = get(format!("/persons?limit=10&offset={offset}")).await?;
        for p in page["results"].as_array().cloned().unwrap_or_default() {
            let ids: Vec<String> = serde_json::from_value(p["distinct_ids"].clone())?;
            got.insert(ids, p["properties"].clone());
        }
        match page["next_offset"].as_u64() {
            Some(n) => offset = n as usize,
            None => break,
        }
    }
    assert_eq!(got, want);
    // Search and lookup by a distinct id; one person with their events.
    let found = get("/persons?search=USER-4%40example".into()).await?;
    assert_eq!(found["results"][0]["distinct_ids"], json!(["anon-4", "user-4"]), "{found}");
    let by_id = get("/persons?distinct_id=anon-4".into()).await?;
    let id = by_id["results"][0]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(id, id_hash("user-4").to_string());
    let one = get(format!("/persons/{id}")).await?;
    let theirs = all.iter().filter(|e| person_of(&e.id) == "user-4").count();
    assert_eq!(one["event_count"].as_u64(), Some(theirs as u64), "{one}");
    assert_eq!(one["recent_events"].as_array().map(Vec::len), Some(theirs), "{one}");
    assert_eq!(one["properties"], want[&vec!["anon-4".to_string(), "user-4".to_string()]]);
    // The export: the person and every event of both ids, oldest first.
    let url = query.url(&format!("/api/v1/projects/{project}/persons/{id}/export"));
    let resp = reqwest::Client::new().get(&url).bearer_auth(&account.access_token).send().await?;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-disposition"].to_str()?.contains(&format!("person-{id}.json")));
    let export: Value = resp.json().await?;
    assert_eq!(export["person"]["distinct_ids"], json!(["anon-4", "user-4"]));
    assert_eq!(export["person"]["properties"], one["properties"]);
    let events = export["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), theirs, "{export}");
    let times: Vec<String> = events.iter().map(|e| e["timestamp"].as_str().unwrap_or("").to_string()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "oldest first");
    let url = query.url(&format!("/api/v1/projects/{project}/persons/12345"));
    let (status, _) = call("GET", &url, Some(&account.access_token), None).await?;
    assert_eq!(status, 404);
    let url = query.url(&format!("/api/v1/projects/{project}/persons/not-a-number"));
    let (status, v) = call("GET", &url, Some(&account.access_token), None).await?;
    assert_eq!((status, v["field"].as_str()), (400, Some("person_id")), "{v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_person_leaves_every_answer_at_once_and_clickhouse_after_the_job() -> Result<()> {
    use cairn_e2e::{call, sign_up, unique};
    use std::collections::{BTreeSet, HashMap};

    let kafka = TestKafka::shared()?;
    let ch = TestClickHouse::shared()?;
    let pg = TestPostgres::shared()?;
    let url = pg.fresh_database("persons_delete").await?;
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), url.clone());
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "persons-internal-token".into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    let account = sign_up(&auth, &format!("{}@persons.example", unique("del"))).await?;
    let pool = PgPool::connect(&url).await?;
    let mut p = Pipeline::new(&kafka, &ch, &format!("phc_del={}", account.project_id));
    p.persons(&url);
    let consumer = p.consumer().await?;
    let capture = p.capture().await?;
    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), ch.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), p.database.clone());
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;
    let db = ch.db(&p.database);
    let project = account.project_id;

    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let base = now.div_euclid(DAY) * DAY - 10 * DAY;
    let (mut before, after, late) = journeys(base);
    // The deleted person also has properties.
    before.push(Journey {
        person: 0,
        id: "user-0".into(),
        event: "signed_in",
        ts: base + 10 * HOUR,
        props: json!({"$set": {"email": "zero@example.com"}}),
    });
    let body = |v: &[Journey]| v.iter().map(Journey::body).collect::<Vec<_>>();
    send(&capture, "phc_del", &body(&before)).await?;
    step(&capture, &pool, "phc_del", &body(&after)).await?;
    send(&capture, "phc_del", &body(&late)).await?;
    let all: Vec<&Journey> = before.iter().chain(&after).chain(&late).collect();
    let total = all.len() as u64;
    wait_until("every event and override stored", Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            db.scalar(&format!("SELECT count() FROM events FINAL WHERE project_id = {project}")).await.unwrap_or(0)
                == total
                && db.scalar("SELECT count() FROM person_overrides FINAL").await.unwrap_or(0) == 20
        }
    })
    .await?;

    let call_json = |method: &'static str, path: String, token: String| {
        let url = query.url(&format!("/api/v1/projects/{project}{path}"));
        async move { call(method, &url, Some(&token), None).await }
    };
    let token = account.access_token.clone();
    let person = id_hash("user-0").to_string();
    // A key with query:read only may not delete.
    let (status, key) = call(
        "POST",
        &auth.url("/api/v1/personal-keys"),
        Some(&token),
        Some(&json!({"name": "reader", "scopes": ["query:read"]})),
    )
    .await?;
    anyhow::ensure!(status == 201, "{status} {key}");
    let reader = key["key"].as_str().unwrap_or_default().to_string();
    let (status, _) = call_json("DELETE", format!("/persons/{person}"), reader).await?;
    assert_eq!(status, 403);

    let (status, job) = call_json("DELETE", format!("/persons/{person}"), token.clone()).await?;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["distinct_ids"], json!(["anon-0", "user-0"]), "{job}");
    assert_eq!(job["status"], "pending");

    // At once (whether the job has run yet or not): no analysis counts the person.
    let kept: Vec<&Journey> = all.iter().copied().filter(|e| e.person != 0).collect();
    let (from, to) = (day_text(base), day_text(base + 6 * DAY));
    let v = call(
        "POST",
        &query.url(&format!("/api/v1/projects/{project}/query/trends")),
        Some(&token),
        Some(&json!({"series": [{}, {"event": "pageview", "math": "unique_users"}], "date_from": from, "date_to": to, "interval": "day", "timezone": "UTC"})),
    )
    .await?
    .1;
    assert_eq!(v["results"][0]["total"].as_f64(), Some(kept.len() as f64), "{v}");
    let mut per_day = vec![BTreeSet::new(); 7];
    for e in kept.iter().filter(|e| e.event == "pageview") {
        per_day[((e.ts - base) / DAY) as usize].insert(e.person);
    }
    let uniques: Vec<f64> = per_day.iter().map(|d| d.len() as f64).collect();
    let got: Vec<f64> =
        v["results"][1]["data"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
    assert_eq!(got, uniques, "{v}");
    let v = call(
        "POST",
        &query.url(&format!("/api/v1/projects/{project}/query/funnels")),
        Some(&token),
        Some(&json!({"steps": [{"event": "pageview"}, {"event": "view_item"}, {"event": "purchase"}], "date_from": from, "date_to": to, "timezone": "UTC", "conversion_window": {"value": 1, "unit": "day"}})),
    )
    .await?
    .1;
    let counts: Vec<u64> =
        v["steps"].as_array().map(|s| s.iter().filter_map(|s| s["count"].as_u64()).collect()).unwrap_or_default();
    assert_eq!(counts, funnel_reference(&kept, |e| e.person.to_string(), DAY), "{v}");
    let (status, _) = call_json("GET", format!("/persons/{person}"), token.clone()).await?;
    assert_eq!(status, 404, "a person being deleted is not listed");

    // The job: done, and nothing of the person left in ClickHouse or PostgreSQL.
    wait_until("the deletion done", Duration::from_secs(60), || {
        let f = call_json("GET", "/person-deletions".into(), token.clone());
        async move { f.await.map(|(_, v)| v["results"][0]["status"] == "done").unwrap_or(false) }
    })
    .await
    .map_err(|e| anyhow!("{e}\n{}", consumer.log_tail()))?;
    let ids = "cityHash64('anon-0'), cityHash64('user-0')";
    for (table, hash) in [
        ("events", "cityHash64(distinct_id)"),
        ("events_by_person", "person"),
        ("person_property_ops", "id_hash"),
        ("distinct_id_activity", "id_hash"),
        ("person_overrides", "id_hash"),
    ] {
        let n = db
            .scalar(&format!("SELECT count() FROM {table} WHERE project_id = {project} AND {hash} IN ({ids})"))
            .await?;
        assert_eq!(n, 0, "{table} still holds the person's rows");
    }
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM person_distinct_ids WHERE distinct_id IN ('anon-0', 'user-0')")
            .fetch_one(&pool)
            .await?;
    assert_eq!(left, 0);
    let events = db.scalar(&format!("SELECT count() FROM events FINAL WHERE project_id = {project}")).await?;
    assert_eq!(events, kept.len() as u64, "the other persons' events are all there");
    assert!(consumer.metric("cairn_person_deletions_done_total").await? >= 1.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_project_deletes_its_events_and_persons_and_catches_stragglers() -> Result<()> {
    use cairn_e2e::{sign_up, unique};
    use std::collections::HashMap;

    let kafka = TestKafka::shared()?;
    let ch = TestClickHouse::shared()?;
    let pg = TestPostgres::shared()?;
    let url = pg.fresh_database("project_delete").await?;
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), url.clone());
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "persons-internal-token".into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    let account = sign_up(&auth, &format!("{}@persons.example", unique("proj"))).await?;
    let pool = PgPool::connect(&url).await?;
    let project = account.project_id;
    // A second project (a static key, not in PostgreSQL) whose events must all stay.
    let mut p = Pipeline::new(&kafka, &ch, &format!("phc_gone={project},phc_kept=999999"));
    p.persons(&url).set("CAIRN_CONSUMER_PROJECT_DELETION_REPEAT_MS", "10000");
    let consumer = p.consumer().await?;
    let capture = p.capture().await?;
    let db = ch.db(&p.database);

    let batch = |n: usize| -> Vec<Value> {
        let mut v: Vec<Value> =
            (0..n).map(|i| ev("pageview", &format!("anon-{i}"), json!({"$set": {"plan": "pro"}}))).collect();
        v.push(ev("$identify", "user-0", json!({"$anon_distinct_id": "anon-0"})));
        v
    };
    send(&capture, "phc_gone", &batch(30)).await?;
    send(&capture, "phc_kept", &batch(20)).await?;
    let count = |project: i64, table: &'static str| {
        let db = db.clone();
        async move {
            db.scalar(&format!("SELECT count() FROM {table} WHERE project_id = {project}")).await.unwrap_or(u64::MAX)
        }
    };
    wait_until("both projects stored, with persons", Duration::from_secs(60), || async {
        count(project, "events").await == 31
            && count(999_999, "events").await == 21
            && count(project, "person_overrides").await == 1
            && count(project, "person_property_ops").await == 30
    })
    .await?;

    let (status, body) =
        cairn_e2e::call("DELETE", &auth.url(&format!("/api/v1/projects/{project}")), Some(&account.access_token), None)
            .await?;
    assert_eq!(status, 204, "{body}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM project_deletions WHERE project_id = $1")
        .bind(project)
        .fetch_one(&pool)
        .await?;
    assert_eq!(jobs, 1, "the trigger records the job");
    let tables = ["events", "events_by_person", "person_property_ops", "distinct_id_activity", "person_overrides"];
    let passes = || async {
        sqlx::query_scalar::<_, i32>("SELECT passes FROM project_deletions WHERE project_id = $1")
            .bind(project)
            .fetch_one(&pool)
            .await
            .unwrap_or(0)
    };
    wait_until("the first pass", Duration::from_secs(60), || async { passes().await >= 1 })
        .await
        .map_err(|e| anyhow!("{e}\n{}", consumer.log_tail()))?;
    for t in tables {
        assert_eq!(count(project, t).await, 0, "{t} after the first pass");
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM person_distinct_ids WHERE project_id = $1")
        .bind(project)
        .fetch_one(&pool)
        .await?;
    assert_eq!(left, 0);
    // A straggler: capture still held the key (here, a static one), or Kafka still held events.
    send(&capture, "phc_gone", &batch(4)).await?;
    wait_until("the stragglers stored", Duration::from_secs(30), || async {
        count(project, "events").await == 5 && count(project, "person_overrides").await == 1
    })
    .await?;
    assert!(passes().await < 2, "the second pass is 10 s after the first");
    wait_until("the second pass", Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM project_deletions WHERE project_id = $1")
            .bind(project)
            .fetch_one(&pool)
            .await
            .map(|s| s == "done")
            .unwrap_or(false)
    })
    .await?;
    for t in tables {
        assert_eq!(count(project, t).await, 0, "{t} after the second pass");
    }
    assert_eq!(count(999_999, "events").await, 21, "the other project's events are all there");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohorts_by_property_behaviour_and_list_filter_analyses() -> Result<()> {
    use cairn_e2e::{call, sign_up, unique};
    use std::collections::HashMap;

    let kafka = TestKafka::shared()?;
    let ch = TestClickHouse::shared()?;
    let pg = TestPostgres::shared()?;
    let url = pg.fresh_database("cohorts").await?;
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), url.clone());
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "persons-internal-token".into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    let account = sign_up(&auth, &format!("{}@persons.example", unique("coh"))).await?;
    let pool = PgPool::connect(&url).await?;
    let project = account.project_id;
    let mut p = Pipeline::new(&kafka, &ch, &format!("phc_coh={project}"));
    p.persons(&url);
    let _consumer = p.consumer().await?;
    let capture = p.capture().await?;
    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), ch.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), p.database.clone());
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;
    let db = ch.db(&p.database);

    // 20 people: two pageviews each as anon-i; the even ones log in ($identify with a plan, "pro"
    // when i % 3 == 0); user-i buys i % 4 times in the last days, and i % 5 == 0 three times 40
    // days ago (outside a 30-day behaviour).
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let at = |hours_ago: i64| json!(iso_ms(now - hours_ago * HOUR));
    let (mut first, mut identify) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let (anon, user) = (format!("anon-{i}"), format!("user-{i}"));
        for h in [30, 29] {
            let mut e = ev("pageview", &anon, json!({}));
            e["timestamp"] = at(h);
            first.push(e);
        }
        for k in 0..(i % 4) {
            let mut e = ev("purchase", &user, json!({}));
            e["timestamp"] = at(20 + k as i64);
            first.push(e);
        }
        if i % 5 == 0 {
            for k in 0..3 {
                let mut e = ev("purchase", &user, json!({}));
                e["timestamp"] = at(40 * 24 + k);
                first.push(e);
            }
        }
        if i % 2 == 0 {
            let plan = if i % 3 == 0 { "pro" } else { "free" };
            let mut e = ev("$identify", &user, json!({"$anon_distinct_id": anon, "$set": {"plan": plan}}));
            e["timestamp"] = at(25);
            identify.push(e);
        }
    }
    send(&capture, "phc_coh", &first).await?;
    step(&capture, &pool, "phc_coh", &identify).await?;
    let total = (first.len() + identify.len()) as u64;
    wait_until("every event and override stored", Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            db.scalar(&format!("SELECT count() FROM events FINAL WHERE project_id = {project}")).await.unwrap_or(0)
                == total
                && db.scalar("SELECT count() FROM person_overrides FINAL").await.unwrap_or(0) == 10
        }
    })
    .await?;

    let token = account.access_token.clone();
    let api = |method: &'static str, path: String, body: Option<Value>| {
        let (url, token) = (query.url(&format!("/api/v1/projects/{project}{path}")), token.clone());
        async move { call(method, &url, Some(&token), body.as_ref()).await }
    };
    let mut ids = BTreeMap::new();
    for (name, body, size) in [
        ("pro", json!({"name": "Pro", "properties": [{"key": "plan", "value": "pro"}]}), 4),
        (
            "buyers",
            json!({"name": "Repeat buyers", "behaviour": [{"event": "purchase", "min_count": 2, "days": 30}]}),
            10,
        ),
        (
            "both",
            json!({"name": "Pro repeat buyers", "properties": [{"key": "plan", "value": "pro"}], "behaviour": [{"event": "purchase", "min_count": 2, "days": 30}]}),
            2,
        ),
        ("list", json!({"name": "From a CSV", "distinct_ids": ["anon-2", "user-3", "nobody"]}), 2),
    ] {
        let (status, c) = api("POST", "/cohorts".into(), Some(body)).await?;
        assert_eq!(status, 201, "{c}");
        let id = c["id"].as_i64().unwrap_or(0);
        let (status, c) = api("POST", format!("/cohorts/{id}/compute"), None).await?;
        assert_eq!((status, c["size"].as_i64()), (200, Some(size)), "{name}: {c}");
        ids.insert(name, id);
    }
    let (status, list) = api("GET", "/cohorts".into(), None).await?;
    assert_eq!((status, list["results"].as_array().map(Vec::len)), (200, Some(4)));

    // Analyses filtered by a cohort: anon-2's pageviews are user-2's person's (in the list).
    let trend = |filters: Value, math: &'static str| {
        api(
            "POST",
            "/query/trends".into(),
            Some(
                json!({"series": [{"event": "pageview", "math": math}], "date_from": "-7d", "interval": "day", "filters": filters}),
            ),
        )
    };
    let (_, v) = trend(json!([{"type": "cohort", "key": "id", "value": ids["list"]}]), "total").await?;
    assert_eq!(v["results"][0]["aggregated_value"].as_f64(), Some(2.0), "{v}");
    let (_, v) =
        trend(json!([{"type": "cohort", "key": "id", "value": ids["list"], "operator": "is_not"}]), "total").await?;
    assert_eq!(v["results"][0]["aggregated_value"].as_f64(), Some(38.0), "{v}");
    // Repeat buyers who viewed pages: the identified ones (2, 6, 10, 14, 18); the odd buyers'
    // pageviews are their anonymous persons'.
    let (_, v) = trend(json!([{"type": "cohort", "key": "id", "value": ids["buyers"]}]), "unique_users").await?;
    assert_eq!(v["results"][0]["aggregated_value"].as_f64(), Some(5.0), "{v}");
    let (status, v) = trend(json!([{"type": "cohort", "key": "id", "value": 999_999}]), "total").await?;
    assert_eq!((status, v["field"].as_str()), (400, Some("filters")), "{v}");
    let (status, v) =
        trend(json!([{"type": "cohort", "key": "id", "value": ids["pro"], "operator": "is_set"}]), "total").await?;
    assert_eq!(status, 400, "{v}");

    // Cohorts as a breakdown: a group per cohort, in the order asked; a person counts in each of
    // their cohorts (6 and 18 are pro and repeat buyers) and nowhere when in none.
    let cohorts = json!([ids["pro"], ids["buyers"], ids["list"]]);
    let (status, v) = api(
        "POST",
        "/query/trends".into(),
        Some(json!({"series": [{"event": "pageview"}, {"event": "pageview", "math": "unique_users"}],
                    "date_from": "-7d", "interval": "day",
                    "breakdown": {"type": "cohort", "cohorts": cohorts}})),
    )
    .await?;
    assert_eq!(status, 200, "{v}");
    let got: BTreeMap<(u64, String), f64> = v["results"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|r| {
            let key = (r["series"].as_u64().unwrap_or(9), r["breakdown_value"].as_str().unwrap_or("").to_string());
            (key, r["aggregated_value"].as_f64().unwrap_or(-1.0))
        })
        .collect();
    let (pro, buyers, list) = (ids["pro"].to_string(), ids["buyers"].to_string(), ids["list"].to_string());
    let want: BTreeMap<(u64, String), f64> = [
        ((0, pro.clone()), 8.0),
        ((0, buyers.clone()), 10.0),
        ((0, list.clone()), 2.0),
        ((1, pro.clone()), 4.0),
        ((1, buyers.clone()), 5.0),
        ((1, list.clone()), 1.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want, "{v}");
    let order: Vec<String> =
        (0..3).map(|i| v["results"][i]["breakdown_value"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(order, vec![pro.clone(), buyers.clone(), list.clone()], "the cohorts' order");
    let (status, v) = api(
        "POST",
        "/query/funnels".into(),
        Some(json!({"steps": [{"event": "pageview"}, {"event": "purchase"}], "date_from": "-7d",
                    "breakdown": {"type": "cohort", "cohorts": cohorts}})),
    )
    .await?;
    assert_eq!(status, 200, "{v}");
    let got: Vec<(String, Vec<u64>)> = v["breakdown"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|b| {
            let counts = b["steps"]
                .as_array()
                .unwrap_or(&Vec::new())
                .iter()
                .map(|s| s["count"].as_u64().unwrap_or(99))
                .collect();
            (b["breakdown_value"].as_str().unwrap_or("").to_string(), counts)
        })
        .collect();
    assert_eq!(got, vec![(pro, vec![4, 2]), (buyers, vec![5, 5]), (list, vec![1, 1])], "{v}");
    for (breakdown, field) in [
        (json!({"type": "cohort", "cohorts": []}), "breakdown.cohorts"),
        (json!({"type": "cohort", "cohorts": [999_999]}), "breakdown.cohorts"),
        (json!({"type": "cohort", "cohorts": [ids["pro"], ids["pro"]]}), "breakdown.cohorts"),
        (json!({"type": "cohort", "property": "plan", "cohorts": [ids["pro"]]}), "breakdown.property"),
        (json!({"property": "plan", "cohorts": [ids["pro"]]}), "breakdown.cohorts"),
    ] {
        let (status, v) = api(
            "POST",
            "/query/trends".into(),
            Some(json!({"series": [{"event": "pageview"}], "date_from": "-7d", "breakdown": breakdown})),
        )
        .await?;
        assert_eq!((status, v["field"].as_str()), (400, Some(field)), "{breakdown}: {v}");
    }

    let (status, _) = api("DELETE", format!("/cohorts/{}", ids["both"]), None).await?;
    assert_eq!(status, 204);
    let (status, _) = api("GET", format!("/cohorts/{}", ids["both"]), None).await?;
    assert_eq!(status, 404);
    Ok(())
}
