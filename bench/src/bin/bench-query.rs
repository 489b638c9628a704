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
//! Then (RESOLUTION=0 skips it) it compares person resolution at query time with person ids written
//! at ingestion, on a copy of the events ([`resolution`]).

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
        cluster: None,
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
    // The properties the analyses filter and break down by, as columns (PROPERTY_COLUMNS, empty
    // for none: the JSON is parsed as before), added after the load so that their backfill — a
    // background mutation — is measured too; the figures are taken once it is done.
    let columns: Vec<String> = std::env::var("PROPERTY_COLUMNS")
        .unwrap_or_else(|_| "browser,path".into())
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    if !columns.is_empty() {
        let started = Instant::now();
        let client = cairn_common::clickhouse::client(&ch_cfg);
        let report = cairn_common::clickhouse::ensure_property_columns(
            &client,
            &cairn_common::clickhouse::Topology::Single,
            &columns,
        )
        .await?;
        while cairn_common::clickhouse::property_backfills_running(&client, &cairn_common::clickhouse::Topology::Single)
            .await?
            > 0
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "property columns {:?} added and backfilled over {total} events in {:.1} s",
            report.added,
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("no property columns (PROPERTY_COLUMNS empty): properties are parsed from JSON");
    }

    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), ch.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), database.clone());
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;
    let engine = Engine {
        ch: cairn_common::clickhouse::client(&ch_cfg),
        source: EventsSource::new(true),
        by_person: Default::default(),
        changed: Default::default(),
        comment: None,
        limits: Limits::default(),
        timeout: Duration::from_secs(60),
    };
    let project = a.project_id as u64;
    // The in-process path reads the columns as the service does.
    cairn_query::materialized::refresh(&engine.ch).await?;

    let trend = json!({"series": [{"event": "pageview"}], "date_from": "-30d", "interval": "day"});
    let trend_persons =
        json!({"series": [{"event": "pageview", "math": "unique_users"}], "date_from": "-30d", "interval": "day"});
    let trend_plan = json!({"series": [{"event": "pageview"}], "date_from": "-30d", "interval": "day", "filters": [{"key": "plan", "value": "pro", "type": "person"}]});
    let breakdown = json!({"series": [{"event": "pageview"}], "date_from": "-30d", "interval": "day", "breakdown": {"property": "browser", "limit": 5}});
    let trend_filtered = json!({"series": [{"event": "pageview"}], "date_from": "-30d", "interval": "day", "filters": [{"key": "browser", "value": "Chrome"}]});
    let funnel = json!({"steps": [{"event": "pageview"}, {"event": "view_item"}, {"event": "purchase"}], "date_from": "-30d", "conversion_window": {"value": 1, "unit": "day"}});
    let funnel_by_browser = json!({"steps": [{"event": "pageview"}, {"event": "view_item"}, {"event": "purchase"}], "date_from": "-30d", "conversion_window": {"value": 1, "unit": "day"}, "breakdown": {"property": "browser", "limit": 5}});
    let funnel_strict = json!({"steps": [{"event": "pageview"}, {"event": "view_item"}, {"event": "purchase"}], "date_from": "-30d", "conversion_window": {"value": 1, "unit": "day"}, "order": "strict"});
    let retention = json!({"target_event": {"event": "signup"}, "returning_event": {"event": "pageview"}, "period": "day", "periods": 14});
    let mut cases: Vec<(&'static str, &str, Value)> = vec![
        ("30-day daily trend", "trends", trend),
        ("30-day daily unique persons", "trends", trend_persons),
        ("30-day trend, person property filter", "trends", trend_plan),
        ("30-day trend, breakdown by browser", "trends", breakdown),
        ("30-day trend, filter browser = Chrome", "trends", trend_filtered),
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
    // For the capacity model (bench/results/query.json, docs/CAPACITY.md).
    let results = std::env::var("RESULTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| cairn_e2e::repo_root().join(".stack/bench/query.json"));
    let analyses: Vec<Value> = figures
        .iter()
        .map(|f| {
            json!({"name": f.name, "service_p50_ms": ms(percentile(&f.service, 0.5)), "in_process_p50_ms": ms(percentile(&f.direct, 0.5))})
        })
        .collect();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let out = json!({"machine": machine(), "cores": cores, "events": total, "events_queried": total - total / 10, "runs": runs, "analyses": analyses});
    if let Some(dir) = results.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&results, serde_json::to_string_pretty(&out)? + "\n")?;
    println!("\nwritten to {}", results.display());
    if env_or("RESOLUTION", 1) == 1 {
        resolution(&ch, &database, a.project_id, runs).await?;
    }
    Ok(())
}

