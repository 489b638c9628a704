//! `make bench-changes`: the benchmark of the Go/Kafka/ClickHouse pipeline Cairn replaces
//! (`../shared/reference/seed-go-kafka-clickhouse.md`), end to end and exact: 500,000 inserts,
//! 200,000 updates and 200,000 deletes, each through its API, Kafka and the consumer into
//! ClickHouse, and every final row checked.
//!
//! It starts a private Kafka broker and ClickHouse server, PostgreSQL (shared test instance), and
//! Cairn's release binaries of auth, capture, consumer and query, then:
//!
//! 1. inserts: `INSERTS` events through capture's `/batch` (`BATCH` per request, as SDKs send);
//! 2. updates: `UPDATES` × `PUT /api/v1/projects/{id}/events/{uuid}` (a property set on each; one
//!    in four also renamed, a field of the events table's sorting key);
//! 3. deletes: `DELETES` × `DELETE …/events/{uuid}`, half of them on events updated in 2;
//!
//! each phase with `CONCURRENCY` connections, timed from its first request to Kafka's last
//! acknowledgement (the API's rate) and to its last row stored in ClickHouse (end to end). Then
//! every event is read back as it is now and compared with what it must be, and a trend through
//! the API must count exactly the survivors. Everything shares this machine's cores. Figures are
//! printed, not asserted; a wrong row fails the run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cairn_bench::{env_or, machine, percentile};
use cairn_e2e::{call, sign_up, unique, wait_until, Pipeline, Service, TestClickHouse, TestKafka, TestPostgres};
use serde_json::{json, Value};
use uuid::Uuid;

const DAY_MS: i64 = 86_400_000;

struct Phase {
    name: &'static str,
    ops: usize,
    errors: u64,
    accepted: Duration,
    stored: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn print(&self) {
        let rate = |d: Duration| self.ops as f64 / d.as_secs_f64();
        println!(
            "{:<8} {:>8} ops  API {:>7.0}/s ({:>6.1} s)  end to end {:>7.0}/s ({:>6.1} s)  latency p50 {:>6.1} ms  p99 {:>6.1} ms  errors {}",
            self.name,
            self.ops,
            rate(self.accepted),
            self.accepted.as_secs_f64(),
            rate(self.stored),
            self.stored.as_secs_f64(),
            percentile(&self.latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1e3,
            self.errors,
        );
    }
}

/// Runs `ops` requests made by `request(i)` over `concurrency` connections; `Ok(true)` is success.
async fn drive<F, Fut>(ops: usize, concurrency: usize, request: F) -> (Duration, Vec<Duration>, u64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let request = Arc::new(request);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, errors, request) = (Arc::clone(&next), Arc::clone(&errors), Arc::clone(&request));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    return latencies;
                }
                let t = Instant::now();
                if !request(i).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap_or_default());
    }
    (started.elapsed(), latencies, errors.load(Ordering::Relaxed))
}

