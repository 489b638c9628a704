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
