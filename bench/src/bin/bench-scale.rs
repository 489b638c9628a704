//! `make bench-scale`: one, two and three captures and consumers on one topic, and what each
//! event costs — the inputs of the capacity model (docs/CAPACITY.md, `cargo run -p cairn-bench
//! --bin capacity`).
//!
//! It starts a private Kafka broker and ClickHouse server (the stack scripts) and, for each
//! `N` in 1..=`MAX_PROCESSES` (default 3), a fresh topic of `PARTITIONS` partitions (default 12),
//! database and consumer group, with N capture and N consumer processes (release binaries):
//!
//! 1. capture: batches of 50 from `CONCURRENCY` connections spread over the N captures, closed
//!    loop, `SECONDS` seconds, with the consumers stopped — events/s acknowledged by Kafka, and the
//!    CPU of the captures and of the broker per event;
//! 2. consumers: the N consumers start on that backlog; the time until every event is in
//!    ClickHouse gives events/s, and the CPU of the consumers, the broker and ClickHouse per event.
//!
//! Then the bytes an event takes: in Kafka (the topic's log segments, LZ4-compressed batches as
//! capture's producer writes them) and in ClickHouse (every table of the database, compressed,
//! after merges). The figures are printed, and written as JSON to `RESULTS` (default
//! `.stack/bench/scale.json`) for the capacity model. Everything shares this machine's cores:
//! the load generator, the captures, the broker, the consumers and ClickHouse.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_bench::{cpu_seconds, env_or, machine};
use cairn_e2e::{wait_until, Pipeline, Service, TestClickHouse, TestKafka};
use serde_json::{json, Value};

/// A body of `batch` events, as a web SDK sends them: page views, clicks and a few conversions
/// from 10,000 users, with the properties a browser library sets (URL, referrer, browser, OS,
/// screen, session, window and device ids, an insert id), drawn afresh for every request from the
/// connection's own xorshift generator — so that the bytes per event in Kafka and ClickHouse are
/// those of varied traffic, not of a few events repeated (which compress to almost nothing).
/// About 700 bytes of JSON an event.
fn body(state: &mut u64, batch: usize) -> Vec<u8> {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    let pick = |r: u64, items: &[&'static str]| items[(r % items.len() as u64) as usize];
    let hex = |a: u64, b: u64| format!("{a:016x}{b:016x}");
    {
        {
            let events: Vec<Value> = (0..batch)
                .map(|_| {
                    let user = next() % 10_000;
                    let event = pick(
                        next(),
                        &[
                            "$pageview",
                            "$pageview",
                            "$pageview",
                            "$pageview",
                            "$autocapture",
                            "$autocapture",
                            "$pageleave",
                            "signup",
                            "add_to_cart",
                            "purchase",
                        ],
                    );
                    let path = format!(
                        "/{}/{}",
                        pick(next(), &["products", "blog", "docs", "pricing", "account", "cart", "search"]),
                        next() % 300
                    );
                    let referrer = pick(
                        next(),
                        &[
                            "$direct",
                            "https://www.google.com/",
                            "https://news.ycombinator.com/",
                            "https://twitter.com/",
                            "https://www.bing.com/",
                            "https://github.com/",
                        ],
                    );
                    let browser = pick(next(), &["Chrome", "Chrome", "Chrome", "Safari", "Firefox", "Edge"]);
                    let os = pick(next(), &["Windows", "Mac OS X", "Linux", "iOS", "Android"]);
                    let mobile = matches!(os, "iOS" | "Android");
                    let (w, h) = if mobile {
                        (390 + next() % 40, 844 + next() % 80)
                    } else {
                        (1280 + next() % 1280, 720 + next() % 720)
                    };
                    let mut props = json!({
                        "$current_url": format!("https://shop.example.com{path}?ref={}", next() % 50),
                        "$pathname": path,
                        "$host": "shop.example.com",
                        "$referrer": referrer,
                        "$referring_domain": referrer.split('/').nth(2).unwrap_or("$direct"),
                        "$browser": browser,
                        "$browser_version": 100 + next() % 30,
                        "$os": os,
                        "$os_version": format!("{}.{}", 10 + next() % 8, next() % 10),
                        "$device_type": if mobile { "Mobile" } else { "Desktop" },
                        "$screen_width": w, "$screen_height": h,
                        "$viewport_width": w - next() % 40, "$viewport_height": h - 80 - next() % 60,
                        "$lib": "web", "$lib_version": "1.4.2",
                        "$device_id": hex(user, 0xD00D),
                        "$session_id": hex(user, next() % 4),
                        "$window_id": hex(user, next() % 16),
                        "$insert_id": format!("{:016x}", next()),
                        "$time": 1_764_900_000.0 + (next() % 86_400_000) as f64 / 1000.0,
                        "plan": pick(next(), &["free", "free", "pro", "team"]),
                    });
                    if event == "purchase" || event == "add_to_cart" {
                        props["price"] = json!((next() % 20_000) as f64 / 100.0);
                        props["currency"] = json!("USD");
                        props["product_id"] = json!(format!("sku-{}", next() % 2_000));
                    }
                    if event == "$autocapture" {
                        props["$event_type"] = json!("click");
                        props["$el_text"] =
                            json!(pick(next(), &["Add to cart", "Sign up", "Learn more", "Checkout", "Next"]));
                    }
                    json!({"event": event, "distinct_id": format!("user-{user}"), "properties": props})
                })
                .collect();
            serde_json::to_vec(&json!({"api_key": "phc_bench", "batch": events})).unwrap_or_default()
        }
    }
}

/// Closed loop over several captures, each connection sending the bodies in turn: returns the
/// events acknowledged and the requests that failed.
async fn closed_loop(urls: &[String], batch: usize, concurrency: usize, duration: Duration) -> (u64, u64) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap_or_default();
    let deadline = Instant::now() + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let http = http.clone();
        let url = format!("{}/batch", urls[w % urls.len()]);
        workers.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((w as u64 + 1) << 32) ^ rand_seed();
            while Instant::now() < deadline {
                let r =
                    http.post(&url).header("Content-Type", "application/json").body(body(&mut rng, batch)).send().await;
                match r {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => errors += 1,
                }
            }
            (ok, errors)
        }));
    }
    let (mut ok, mut errors) = (0, 0);
    for w in workers {
        if let Ok((o, e)) = w.await {
            ok += o;
            errors += e;
        }
    }
    (ok * batch as u64, errors)
}

