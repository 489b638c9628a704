//! `make bench-query`: latency of the query service over 10 million events.
//!
//! It starts a private ClickHouse server (the stack script), loads `EVENTS` synthetic events
//! (default 10,000,000: 100,000 users, ten event names, 30 days, a tenth of them in a second
//! project) with one `INSERT … SELECT` per million rows, merges them (and their copy by person), and starts the release
//! binaries of auth and query against the test PostgreSQL. Then, for each of a 30-day daily
//! trend, a 30-day trend broken down by browser, a 3-step funnel (also broken down by browser, and
//! in strict order) and a 14-day retention table, it measures `RUNS` requests through the service
//! (HTTP, authentication, JSON) and the same analysis run in-process by the query library (the
//! same SQL and result shaping, no HTTP): the difference is the service's overhead. Figures are printed, not asserted.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cairn_bench::{env_or, machine, percentile};
use cairn_common::config::ClickHouseConfig;
use cairn_e2e::{call, sign_up, unique, Service, TestClickHouse, TestPostgres};
use cairn_query::config::Limits;
use cairn_query::engine::Engine;
use cairn_query::sql::EventsSource;
use serde_json::{json, Value};

async fn load(
    ch: &TestClickHouse,
    database: &str,
    total: u64,
    project_a: i64,
    project_b: i64,
    persons_share: u64,
) -> Result<()> {
    let db = ch.db(database);
    // `persons_share` % of the users browse anonymously first: about half of their events (the
    // earlier half of the month) are under `anon<N>`, which their identity event later made
    // theirs — in `person_overrides`, as the persons pipeline leaves it.
    let chunk = 1_000_000u64;
    let mut done = 0;
    while done < total {
        let n = chunk.min(total - done);
        // Deterministic per row number: event (pageviews most common), user, browser, amount, time.
        let sql = format!(
            "INSERT INTO events (uuid, project_id, event, distinct_id, properties, timestamp, received_at) \
             SELECT generateUUIDv4(number), if(number % 10 = 9, {project_b}, {project_a}), \
                    arrayElement(['pageview','pageview','pageview','pageview','view_item','view_item','click','signup','purchase','logout'], 1 + cityHash64(number, 1) % 10) AS ev, \
                    if(cityHash64(number, 2) % 100000 % 100 < {persons_share} AND t < now64(3) - toIntervalDay(15), \
                       concat('anon', toString(cityHash64(number, 2) % 100000)), concat('user', toString(cityHash64(number, 2) % 100000))), \
                    concat('{{\"browser\":\"', arrayElement(['Chrome','Chrome','Chrome','Firefox','Safari','Edge'], 1 + cityHash64(number, 3) % 6), \
                           '\",\"amount\":', toString(cityHash64(number, 4) % 100), \
                           ',\"path\":\"/p', toString(number % 50), '\"', \
                           if(ev = 'signup', concat(',\"$set\":{{\"plan\":\"', arrayElement(['free','free','pro','team'], 1 + cityHash64(number, 7) % 4), '\"}}'), ''), '}}'), \
                    now64(3) - toIntervalMillisecond(cityHash64(number, 5) % (30 * 86400000)) AS t, t \
             FROM numbers({done}, {n})"
        );
        db.rows(&sql).await?;
        done += n;
        println!("  loaded {done} events");
    }
    for project in [project_a, project_b] {
        db.rows(&format!(
            "INSERT INTO person_overrides (project_id, id_hash, person_id, version) \
             SELECT {project}, cityHash64(concat('anon', toString(number))), cityHash64(concat('user', toString(number))), 1 \
             FROM numbers(100000) WHERE number % 100 < {persons_share}"
        ))
        .await?;
    }
    // Both the events and their copy by person (funnels read it), as background merges would.
    db.rows("OPTIMIZE TABLE events FINAL").await?;
    db.rows("OPTIMIZE TABLE events_by_person FINAL").await?;
    Ok(())
}

struct Figures {
    name: &'static str,
    service: Vec<Duration>,
    direct: Vec<Duration>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let total = env_or("EVENTS", 10_000_000);
    let persons_share = env_or("PERSONS_SHARE", 30);
    let runs = env_or("RUNS", 20) as usize;
    println!("machine: {}", machine());
    println!("starting a private ClickHouse server and loading {total} events ...");
    let ch = TestClickHouse::dedicated("bench_query")?;
    let database = unique("bench");
    let ch_cfg = ClickHouseConfig {
        url: ch.url(),
        database: database.clone(),
        user: "default".into(),
        password: None,
        lz4: false,
        event_ttl_days: 0,
    };
    cairn_common::clickhouse::migrate(&ch_cfg).await?;

