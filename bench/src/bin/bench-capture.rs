//! `make bench-capture`: how many events per second capture accepts with Kafka's
//! acknowledgement, at what latency, and how fresh they are in ClickHouse.
//!
//! It starts a private Kafka broker and ClickHouse server (the stack scripts), Cairn's release
//! binaries of capture and consumer, and drives capture over loopback HTTP:
//!
//! 1. single events, closed loop, `CONCURRENCY` connections, `SECONDS` seconds;
//! 2. batches of 50, closed loop, the same;
//! 3. batches of 50 at half the 50,000 events/s target (or half the rate measured in 2, if
//!    lower; `PACED_EVENTS_PER_SECOND` sets another), open loop (latency without queueing);
//!    freshness is measured on the events of this phase, from capture's receipt (`received_at`)
//!    to the row's insertion into ClickHouse (`ingested_at`).
//!
//! Everything shares this machine's cores: the load generator, capture, Kafka, the consumer and
//! ClickHouse. Figures are printed, not asserted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cairn_bench::{cpu_seconds, env_or, machine, percentile};
use cairn_e2e::{wait_until, Pipeline, Service, TestClickHouse, TestKafka};
use serde_json::{json, Value};

struct PhaseResult {
    events: u64,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl PhaseResult {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

fn body(batch: usize, phase: &str) -> Vec<u8> {
    let event = |i: usize| {
        json!({"event": "bench", "distinct_id": format!("user-{}", i % 1000),
               "properties": {"phase": phase, "$current_url": "https://example.com/pricing", "plan": "pro", "n": i, "flag": true}})
    };
    let v = if batch == 1 {
        let mut e = event(0);
        e["api_key"] = json!("phc_bench");
        e
    } else {
        json!({"api_key": "phc_bench", "batch": (0..batch).map(event).collect::<Vec<Value>>()})
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Closed loop: `concurrency` workers each send, wait for the answer, and send again.
async fn closed_loop(url: &str, batch: usize, concurrency: usize, duration: Duration, phase: &str) -> PhaseResult {
    println!("phase {phase}: batches of {batch}, {concurrency} connections, closed loop, {}s", duration.as_secs());
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap_or_default();
    let payload = Arc::new(body(batch, phase));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let http = http.clone();
        let url = url.to_string();
        let payload = Arc::clone(&payload);
        workers.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::new());
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(payload.as_ref().clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        ok += 1;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (ok, errors, lat)
        }));
    }
    let mut result = PhaseResult { events: 0, requests: 0, errors: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
    for w in workers {
        if let Ok((ok, errors, lat)) = w.await {
            result.requests += ok;
            result.events += ok * batch as u64;
            result.errors += errors;
            result.latencies.extend(lat);
        }
    }
    result.elapsed = started.elapsed();
    result
}

/// Open loop: requests leave at a fixed rate whether or not earlier ones have been answered.
async fn open_loop(url: &str, batch: usize, events_per_second: f64, duration: Duration, phase: &str) -> PhaseResult {
    println!("phase {phase}: batches of {batch}, {events_per_second:.0} events/s, open loop, {}s", duration.as_secs());
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap_or_default();
    let payload = Arc::new(body(batch, phase));
    let interval = Duration::from_secs_f64(batch as f64 / events_per_second);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    while started.elapsed() < duration {
        ticker.tick().await;
        let http = http.clone();
        let url = url.to_string();
        let payload = Arc::clone(&payload);
        let (ok, errors) = (Arc::clone(&ok), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            match http.post(&url).header("Content-Type", "application/json").body(payload.as_ref().clone()).send().await
            {
                Ok(r) if r.status() == 200 => {
                    ok.fetch_add(1, Ordering::Relaxed);
                    Some(t.elapsed())
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        if let Ok(Some(l)) = t.await {
            latencies.push(l);
        }
    }
    let requests = ok.load(Ordering::Relaxed);
    PhaseResult {
        events: requests * batch as u64,
        requests,
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies,
    }
}

/// The cumulative buckets (`le` in seconds, count) of some of capture's Prometheus histograms,
/// from one scrape of its `/metrics`, in the order of `names`.
async fn histograms(capture: &Service, names: &[&str]) -> Result<Vec<Vec<(f64, f64)>>> {
    let text = reqwest::get(capture.url("/metrics")).await?.text().await?;
    Ok(names
        .iter()
        .map(|name| {
            let prefix = format!("{name}_bucket{{le=\"");
            text.lines()
                .filter_map(|l| l.strip_prefix(&prefix))
                .filter_map(|l| {
                    let (le, count) = l.split_once("\"} ")?;
                    let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                    Some((le, count.trim().parse().ok()?))
                })
                .collect()
        })
        .collect())
}

/// The bucket bound under which the `q` quantile of the observations between two scrapes lies.
fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> String {
    let delta: Vec<(f64, f64)> =
        after.iter().map(|&(le, n)| (le, n - before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1))).collect();
    let total = delta.last().map_or(0.0, |d| d.1);
    match delta.iter().find(|d| d.1 >= q * total) {
        Some((le, _)) if le.is_finite() => format!("≤ {} ms", le * 1000.0),
        _ => "over the largest bucket".into(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let seconds = Duration::from_secs(env_or("SECONDS", 20));
    let concurrency = env_or("CONCURRENCY", 32) as usize;
    println!("machine: {}", machine());
    println!("starting a private Kafka broker and ClickHouse server ...");
    let kafka = TestKafka::dedicated("bench")?;
    let ch = TestClickHouse::dedicated("bench")?;
    let mut p = Pipeline::new(&kafka, &ch, "phc_bench=1");
    p.set("CAIRN_CAPTURE_RATE_LIMIT_PER_SECOND", "0")
        .set("CAIRN_CONSUMER_BATCH_MAX_AGE_MS", env_or("CONSUMER_BATCH_MAX_AGE_MS", 500).to_string())
        .set("CAIRN_CONSUMER_BATCH_MAX_EVENTS", "10000");
    let _consumer = p.consumer().await?;
    let capture = p.capture().await?;
    let url = capture.url("/batch");

    // Warm-up: connections, producer batches, and above all the broker's JIT compiler, which
    // otherwise takes a core for its first half minute.
    let warmup = Duration::from_secs(env_or("WARMUP_SECONDS", 20));
    let warmed = closed_loop(&url, 50, concurrency, warmup, "warmup").await;

    let single = closed_loop(&url, 1, concurrency, seconds, "single").await;
    let batched = closed_loop(&url, 50, concurrency, seconds, "batch").await;
    // Half the 50,000 events/s target (or half the measured rate, if lower): a rate the whole
    // pipeline sustains. PACED_EVENTS_PER_SECOND sets another.
    let half = match env_or("PACED_EVENTS_PER_SECOND", 0) {
        0 => (batched.events_per_second() / 2.0).min(25_000.0),
        rate => rate as f64,
    };
    // Let the consumer drain what the throughput phases queued before measuring freshness.
    let db = ch.db(&p.database);
    // (A plain count, which the table's metadata answers: polling with a filter on the properties
    // kept ClickHouse busy parsing JSON into the paced phase.)
    let sent_so_far = warmed.events + single.events + batched.events;
    let _ = wait_until("the consumer to catch up", Duration::from_secs(300), || {
        let db = db.clone();
        async move { db.scalar("SELECT count() FROM events").await.unwrap_or(0) >= sent_so_far }
    })
    .await;
    // ...and let ClickHouse finish merging the parts that catching up left behind: the
    // throughput phases write three times the paced rate, and the merges they leave would
    // otherwise run during the paced phase, on the same two cores, as load that a steady
    // 25,000 events/s does not have (its own merges run during the phase as they would).
    let settle = Instant::now();
    let _ = wait_until("ClickHouse's merges to finish", Duration::from_secs(120), || {
        let db = db.clone();
        async move { db.scalar("SELECT count() FROM system.merges").await.is_ok_and(|n| n == 0) }
    })
    .await;
    println!("merges after the throughput phases settled in {:.1} s", settle.elapsed().as_secs_f64());
    const SERVER: [&str; 2] = ["cairn_capture_request_duration_seconds", "cairn_capture_kafka_ack_duration_seconds"];
    let server_before = histograms(&capture, &SERVER).await?;
    let cpu_before = capture.pid().and_then(cpu_seconds);
    let paced = open_loop(&url, 50, half, seconds, "paced").await;
    let cpu_after = capture.pid().and_then(cpu_seconds);
    let server_after = histograms(&capture, &SERVER).await?;

    let want = paced.events;
    wait_until("the paced events in ClickHouse", Duration::from_secs(120), || {
        let db = db.clone();
        async move {
            db.scalar("SELECT count() FROM events WHERE JSONExtractString(properties, 'phase') = 'paced'")
                .await
                .unwrap_or(0)
                >= want
        }
    })
    .await?;
    let fresh = db
        .rows(
            "SELECT quantileExact(0.5)(dateDiff('millisecond', received_at, ingested_at)) AS p50, \
                    quantileExact(0.99)(dateDiff('millisecond', received_at, ingested_at)) AS p99, \
                    max(dateDiff('millisecond', received_at, ingested_at)) AS max \
             FROM events WHERE JSONExtractString(properties, 'phase') = 'paced'",
        )
        .await?;
    let f = fresh.first().cloned().unwrap_or(Value::Null);
    let total_rows = db.scalar("SELECT count() FROM events FINAL").await?;
    let total_sent = db.scalar("SELECT count() FROM events").await?;
    if total_rows != total_sent {
        bail!("duplicates: {total_sent} rows stored, {total_rows} distinct");
    }

    println!();
    println!("| phase | events/s | requests/s | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("single events, closed loop", &single),
        ("batches of 50, closed loop", &batched),
        ("batches of 50, paced (open loop)", &paced),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {} | {} | {} |",
            r.events_per_second(),
            r.requests as f64 / r.elapsed.as_secs_f64(),
            ms(r.percentile(0.5)),
            ms(r.percentile(0.99)),
            r.errors
        );
    }
    println!();
    println!(
        "freshness (capture receipt → row in ClickHouse) at {:.0} events/s: p50 {} ms, p99 {} ms, max {} ms",
        half, f["p50"], f["p99"], f["max"]
    );
    println!(
        "paced latency: p90 {} ms, p99.9 {} ms, max {} ms",
        ms(paced.percentile(0.9)),
        ms(paced.percentile(0.999)),
        ms(paced.percentile(1.0))
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        let used = b - a;
        println!(
            "capture's CPU in the paced phase: {:.0} % of a core, {:.1} µs per event",
            100.0 * used / paced.elapsed.as_secs_f64(),
            1e6 * used / paced.events.max(1) as f64
        );
    }
    // Where in the phase the tail falls (requests in the order they were sent, in 5 s slices).
    let per_slice = (half / 50.0 * 5.0).max(1.0) as usize;
    let slices: Vec<String> = paced.latencies.chunks(per_slice).map(|c| ms(percentile(c, 0.99))).collect();
    println!("paced p99 per 5 s, in order: {} ms", slices.join(", "));
    // Inside capture, from its own histograms (so coarse: bounds of power-of-two buckets): the
    // part of the latency spent between receiving a request and answering it, and within that
    // waiting for Kafka's acknowledgement. The rest is HTTP and the load generator's own scheduling.
    for (i, what) in ["capture's handling (request to answer)", "Kafka's acknowledgement"].iter().enumerate() {
        println!(
            "paced, inside capture — {what}: p50 {}, p90 {}, p99 {}",
            bucket_quantile(&server_before[i], &server_after[i], 0.5),
            bucket_quantile(&server_before[i], &server_after[i], 0.9),
            bucket_quantile(&server_before[i], &server_after[i], 0.99)
        );
    }
    println!("{total_rows} events stored, no duplicates; concurrency {concurrency}, {}s per phase", seconds.as_secs());
    Ok(())
}
