//! A key's rate limit holds for the platform, not per capture replica: two captures that know
//! they are two let through what one would (issue 25), and a capture counts its replicas from
//! the addresses a name resolves to (`CAIRN_CAPTURE_PEERS`, a headless Service under the
//! operator).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_e2e::{Pipeline, TestClickHouse, TestKafka};
use serde_json::json;

/// Sends 10-event batches with `key` to each capture in turn, as fast as answers come, for
/// `window`; returns the events accepted.
async fn flood(urls: &[String], key: &str, window: Duration) -> u64 {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut accepted = 0;
    let mut n = 0u64;
    while started.elapsed() < window {
        let url = &urls[(n as usize) % urls.len()];
        let batch: Vec<_> = (0..10).map(|i| json!({"event": "rl", "distinct_id": format!("d{n}-{i}")})).collect();
        let status =
            http.post(url).json(&json!({"api_key": key, "batch": batch})).send().await.map(|r| r.status().as_u16());
        match status {
            Ok(200) => accepted += 10,
            Ok(429) => {}
            other => panic!("capture answered {other:?}"),
        }
        n += 1;
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_keys_rate() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_shared=1");
    p.set("CAIRN_CAPTURE_RATE_LIMIT_PER_SECOND", "200").set("CAIRN_CAPTURE_RATE_LIMIT_BURST", "200");
    p.set("CAIRN_CAPTURE_REPLICAS", "2");
    let (a, b) = (p.capture().await.unwrap(), p.capture().await.unwrap());
    let window = Duration::from_secs(3);
    let accepted = flood(&[a.url("/batch"), b.url("/batch")], "phc_shared", window).await;
    // The platform's allowance over the window: the burst and the rate (200 + 200 × 3 = 800);
    // each replica alone would have allowed that much (1,600 together).
    println!("two replicas sharing 200/s, burst 200: {accepted} events accepted in {window:?}");
    assert!((600..=1000).contains(&accepted), "{accepted} events accepted; the platform allows about 800");
    for s in [&a, &b] {
        let metrics = reqwest::get(s.url("/metrics")).await.unwrap().text().await.unwrap();
        assert!(metrics.contains("cairn_capture_rate_limit_replicas 2"), "{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_counts_its_peers_by_name() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_peers=1");
    // `localhost` resolves to one or two addresses here, as a headless Service to its pods.
    p.set("CAIRN_CAPTURE_PEERS", "localhost").set("CAIRN_CAPTURE_REPLICAS", "7");
    let capture = p.capture().await.unwrap();
    let want: BTreeSet<_> = tokio::net::lookup_host(("localhost", 0)).await.unwrap().map(|a| a.ip()).collect();
    let metrics = reqwest::get(capture.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(&format!("cairn_capture_rate_limit_replicas {}", want.len())),
        "want {} (the addresses of localhost), the peers name wins over CAIRN_CAPTURE_REPLICAS: {metrics}",
        want.len()
    );
}