/// A seed that differs between runs (the clock), so two runs do not send the same events.
fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
}

fn pid_file(path: PathBuf) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// CPU seconds of a set of processes.
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| cpu_seconds(*p)).sum()
}

/// The bytes of a topic's partitions on the broker's disk.
fn topic_bytes(kafka: &TestKafka, topic: &str) -> u64 {
    let Ok(dirs) = std::fs::read_dir(kafka.dir.join("data")) else { return 0 };
    let mut total = 0;
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        if name.rsplit_once('-').is_some_and(|(t, p)| t == topic && p.parse::<u32>().is_ok()) {
            for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
                if f.file_name().to_string_lossy().ends_with(".log") {
                    total += f.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
    }
    total
}

#[tokio::main]
async fn main() -> Result<()> {
    let seconds = Duration::from_secs(env_or("SECONDS", 20));
    let concurrency = env_or("CONCURRENCY", 32) as usize;
    let max_processes = env_or("MAX_PROCESSES", 3) as usize;
    let partitions = env_or("PARTITIONS", 12);
    let results = std::env::var("RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| cairn_e2e::repo_root().join(".stack/bench/scale.json"));
    let machine = machine();
    println!("machine: {machine}");
    println!("starting a private Kafka broker and ClickHouse server ...");
    let kafka = TestKafka::dedicated("scale")?;
    let ch = TestClickHouse::dedicated("scale")?;
    let mut sample_rng = 1u64;
    let bytes: usize = (0..100).map(|_| body(&mut sample_rng, 50).len()).sum();
    let json_bytes_per_event = bytes as f64 / (100.0 * 50.0);
    println!("events: {json_bytes_per_event:.0} bytes of JSON each on average");
    let broker_pid = pid_file(kafka.dir.join("kafka.pid")).context("the broker's pid")?;
    let ch_pid = pid_file(ch.dir.join("chserver.pid")).context("ClickHouse's pid")?;

    // Warm-up: the broker's JIT takes a core for its first half minute.
    {
        let mut p = Pipeline::new(&kafka, &ch, "phc_bench=1");
        p.set("CAIRN_CAPTURE_RATE_LIMIT_PER_SECOND", "0");
        let capture = p.capture().await?;
        let warmup = Duration::from_secs(env_or("WARMUP_SECONDS", 20));
        println!("warm-up: {} s", warmup.as_secs());
        closed_loop(&[capture.url("")], 50, concurrency, warmup).await;
    }

    let mut rows = Vec::new();
    for n in 1..=max_processes {
        let mut p = Pipeline::new(&kafka, &ch, "phc_bench=1");
        p.set("CAIRN_CAPTURE_RATE_LIMIT_PER_SECOND", "0")
            .set("CAIRN_KAFKA_TOPIC_PARTITIONS", partitions.to_string())
            .set("CAIRN_CONSUMER_BATCH_MAX_EVENTS", "10000")
            .set("CAIRN_CONSUMER_BATCH_MAX_AGE_MS", "500");
        // The schema and the topic first, by one consumer, stopped before the load.
        let mut first = p.consumer().await?;
        first.terminate(Duration::from_secs(30))?;
        let mut captures = Vec::new();
        for _ in 0..n {
            captures.push(p.capture().await?);
        }
        let urls: Vec<String> = captures.iter().map(|c| c.url("")).collect();
        let capture_pids: Vec<u32> = captures.iter().filter_map(Service::pid).collect();

        println!("{n} capture(s): closed loop, batches of 50, {concurrency} connections, {} s", seconds.as_secs());
        let (cap0, broker0) = (cpu_of(&capture_pids), cpu_of(&[broker_pid]));
        let started = Instant::now();
        let (events, errors) = closed_loop(&urls, 50, concurrency, seconds).await;
        let elapsed = started.elapsed().as_secs_f64();
        let (cap1, broker1) = (cpu_of(&capture_pids), cpu_of(&[broker_pid]));
        drop(captures);

        println!("{n} consumer(s) on a backlog of {events} events ...");
        let mut consumers = Vec::new();
        for _ in 0..n {
            consumers.push(Service::start("consumer", &p.env).await?);
        }
        let consumer_pids: Vec<u32> = consumers.iter().filter_map(Service::pid).collect();
        let (con0, broker_c0, ch0) = (cpu_of(&consumer_pids), cpu_of(&[broker_pid]), cpu_of(&[ch_pid]));
        let db = ch.db(&p.database);
        let drain_started = Instant::now();
        wait_until("every event in ClickHouse", Duration::from_secs(900), || {
            let db = db.clone();
            async move { db.scalar("SELECT count() FROM events").await.unwrap_or(0) >= events }
        })
        .await?;
        let drained = drain_started.elapsed().as_secs_f64();
        let (con1, broker_c1, ch1) = (cpu_of(&consumer_pids), cpu_of(&[broker_pid]), cpu_of(&[ch_pid]));
        drop(consumers);

        let stored = db.scalar("SELECT count() FROM events FINAL").await?;
        if stored != events {
            bail!("{stored} distinct events stored for {events} acknowledged");
        }
        db.rows("OPTIMIZE TABLE events FINAL").await?;
        db.rows("OPTIMIZE TABLE events_by_person FINAL").await?;
        let ch_bytes = db
            .scalar("SELECT sum(data_compressed_bytes) FROM system.parts WHERE database = currentDatabase() AND active")
            .await?;
        let kafka_bytes = topic_bytes(&kafka, &p.topic);
        let per_event_us = |cpu: f64| 1e6 * cpu / events.max(1) as f64;
        let row = json!({
            "processes": n,
            "partitions": partitions,
            "events": events,
            "capture_errors": errors,
            "capture_events_per_second": events as f64 / elapsed,
            "capture_cpu_us_per_event": per_event_us(cap1 - cap0),
            "broker_produce_cpu_us_per_event": per_event_us(broker1 - broker0),
            "consumer_events_per_second": events as f64 / drained,
            "consumer_cpu_us_per_event": per_event_us(con1 - con0),
            "broker_fetch_cpu_us_per_event": per_event_us(broker_c1 - broker_c0),
            "clickhouse_insert_cpu_us_per_event": per_event_us(ch1 - ch0),
            "kafka_bytes_per_event": kafka_bytes as f64 / events.max(1) as f64,
            "clickhouse_bytes_per_event": ch_bytes as f64 / events.max(1) as f64,
        });
        println!("  {row}");
        rows.push(row);
    }

    println!();
    println!("| processes | capture events/s | capture µs/event | broker µs/event (in + out) | consumer events/s | consumer µs/event | ClickHouse insert µs/event | Kafka B/event | ClickHouse B/event |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        println!(
            "| {} | {:.0} | {:.1} | {:.1} + {:.1} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} |",
            r["processes"],
            f("capture_events_per_second"),
            f("capture_cpu_us_per_event"),
            f("broker_produce_cpu_us_per_event"),
            f("broker_fetch_cpu_us_per_event"),
            f("consumer_events_per_second"),
            f("consumer_cpu_us_per_event"),
            f("clickhouse_insert_cpu_us_per_event"),
            f("kafka_bytes_per_event"),
            f("clickhouse_bytes_per_event"),
        );
    }
    let out = json!({
        "machine": machine,
        "seconds": seconds.as_secs(),
        "concurrency": concurrency,
        "json_bytes_per_event": json_bytes_per_event,
        "runs": rows
    });
    if let Some(dir) = results.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&results, serde_json::to_string_pretty(&out)? + "\n")?;
    println!("\nwritten to {}", results.display());
    Ok(())
}
