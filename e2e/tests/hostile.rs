//! Hostile clients against the real capture service (with the test stack's Kafka and
//! ClickHouse): bombs that expand into millions of values, floods of guessed keys, requests larger
//! than any limit, lying compression parameters, slow and silent connections. Each is refused
//! with a clear answer and bounded memory; nothing accepted is lost or doubled. Capture's memory
//! is read from /proc (VmHWM: the process's peak resident set).

use std::time::{Duration, Instant};

use cairn_e2e::{gzip, topic_record_count, wait_until, Pipeline, TestClickHouse, TestKafka};
use serde_json::{json, Value};

/// A process's (current resident, peak resident) memory in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn post(http: &reqwest::Client, url: String, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = http.post(url).body(body).timeout(Duration::from_secs(60));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_are_refused_within_bounded_memory() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_ok=1");
    p.set("CAIRN_CAPTURE_MEMORY_BUDGET_MB", "128");
    let capture = p.capture().await.unwrap();
    let pid = capture.pid().unwrap();
    let http = reqwest::Client::new();
    // Warm up (allocator arenas, the producer).
    let ok = json!({"api_key": "phc_ok", "event": "e", "distinct_id": "d"}).to_string().into_bytes();
    assert_eq!(post(&http, capture.url("/capture"), ok, &[]).await.0, 200);
    let (_, peak_before) = memory_mib(pid);

    // 1. An unknown key with 6.9 million empty events, 21 kB compressed: refused while splitting.
    let bomb = gzip(format!("[{}{{}}]", "{},".repeat(6_900_000)).as_bytes());
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let started = Instant::now();
    let (status, body) = post(&http, capture.url("/batch?api_key=phc_guess"), bomb.clone(), &[]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["message"].as_str().unwrap().contains("more than 10000 events"), "{body}");
    let took = started.elapsed();

    // 2. A valid key, one event of 5 million values (small compressed): over the event size limit.
    let dense = gzip(
        format!(r#"[{{"event":"e","distinct_id":"d","properties":{{"x":[{}0]}}}}]"#, "0,".repeat(5_000_000)).as_bytes(),
    );
    let (status, body) = post(&http, capture.url("/batch?api_key=phc_ok"), dense, &[]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["errors"][0]["index"], 0, "{body}");

    // 3. A valid key, 10,000 events of 150 values each: within every size limit, over the value
    //    budget (1,000,000 JSON keys and values per request).
    let event = json!({"event": "e", "distinct_id": "d", "properties": {"x": vec![0; 150]}}).to_string();
    let many = gzip(format!("[{}]", vec![event; 10_000].join(",")).as_bytes());
    let (status, body) = post(&http, capture.url("/batch?api_key=phc_ok"), many.clone(), &[]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["message"].as_str().unwrap().contains("JSON keys and values"), "{body}");

    // 4. Eight of those at once: the memory budget (128 MiB here) holds; some wait, some get 503.
    let sends = (0..8).map(|_| {
        let (http, url, body) = (http.clone(), capture.url("/batch?api_key=phc_ok"), many.clone());
        tokio::spawn(async move { post(&http, url, body, &[]).await.0 })
    });
    let statuses: Vec<u16> = futures::future::join_all(sends).await.into_iter().map(Result::unwrap).collect();
    assert!(statuses.iter().all(|s| *s == 413 || *s == 503), "{statuses:?}");
    let (rss, peak_after) = memory_mib(pid);
    println!("eight concurrent value bombs: {statuses:?}");
    println!(
        "capture memory: peak {peak_before:.1} MiB before the bombs, {peak_after:.1} MiB after (now {rss:.1} MiB); \
         the 6.9-million-event bomb was refused in {took:?}"
    );
    assert!(
        peak_after - peak_before < 200.0,
        "the bombs raised capture's peak memory by {:.1} MiB",
        peak_after - peak_before
    );
    assert_eq!(topic_record_count(&kafka.brokers(), &p.topic).unwrap(), 1, "nothing else was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessed_keys_cost_the_guesser_and_limits_are_requests_not_charges() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_ok=1");
    p.set("CAIRN_CAPTURE_UNKNOWN_KEYS_PER_MINUTE", "60")
        .set("CAIRN_CAPTURE_UNKNOWN_KEYS_BURST", "10")
        .set("CAIRN_CAPTURE_RATE_LIMIT_PER_SECOND", "300")
        .set("CAIRN_CAPTURE_RATE_LIMIT_BURST", "300")
        .set("CAIRN_CAPTURE_MAX_EVENTS_PER_REQUEST", "500");
    let capture = p.capture().await.unwrap();
    let http = reqwest::Client::new();
    let event = |key: &str| json!({"api_key": key, "event": "e", "distinct_id": "d"}).to_string().into_bytes();
    // One address guesses (behind the trusted local proxy; the fake entry on the left is its own).
    let attacker = [("x-forwarded-for", "1.2.3.4, 203.0.113.9")];
    let mut statuses = Vec::new();
    for i in 0..15 {
        statuses.push(post(&http, capture.url("/capture"), event(&format!("phc_guess_{i}")), &attacker).await.0);
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // Writing another left entry does not help; a valid key still works from that address.
    let spoof = [("x-forwarded-for", "198.51.100.77, 203.0.113.9")];
    assert_eq!(post(&http, capture.url("/capture"), event("phc_guess_x"), &spoof).await.0, 429);
    // Another address is not affected, and a proven key goes through from the guesser's address.
    let other = [("x-forwarded-for", "203.0.113.10")];
    assert_eq!(post(&http, capture.url("/capture"), event("phc_ok"), &other).await.0, 200);
    assert_eq!(post(&http, capture.url("/capture"), event("phc_ok"), &attacker).await.0, 200);

    // More events than the key's burst in one request: 413, not a 429 to retry for ever.
    let batch = |n: usize| {
        json!({"api_key": "phc_ok", "batch": vec![json!({"event": "e", "distinct_id": "d"}); n]})
            .to_string()
            .into_bytes()
    };
    let (status, body) = post(&http, capture.url("/batch"), batch(301), &[]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["message"].as_str().unwrap().contains("more than this key may send at once (300)"), "{body}");
    // More events than a request may carry.
    let (status, body) = post(&http, capture.url("/batch"), batch(501), &[]).await;
    assert_eq!(status, 413, "{body}");
    // The 400 lists the first 100 errors and counts them all.
    let bad = json!({"api_key": "phc_ok", "batch": vec![json!({"event": 5, "distinct_id": "d"}); 250]}).to_string();
    let (status, body) = post(&http, capture.url("/batch"), bad.into_bytes(), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"].as_array().unwrap().len(), 100);
    assert_eq!(body["error_count"], 250, "{}", body["message"]);
    assert_eq!(topic_record_count(&kafka.brokers(), &p.topic).unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_allowed_event_is_stored_and_larger_ones_get_413() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let p = Pipeline::new(&kafka, &ch, "phc_ok=1");
    let capture = p.capture().await.unwrap();
    let consumer = p.consumer().await.unwrap();
    let http = reqwest::Client::new();
    // Just under the 1 MiB event limit: librdkafka's default record limit (1,000,000 bytes) used
    // to refuse it at the producer, and capture answered 503 — which SDKs retry for ever.
    let filler = "x".repeat(1_040_000);
    let big = json!({"api_key": "phc_ok", "event": "big", "distinct_id": "d", "properties": {"blob": filler}});
    let (status, body) = post(&http, capture.url("/capture"), big.to_string().into_bytes(), &[]).await;
    assert_eq!(status, 200, "{body}");
    let too_big = json!({"api_key": "phc_ok", "batch": [
        {"event": "ok", "distinct_id": "d"},
        {"event": "big", "distinct_id": "d", "properties": {"blob": "x".repeat(1_100_000)}}
    ]});
    let (status, body) = post(&http, capture.url("/batch"), too_big.to_string().into_bytes(), &[]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["errors"][0]["index"], 1, "names the event: {body}");
    let db = ch.db(&p.database);
    wait_until("the large event to be stored", Duration::from_secs(60), || async {
        db.scalar("SELECT count() FROM events WHERE event = 'big'").await.unwrap_or(0) == 1
    })
    .await
    .unwrap();
    assert_eq!(db.scalar("SELECT count() FROM events").await.unwrap(), 1, "the refused batch wrote nothing");
    drop(consumer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_compression_retried_batches_and_slow_clients() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_ok=1");
    p.set("CAIRN_HTTP_HEADER_TIMEOUT_MS", "1000").set("CAIRN_HTTP_REQUEST_TIMEOUT_MS", "3000");
    let capture = p.capture().await.unwrap();
    let consumer = p.consumer().await.unwrap();
    let http = reqwest::Client::new();

    // posthog-js has sent compression=gzip-js with an uncompressed body, and gzip with none.
    let plain = json!([{"event": "plain", "distinct_id": "d", "properties": {"token": "phc_ok"}}]).to_string();
    assert_eq!(post(&http, capture.url("/batch?compression=gzip-js"), plain.clone().into_bytes(), &[]).await.0, 200);
    assert_eq!(
        post(&http, capture.url("/batch"), gzip(plain.as_bytes()), &[("content-type", "text/plain")]).await.0,
        200
    );

    // A batch sent twice (the SDK retried after a timeout) is stored once: its uuids collapse.
    let uuids: Vec<String> = (0..20).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let batch = json!({"api_key": "phc_ok", "batch": uuids.iter().map(|u| json!({"event": "retried", "distinct_id": "d", "uuid": u})).collect::<Vec<_>>()});
    for _ in 0..2 {
        assert_eq!(post(&http, capture.url("/batch"), batch.to_string().into_bytes(), &[]).await.0, 200);
    }
    let db = ch.db(&p.database);
    wait_until("both copies to be stored", Duration::from_secs(60), || async {
        db.scalar("SELECT count() FROM events WHERE event = 'retried'").await.unwrap_or(0) >= 20
    })
    .await
    .unwrap();
    assert_eq!(db.scalar("SELECT count() FROM events FINAL WHERE event = 'retried'").await.unwrap(), 20);
    assert_eq!(db.scalar("SELECT uniqExact(uuid) FROM events WHERE event = 'retried'").await.unwrap(), 20);

    // A client that opens a connection and says nothing, or sends a byte a second, is closed.
    let addr: std::net::SocketAddr = capture.addr.parse().unwrap();
    let second = Duration::from_secs(1);
    let silent = closes_after(addr, b"", b"", Duration::ZERO).await;
    let dribble = closes_after(addr, b"", b"POST /batch HTTP/1.1\r\nHost: x\r\n", second).await;
    let head = b"POST /batch HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n";
    let slow_body = closes_after(addr, head, b"[{\"event\": \"e\", \"distinct_id\": \"d\"}]      ", second).await;
    println!("closed: silent after {silent:?}, dribbling head after {dribble:?}, slow body after {slow_body:?}");
    assert!(silent < Duration::from_secs(4), "{silent:?}");
    assert!(dribble < Duration::from_secs(4), "{dribble:?}");
    assert!(slow_body >= Duration::from_secs(2) && slow_body < Duration::from_secs(6), "{slow_body:?}");
    drop(consumer);
}

/// Sends `head` at once, then `body` a byte at a time `gap` apart, then nothing; returns when the
/// server closes the connection.
async fn closes_after(addr: std::net::SocketAddr, head: &[u8], body: &[u8], gap: Duration) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    let (head, body) = (head.to_vec(), body.to_vec());
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&head).await;
        for b in body {
            if write.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(gap).await;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => continue,
        }
    }
    writer.abort();
    started.elapsed()
}

/// Auth and the query gateway in front of it, on a fresh database.
async fn auth_and_gateway(auth_env: &[(&str, &str)]) -> (cairn_e2e::Service, cairn_e2e::Service) {
    use std::collections::HashMap;
    let pg = cairn_e2e::TestPostgres::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), pg.fresh_database("hostile").await.unwrap());
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "internal-token-of-the-hostile-tests".into());
    for (k, v) in auth_env {
        env.insert(k.to_string(), v.to_string());
    }
    let auth = cairn_e2e::Service::start("auth", &env).await.unwrap();
    auth.wait_ready(Duration::from_secs(60)).await.unwrap();
    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), ch.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), cairn_e2e::unique("hostile"));
    let query = cairn_e2e::Service::start("query", &env).await.unwrap();
    (auth, query)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_storm_cannot_exhaust_auth() {
    let (auth, query) = auth_and_gateway(&[
        ("CAIRN_AUTH_HASH_CONCURRENCY", "2"),
        ("CAIRN_AUTH_LOGIN_PER_IP_PER_MINUTE", "1000000"),
        ("CAIRN_AUTH_LOGIN_PER_EMAIL_PER_MINUTE", "1000000"),
    ])
    .await;
    let account = cairn_e2e::sign_up(&auth, &format!("{}@storm.example", cairn_e2e::unique("u"))).await.unwrap();
    let pid = auth.pid().unwrap();
    let (_, peak_before) = memory_mib(pid);
    // 100 logins at once, each with a password to check (argon2: 19 MiB and tens of ms each).
    let http = reqwest::Client::new();
    let started = Instant::now();
    let logins = (0..100).map(|i| {
        let (http, url, email) = (http.clone(), auth.url("/api/v1/login"), account.email.clone());
        tokio::spawn(async move {
            let body = json!({"email": email, "password": format!("wrong password number {i}")});
            http.post(url).json(&body).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(logins).await.into_iter().map(Result::unwrap).collect();
    let took = started.elapsed();
    let (_, peak_after) = memory_mib(pid);
    let refused = statuses.iter().filter(|s| **s == 503).count();
    println!(
        "100 concurrent logins: {} answered 401, {refused} answered 503 (hashing busy) in {took:?}; \
         auth's peak memory {peak_before:.1} → {peak_after:.1} MiB",
        statuses.iter().filter(|s| **s == 401).count()
    );
    assert!(statuses.iter().all(|s| *s == 401 || *s == 503), "{statuses:?}");
    assert!(peak_after - peak_before < 100.0, "auth's peak memory rose by {:.1} MiB", peak_after - peak_before);
    // Still serving: the right password works once the storm is over.
    let ok = http
        .post(auth.url("/api/v1/login"))
        .json(&json!({"email": account.email, "password": account.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // The gateway never forwards to auth's internal API, however the path is spelled.
    for path in [
        "/api/%2e%2e/internal/v1/authenticate",
        "/api/.%2E/internal/v1/authenticate",
        "/api/v1/..%2finternal/v1/authenticate",
    ] {
        let r = http
            .post(format!("http://{}{path}", query.addr))
            .bearer_auth("internal-token-of-the-hostile-tests")
            .json(&json!({"credential": account.access_token}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // Unknown methods do not create metric series.
    for method in ["FOO", "BAR", "BAZ"] {
        let _ =
            http.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), auth.url("/api/v1/me")).send().await;
    }
    let metrics = reqwest::get(auth.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("method=\"FOO\""), "a client created a metric series");
    assert!(metrics.contains("method=\"other\""));
}

/// Every record of a topic (from the beginning), with its `cairn-dlq-reason` header.
fn read_topic(brokers: &str, topic: &str, want: usize, timeout: Duration) -> Vec<(Vec<u8>, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", cairn_e2e::unique("reader"))
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).unwrap();
    let mut tpl = TopicPartitionList::new();
    for part in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, part.id(), Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(250)) {
            let reason = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "cairn-dlq-reason")
                        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                })
                .unwrap_or_default();
            out.push((m.payload().unwrap_or_default().to_vec(), reason));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_clickhouse_refuses_are_isolated_and_the_rest_is_stored() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let p = Pipeline::new(&kafka, &ch, "phc_ok=1");
    // A dead-letter topic that takes records of 100 kB at most.
    let dlq = format!("{}_dlq", p.topic);
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", kafka.brokers()).create().unwrap();
    let small = NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "100000");
    admin.create_topics([&small], &AdminOptions::new()).await.unwrap();
    let consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    // The table refuses some rows for what they are (as a schema change or a constraint would).
    let db = ch.db(&p.database);
    db.rows("ALTER TABLE events ADD CONSTRAINT no_poison CHECK event != 'poison'").await.unwrap();

    let http = reqwest::Client::new();
    let mut batch: Vec<Value> = (0..40).map(|i| json!({"event": "good", "distinct_id": format!("u{i}")})).collect();
    batch[13] = json!({"event": "poison", "distinct_id": "p1"});
    batch[31] = json!({"event": "poison", "distinct_id": "p2", "properties": {"blob": "x".repeat(150_000)}});
    let body = json!({"api_key": "phc_ok", "batch": batch}).to_string();
    assert_eq!(post(&http, capture.url("/batch"), body.into_bytes(), &[]).await.0, 200);
    wait_until("the 38 good rows", Duration::from_secs(60), || async {
        db.scalar("SELECT count() FROM events WHERE event = 'good'").await.unwrap_or(0) == 38
    })
    .await
    .unwrap();
    let letters = read_topic(&kafka.brokers(), &dlq, 2, Duration::from_secs(30));
    assert_eq!(letters.len(), 2, "both refused rows are dead letters");
    assert!(
        letters.iter().all(|(_, reason)| reason.contains("ClickHouse refused the row") && reason.contains("469")),
        "{:?}",
        letters.iter().map(|l| &l.1).collect::<Vec<_>>()
    );
    let truncated =
        letters.iter().find(|(p, _)| p.len() == 64 * 1024).expect("the large one, truncated to fit the topic");
    assert!(truncated.1.contains("truncated from"), "{}", truncated.1);
    // Consumption goes on.
    let more = json!({"api_key": "phc_ok", "batch": [{"event": "after", "distinct_id": "u"}]}).to_string();
    assert_eq!(post(&http, capture.url("/batch"), more.into_bytes(), &[]).await.0, 200);
    wait_until("events after the poison", Duration::from_secs(60), || async {
        db.scalar("SELECT count() FROM events WHERE event = 'after'").await.unwrap_or(0) == 1
    })
    .await
    .unwrap();
    assert_eq!(consumer.metric("cairn_consumer_rows_refused_total").await.unwrap(), 2.0);
    assert_eq!(db.scalar("SELECT count() FROM events WHERE event = 'poison'").await.unwrap(), 0);
}