/// What an event must be at the end: its name and its `v` property.
fn expected(i: usize, updates: usize, deletes: usize) -> Option<(&'static str, String)> {
    let deleted = i >= updates / 2 && i < updates / 2 + deletes;
    if deleted {
        return None;
    }
    if i < updates {
        let name = if i % 4 == 0 { "bench_renamed" } else { "bench" };
        return Some((name, format!("updated-{i}")));
    }
    Some(("bench", "original".into()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let inserts = env_or("INSERTS", 500_000) as usize;
    let updates = (env_or("UPDATES", 200_000) as usize).min(inserts);
    let deletes = (env_or("DELETES", 200_000) as usize).min(inserts - updates / 2);
    let concurrency = env_or("CONCURRENCY", 32) as usize;
    let batch = env_or("BATCH", 100) as usize;
    println!("machine: {}", machine());
    println!("{inserts} inserts, {updates} updates, {deletes} deletes; {concurrency} connections; {batch} events per capture request");

    let kafka = TestKafka::dedicated("bench-changes")?;
    let ch = TestClickHouse::dedicated("bench-changes")?;
    let pg = TestPostgres::shared()?;
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), pg.fresh_database("bench_changes").await?);
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "bench-secret-bench-secret-bench-secret-42".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "bench-internal-token".into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    let account = sign_up(&auth, &format!("{}@bench.example", unique("changes"))).await?;
    let project = account.project_id;
    let (status, key) = call(
        "POST",
        &auth.url("/api/v1/personal-keys"),
        Some(&account.access_token),
        Some(&json!({"name": "bench", "scopes": ["query:read", "events:write"]})),
    )
    .await?;
    if status != 201 {
        bail!("personal key: {status} {key}");
    }
    let key = key["key"].as_str().unwrap_or_default().to_string();

    let mut p = Pipeline::new(&kafka, &ch, &format!("phc_bench={project}"));
    p.set("CAIRN_CAPTURE_RATE_LIMIT_PER_SECOND", "0")
        .set("CAIRN_CONSUMER_BATCH_MAX_AGE_MS", "500")
        .set("CAIRN_CONSUMER_BATCH_MAX_EVENTS", "10000");
    let _consumer = p.consumer().await?;
    let capture = p.capture().await?;
    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), ch.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), p.database.clone());
    env.insert("CAIRN_KAFKA_BROKERS".into(), kafka.brokers());
    env.insert("CAIRN_KAFKA_TOPIC".into(), p.topic.clone());
    env.insert("CAIRN_QUERY_MAX_CONCURRENT_PER_CALLER".into(), (concurrency * 2).to_string());
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;
    let db = ch.db(&p.database);

    let uuids: Arc<Vec<Uuid>> = Arc::new((0..inserts).map(|_| Uuid::now_v7()).collect());
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let start_ms = now.div_euclid(DAY_MS) * DAY_MS - 20 * DAY_MS;
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;

    // 1. Inserts, through capture.
    let requests = inserts.div_ceil(batch);
    let (url, ids, c) = (capture.url("/batch"), Arc::clone(&uuids), client.clone());
    let started = Instant::now();
    let (accepted, latencies, errors) = drive(requests, concurrency, move |r| {
        let (url, ids, c) = (url.clone(), Arc::clone(&ids), c.clone());
        async move {
            let events: Vec<Value> = (r * batch..((r + 1) * batch).min(ids.len()))
                .map(|i| {
                    let ts = start_ms + (i as i64 * 3_407) % (19 * DAY_MS);
                    json!({"event": "bench", "distinct_id": format!("user-{}", i % 10_000), "uuid": ids[i],
                           "timestamp": time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts) * 1_000_000)
                               .map(|t| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())
                               .unwrap_or_default(),
                           "properties": {"v": "original", "n": i}})
                })
                .collect();
            matches!(c.post(&url).json(&json!({"api_key": "phc_bench", "batch": events})).send().await,
                     Ok(r) if r.status() == 200)
        }
    })
    .await;
    if errors > 0 {
        bail!("{errors} capture requests failed");
    }
    wait_until("every insert stored", Duration::from_secs(1800), || {
        let db = db.clone();
        async move { db.scalar("SELECT count() FROM events").await.unwrap_or(0) >= inserts as u64 }
    })
    .await?;
    let phase1 = Phase { name: "inserts", ops: inserts, errors, accepted, stored: started.elapsed(), latencies };
    phase1.print();

    // Reads of single events (`GET …/events/{uuid}`), as the earlier system's `GET /event/:id`.
    let events_url = |q: &Service| q.url(&format!("/api/v1/projects/{project}/events/"));
    let reads = updates.min(env_or("READS", 20_000) as usize);
    let (base, ids, c, k) = (events_url(&query), Arc::clone(&uuids), client.clone(), key.clone());
    let (elapsed, latencies, errors) = drive(reads, concurrency, move |i| {
        let (url, c, k) = (format!("{base}{}", ids[i]), c.clone(), k.clone());
        async move { matches!(c.get(&url).bearer_auth(&k).send().await, Ok(r) if r.status() == 200) }
    })
    .await;
    Phase { name: "reads", ops: reads, errors, accepted: elapsed, stored: elapsed, latencies }.print();

    // 2. Updates, through query's API.
    let (base, ids, c, k) = (events_url(&query), Arc::clone(&uuids), client.clone(), key.clone());
    let started = Instant::now();
    let (accepted, latencies, errors) = drive(updates, concurrency, move |i| {
        let (url, c, k) = (format!("{base}{}", ids[i]), c.clone(), k.clone());
        async move {
            let mut body = json!({"properties": {"v": format!("updated-{i}")}});
            if i % 4 == 0 {
                body["event"] = json!("bench_renamed");
            }
            matches!(c.put(&url).bearer_auth(&k).json(&body).send().await, Ok(r) if r.status() == 202)
        }
    })
    .await;
    wait_until("every update stored", Duration::from_secs(1800), || {
        let db = db.clone();
        async move { db.scalar("SELECT count() FROM event_changes").await.unwrap_or(0) >= (updates as u64 - errors) }
    })
    .await?;
    let phase2 = Phase { name: "updates", ops: updates, errors, accepted, stored: started.elapsed(), latencies };
    phase2.print();

    // 3. Deletes: the second half of the updated events and as many never updated.
    let (base, ids, c, k) = (events_url(&query), Arc::clone(&uuids), client.clone(), key.clone());
    let first = updates / 2;
    let started = Instant::now();
    let (accepted, latencies, errors) = drive(deletes, concurrency, move |i| {
        let (url, c, k) = (format!("{base}{}", ids[first + i]), c.clone(), k.clone());
        async move { matches!(c.delete(&url).bearer_auth(&k).send().await, Ok(r) if r.status() == 202) }
    })
    .await;
    wait_until("every delete stored", Duration::from_secs(1800), || {
        let db = db.clone();
        async move {
            db.scalar("SELECT count() FROM event_changes FINAL WHERE deleted = 1").await.unwrap_or(0)
                >= (deletes as u64 - errors)
        }
    })
    .await?;
    let phase3 = Phase { name: "deletes", ops: deletes, errors, accepted, stored: started.elapsed(), latencies };
    phase3.print();

    // Every final row, as analyses read them.
    let t = Instant::now();
    let rows = db
        .rows(&format!(
            "SELECT toString(uuid) AS u, toString(event) AS e, JSONExtractString(properties, 'v') AS v FROM \
             (SELECT uuid, event, properties FROM events FINAL WHERE project_id = {project} AND uuid NOT IN \
             (SELECT uuid FROM event_changes WHERE project_id = {project}) UNION ALL SELECT uuid, event, properties \
             FROM event_changes FINAL WHERE project_id = {project} AND deleted = 0)"
        ))
        .await?;
    let index: HashMap<String, usize> = uuids.iter().enumerate().map(|(i, u)| (u.to_string(), i)).collect();
    let mut seen = vec![false; inserts];
    let mut wrong = 0usize;
    for r in &rows {
        let Some(&i) = r["u"].as_str().and_then(|u| index.get(u)) else {
            wrong += 1;
            continue;
        };
        if seen[i] {
            wrong += 1;
        }
        seen[i] = true;
        match expected(i, updates, deletes) {
            Some((name, v)) if r["e"] == name && r["v"] == v.as_str() => {}
            _ => wrong += 1,
        }
    }
    let missing = (0..inserts).filter(|&i| !seen[i] && expected(i, updates, deletes).is_some()).count();
    let survivors = (0..inserts).filter(|&i| expected(i, updates, deletes).is_some()).count();
    println!(
        "final rows: {} read in {:.1} s; {} expected; {} wrong or unexpected, {} missing",
        rows.len(),
        t.elapsed().as_secs_f64(),
        survivors,
        wrong,
        missing
    );
    // And through the API: a trend of both names over the whole range.
    let (_, v) = call(
        "POST",
        &query.url(&format!("/api/v1/projects/{project}/query/trends")),
        Some(&key),
        Some(&json!({"series": [{"event": "bench"}, {"event": "bench_renamed"}], "date_from": "-21d", "interval": "week"})),
    )
    .await?;
    let totals: Vec<f64> =
        v["results"].as_array().map(|a| a.iter().filter_map(|s| s["total"].as_f64()).collect()).unwrap_or_default();
    let renamed = (0..inserts).filter(|&i| matches!(expected(i, updates, deletes), Some(("bench_renamed", _)))).count();
    println!(
        "trend through the API: bench {:?}, bench_renamed {:?} (expected {}, {})",
        totals.first(),
        totals.get(1),
        survivors - renamed,
        renamed
    );
    let exact = wrong == 0
        && missing == 0
        && rows.len() == survivors
        && totals == vec![(survivors - renamed) as f64, renamed as f64]
        && phase1.errors + phase2.errors + phase3.errors == 0;
    println!("exact: {exact}");
    if !exact {
        bail!("the final rows are not what the operations made");
    }
    Ok(())
}