    let pg = TestPostgres::shared()?;
    let mut env = std::collections::HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".to_string(), pg.fresh_database("bench").await?);
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "bench-secret-bench-secret-bench-secret-42".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "bench-internal-token".into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    let a = sign_up(&auth, &format!("{}@bench.example", unique("a"))).await?;
    let b = sign_up(&auth, &format!("{}@bench.example", unique("b"))).await?;
    let started = Instant::now();
    load(&ch, &database, total, a.project_id, b.project_id, persons_share).await?;
    println!("loaded and merged in {:.1} s", started.elapsed().as_secs_f64());

    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), ch.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), database.clone());
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;
    let engine = Engine {
        ch: cairn_common::clickhouse::client(&ch_cfg),
        source: EventsSource::new(true),
        by_person: Default::default(),
        limits: Limits::default(),
        timeout: Duration::from_secs(60),
    };
    let project = a.project_id as u64;

    let trend = json!({"series": [{"event": "pageview"}], "date_from": "-30d", "interval": "day"});
    let trend_persons =
        json!({"series": [{"event": "pageview", "math": "unique_users"}], "date_from": "-30d", "interval": "day"});
    let trend_plan = json!({"series": [{"event": "pageview"}], "date_from": "-30d", "interval": "day", "filters": [{"key": "plan", "value": "pro", "type": "person"}]});
    let breakdown = json!({"series": [{"event": "pageview"}], "date_from": "-30d", "interval": "day", "breakdown": {"property": "browser", "limit": 5}});
    let funnel = json!({"steps": [{"event": "pageview"}, {"event": "view_item"}, {"event": "purchase"}], "date_from": "-30d", "conversion_window": {"value": 1, "unit": "day"}});
    let funnel_by_browser = json!({"steps": [{"event": "pageview"}, {"event": "view_item"}, {"event": "purchase"}], "date_from": "-30d", "conversion_window": {"value": 1, "unit": "day"}, "breakdown": {"property": "browser", "limit": 5}});
    let funnel_strict = json!({"steps": [{"event": "pageview"}, {"event": "view_item"}, {"event": "purchase"}], "date_from": "-30d", "conversion_window": {"value": 1, "unit": "day"}, "order": "strict"});
    let retention = json!({"target_event": {"event": "signup"}, "returning_event": {"event": "pageview"}, "period": "day", "periods": 14});
    let mut cases: Vec<(&'static str, &str, Value)> = vec![
        ("30-day daily trend", "trends", trend),
        ("30-day daily unique persons", "trends", trend_persons),
        ("30-day trend, person property filter", "trends", trend_plan),
        ("30-day trend, breakdown by browser", "trends", breakdown),
        ("3-step funnel, 30 days", "funnels", funnel),
        ("3-step funnel, breakdown by browser", "funnels", funnel_by_browser),
        ("3-step funnel, strict order", "funnels", funnel_strict),
        ("retention, 14 daily cohorts", "retention", retention),
    ];
    // PERSON_CASES=0 leaves out what a query service from before persons would refuse (an A/B
    // against its binaries, with CAIRN_BIN_DIR).
    if env_or("PERSON_CASES", 1) == 0 {
        cases.retain(|(_, _, body)| !body.to_string().contains("\"person\""));
    }
    // The machine's speed drifts by 10-50 % over minutes: each round runs every analysis once
    // (through the service, then in-process), so that a slow spell slows them all alike rather
    // than whichever analysis happened to be running.
    let direct_once = |kind: &str, body: &Value| {
        let (engine, body, kind) = (&engine, body.clone(), kind.to_string());
        async move {
            let now = jiff::Timestamp::now();
            let r: Result<(), cairn_common::http::ApiError> = match kind.as_str() {
                "trends" => {
                    cairn_query::trends::run(engine, project, &serde_json::from_value(body)?, now).await.map(|_| ())
                }
                "funnels" => {
                    cairn_query::funnels::run(engine, project, &serde_json::from_value(body)?, now).await.map(|_| ())
                }
                _ => {
                    cairn_query::retention::run(engine, project, &serde_json::from_value(body)?, now).await.map(|_| ())
                }
            };
            r.map_err(|e| anyhow::anyhow!("{e}"))
        }
    };
    let urls: Vec<String> = cases
        .iter()
        .map(|(_, kind, _)| query.url(&format!("/api/v1/projects/{}/query/{kind}", a.project_id)))
        .collect();
    // Warm up both paths (caches, connections, the auth cache).
    for ((name, kind, body), url) in cases.iter().zip(&urls) {
        for _ in 0..2 {
            let (status, v) = call("POST", url, Some(&a.access_token), Some(body)).await?;
            if status != 200 {
                bail!("{name}: {status} {v}");
            }
            direct_once(kind, body).await?;
        }
    }
    let mut figures: Vec<Figures> =
        cases.iter().map(|(name, _, _)| Figures { name, service: Vec::new(), direct: Vec::new() }).collect();
    for round in 0..runs {
        for (((name, kind, body), url), f) in cases.iter().zip(&urls).zip(figures.iter_mut()) {
            let t = Instant::now();
            let (status, _) = call("POST", url, Some(&a.access_token), Some(body)).await?;
            if status != 200 {
                bail!("{name}: {status}");
            }
            f.service.push(t.elapsed());
            let t = Instant::now();
            direct_once(kind, body).await?;
            f.direct.push(t.elapsed());
        }
        println!("  round {} of {runs} done", round + 1);
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!(
        "{total} events (100,000 users, {persons_share} % of them anonymous for their first 15 days then identified, 30 days; {} in the queried project), {runs} runs each:",
        total - total / 10
    );
    println!();
    println!(
        "| query | service p50 ms | service p99 ms | in-process p50 ms | in-process p99 ms | service overhead p50 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for f in &figures {
        let (s50, s99, d50, d99) = (
            percentile(&f.service, 0.5),
            percentile(&f.service, 0.99),
            percentile(&f.direct, 0.5),
            percentile(&f.direct, 0.99),
        );
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            f.name,
            ms(s50),
            ms(s99),
            ms(d50),
            ms(d99),
            ms(s50) - ms(d50)
        );
    }
    Ok(())
}