/// Person resolution at query time (Cairn: each event's distinct id hash through the override
/// table) against the alternative issue 20 names, person ids written on events at ingestion
/// (PostHog's "persons on events"): with an override table for the merges that came after the
/// events were written, and after those overrides were squashed into the events. The same
/// events in one table (`events_resolution`, ordered like `events`) carry the distinct id, the
/// person id as ingestion would have written it (the anonymous person, for the events before
/// the login) and the final person; each variant reads only its own columns. ClickHouse alone
/// (no service), the same rounds interleaved.
async fn resolution(ch: &TestClickHouse, database: &str, project: i64, runs: usize) -> Result<()> {
    let db = ch.db(database);
    println!();
    println!("person resolution: copying the events with ingestion-time person ids ...");
    db.rows(
        "CREATE TABLE events_resolution (uuid UUID, project_id UInt64, event LowCardinality(String), \
         distinct_id String, timestamp DateTime64(3), person_at_ingestion UInt64, person_squashed UInt64) \
         ENGINE = MergeTree ORDER BY (project_id, event, toDate(timestamp), cityHash64(distinct_id), uuid)",
    )
    .await?;
    for part in 0..10 {
        db.rows(&format!(
            "INSERT INTO events_resolution SELECT e.uuid, e.project_id, e.event, e.distinct_id, e.timestamp, \
             cityHash64(e.distinct_id), if(o.person_id = 0, cityHash64(e.distinct_id), o.person_id) \
             FROM events AS e LEFT JOIN (SELECT project_id, id_hash, argMax(person_id, version) AS person_id \
             FROM person_overrides GROUP BY project_id, id_hash) AS o \
             ON e.project_id = o.project_id AND cityHash64(e.distinct_id) = o.id_hash \
             WHERE cityHash64(e.uuid) % 10 = {part}"
        ))
        .await?;
    }
    db.rows("OPTIMIZE TABLE events_resolution FINAL").await?;
    let overrides = format!(
        "(SELECT id_hash, argMax(person_id, version) AS person_id FROM person_overrides WHERE project_id = {project} GROUP BY id_hash)"
    );
    let scope = format!("project_id = {project} AND timestamp >= now64(3) - toIntervalDay(30)");
    // Each variant: how an event's person is read, and what it joins.
    let variants = [
        ("query time (Cairn): distinct id hash → overrides", "cityHash64(distinct_id)", true),
        ("ingestion time, with overrides for later merges", "person_at_ingestion", true),
        ("ingestion time, overrides squashed into events", "person_squashed", false),
    ];
    let person_sql = |key: &str, join: bool, columns: &str, filter: &str| {
        if join {
            format!(
                "SELECT if(o.person_id = 0, e.k, o.person_id) AS person, {columns} FROM \
                 (SELECT {key} AS k, {columns} FROM events_resolution WHERE {scope} AND {filter}) AS e \
                 LEFT JOIN {overrides} AS o ON e.k = o.id_hash"
            )
        } else {
            format!("SELECT {key} AS person, {columns} FROM events_resolution WHERE {scope} AND {filter}")
        }
    };
    type Build<'a> = Box<dyn Fn(&str, bool) -> String + 'a>;
    let analyses: Vec<(&str, Build)> = vec![
        (
            "30-day daily unique persons",
            Box::new(|key, join| {
                format!(
                    "SELECT toStartOfDay(timestamp) AS b, uniqExact(person) FROM ({}) GROUP BY b",
                    person_sql(key, join, "timestamp", "event = 'pageview'")
                )
            }),
        ),
        (
            "3-step funnel by person (windowFunnel, 1 day)",
            Box::new(|key, join| {
                format!(
                    "SELECT level, count() FROM (SELECT person, windowFunnel(86400)(toDateTime(timestamp), \
                     event = 'pageview', event = 'view_item', event = 'purchase') AS level FROM ({}) GROUP BY person) \
                     GROUP BY level",
                    person_sql(key, join, "timestamp, event", "event IN ('pageview', 'view_item', 'purchase')")
                )
            }),
        ),
    ];
    // The answers must agree between the query-time variant and the squashed one (the ingestion
    // time one with overrides is the same by construction).
    for (name, build) in &analyses {
        let q = build(variants[0].1, variants[0].2) + " ORDER BY 1 FORMAT JSONEachRow";
        let s = build(variants[2].1, variants[2].2) + " ORDER BY 1 FORMAT JSONEachRow";
        if db.rows(&q).await? != db.rows(&s).await? {
            bail!("{name}: the variants disagree");
        }
    }
    let mut times = vec![vec![Vec::new(); variants.len()]; analyses.len()];
    for round in 0..runs + 2 {
        for (a, (_, build)) in analyses.iter().enumerate() {
            for (v, (_, key, join)) in variants.iter().enumerate() {
                let sql = build(key, *join);
                let t = Instant::now();
                db.rows(&sql).await?;
                if round >= 2 {
                    times[a][v].push(t.elapsed());
                }
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("person resolution, ClickHouse only, {runs} runs each (p50 / p99 ms):");
    println!();
    println!("| analysis | {} |", variants.iter().map(|v| v.0).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---:|".repeat(variants.len()));
    for (a, (name, _)) in analyses.iter().enumerate() {
        let cells: Vec<String> = times[a]
            .iter()
            .map(|t| format!("{:.1} / {:.1}", ms(percentile(t, 0.5)), ms(percentile(t, 0.99))))
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    Ok(())
}
