//! Failures on the real services: a consumer killed mid-stream, Kafka stopped under capture,
//! ClickHouse stopped (and frozen) under the consumer, poison records, a graceful shutdown, and a
//! consume loop stuck past its liveness deadline. In every case each event that capture
//! acknowledged ends up in ClickHouse exactly once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cairn_e2e::{assert_exactly_once_allowing, wait_until, ChQuery, Pipeline, Service, TestClickHouse, TestKafka};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use uuid::Uuid;

/// Sends one batch of `n` events with fresh uuids; returns capture's status (0 for no answer)
/// and the uuids.
async fn send_batch(http: &reqwest::Client, capture: &Service, key: &str, n: usize) -> (u16, Vec<Uuid>) {
    let uuids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let batch: Vec<Value> = uuids
        .iter()
        .enumerate()
        .map(
            |(i, u)| json!({"event": "load", "distinct_id": format!("u{}", i % 13), "uuid": u, "properties": {"i": i}}),
        )
        .collect();
    let status = match http
        .post(capture.url("/batch"))
        .json(&json!({"api_key": key, "batch": batch}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    };
    (status, uuids)
}

/// Waits until every acknowledged uuid is in ClickHouse, then asserts each is there exactly once
/// and nothing else is.
async fn assert_exactly_once(db: &ChQuery, acked: &HashSet<Uuid>, timeout: Duration) {
    assert_exactly_once_allowing(db, acked, &HashSet::new(), timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_mid_stream_loses_and_duplicates_nothing() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_k=1");
    p.set("CAIRN_CONSUMER_BATCH_MAX_EVENTS", "300").set("CAIRN_CONSUMER_BATCH_MAX_AGE_MS", "100");
    let mut consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let http = reqwest::Client::new();
    let db = ch.db(&p.database);
    let mut acked = HashSet::new();

    for round in 0..60 {
        let (status, uuids) = send_batch(&http, &capture, "phc_k", 50).await;
        assert_eq!(status, 200);
        acked.extend(uuids);
        if round == 20 {
            // Let it be mid-way through inserting, then crash it.
            wait_until("some rows stored", Duration::from_secs(30), || {
                let db = db.clone();
                async move { db.scalar("SELECT count() FROM events").await.unwrap_or(0) > 0 }
            })
            .await
            .unwrap();
            consumer.kill9();
        }
        if round == 35 {
            consumer = p.consumer().await.unwrap();
        }
    }
    assert_exactly_once(&db, &acked, Duration::from_secs(90)).await;
    drop(consumer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_means_503_and_capture_recovers_without_restart() {
    let kafka = TestKafka::dedicated("outage").unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_k=1");
    p.set("CAIRN_CAPTURE_ACK_TIMEOUT_MS", "3000");
    // The producer's liveness deadline, shorter than the outage: a broker that is down is not a
    // wedged producer (its messages fail and leave the queue), so capture must stay alive.
    p.set("CAIRN_CAPTURE_LIVENESS_DEADLINE_MS", "5500");
    let _consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let http = reqwest::Client::new();
    let mut acked = HashSet::new();
    let mut refused_uuids = HashSet::new();

    for _ in 0..10 {
        let (status, uuids) = send_batch(&http, &capture, "phc_k", 50).await;
        assert_eq!(status, 200);
        acked.extend(uuids);
    }

    kafka.stop().unwrap();
    let mut refused = 0;
    let down_since = Instant::now();
    while down_since.elapsed() < Duration::from_secs(8) {
        let started = Instant::now();
        let (status, uuids) = send_batch(&http, &capture, "phc_k", 20).await;
        assert!(status == 200 || status == 503, "got {status} while Kafka is down");
        assert!(started.elapsed() < Duration::from_secs(8), "capture must answer within its ack timeout");
        if status == 503 {
            refused += 1;
            refused_uuids.extend(uuids);
        } else {
            acked.extend(uuids);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused > 0, "capture answered 503 while Kafka was down");
    let ready = reqwest::get(capture.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "readiness reports Kafka");
    let (live, body) = healthz(&capture).await;
    assert_eq!(live, 200, "Kafka down for longer than the producer's deadline is not a stall: {body}");

    kafka.start().unwrap();
    wait_until("capture accepting again", Duration::from_secs(60), || {
        let http = http.clone();
        let url = capture.url("/readyz");
        async move { http.get(&url).send().await.map(|r| r.status() == 200).unwrap_or(false) }
    })
    .await
    .unwrap();
    for _ in 0..10 {
        let (status, uuids) = send_batch(&http, &capture, "phc_k", 50).await;
        assert_eq!(status, 200);
        acked.extend(uuids);
    }
    assert_exactly_once_allowing(&ch.db(&p.database), &acked, &refused_uuids, Duration::from_secs(90)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_means_retries_and_every_row_arrives() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::dedicated("outage").unwrap();
    let p = Pipeline::new(&kafka, &ch, "phc_k=1");
    let consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let http = reqwest::Client::new();
    let db = ch.db(&p.database);
    let mut acked = HashSet::new();

    for _ in 0..5 {
        let (status, uuids) = send_batch(&http, &capture, "phc_k", 50).await;
        assert_eq!(status, 200);
        acked.extend(uuids);
    }
    assert_exactly_once(&db, &acked, Duration::from_secs(60)).await;

    ch.stop().unwrap();
    for _ in 0..20 {
        let (status, uuids) = send_batch(&http, &capture, "phc_k", 50).await;
        assert_eq!(status, 200, "capture does not depend on ClickHouse");
        acked.extend(uuids);
    }
    wait_until("the consumer reporting ClickHouse down", Duration::from_secs(30), || {
        let url = consumer.url("/readyz");
        async move { reqwest::get(&url).await.map(|r| r.status() == 503).unwrap_or(false) }
    })
    .await
    .unwrap();
    assert!(consumer.metric("cairn_consumer_insert_failures_total").await.unwrap() >= 1.0);
    tokio::time::sleep(Duration::from_secs(2)).await;

    ch.start().unwrap();
    assert_exactly_once(&db, &acked, Duration::from_secs(90)).await;
    consumer.wait_ready(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dead_letter_topic_with_the_reason() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let p = Pipeline::new(&kafka, &ch, "phc_k=1");
    let _consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let http = reqwest::Client::new();

    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", kafka.brokers()).create().unwrap();
    producer.send(BaseRecord::to(&p.topic).key("1:x").payload("this is not an event")).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    let (status, uuids) = send_batch(&http, &capture, "phc_k", 10).await;
    assert_eq!(status, 200);

    let acked: HashSet<Uuid> = uuids.into_iter().collect();
    assert_exactly_once(&ch.db(&p.database), &acked, Duration::from_secs(60)).await;

    let dlq: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .set("group.id", cairn_e2e::unique("dlq_reader"))
        .create()
        .unwrap();
    let dlq_topic = format!("{}_dlq", p.topic);
    let mut found = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    'outer: while Instant::now() < deadline {
        let md = dlq.fetch_metadata(Some(&dlq_topic), Duration::from_secs(5)).unwrap();
        let mut tpl = TopicPartitionList::new();
        for part in md.topics()[0].partitions() {
            tpl.add_partition_offset(&dlq_topic, part.id(), Offset::Beginning).unwrap();
        }
        dlq.assign(&tpl).unwrap();
        for _ in 0..20 {
            if let Some(Ok(m)) = dlq.poll(Duration::from_millis(250)) {
                let reason = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "cairn-dlq-reason")
                        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                });
                found = Some((m.payload().map(|p| p.to_vec()), reason));
                break 'outer;
            }
        }
    }
    let (payload, reason) = found.expect("a record on the dead-letter topic");
    assert_eq!(payload.as_deref(), Some(&b"this is not an event"[..]));
    assert!(reason.unwrap_or_default().contains("not a Cairn event"));
    assert!(_consumer.metric("cairn_consumer_events_total{outcome=\"dead_lettered\"}").await.unwrap() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_batch_commits_and_exits() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_k=1");
    // A batch that would wait a minute: only the shutdown can flush it.
    p.set("CAIRN_CONSUMER_BATCH_MAX_AGE_MS", "60000").set("CAIRN_CONSUMER_BATCH_MAX_EVENTS", "100000");
    let mut consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let http = reqwest::Client::new();
    let db = ch.db(&p.database);
    let mut acked = HashSet::new();
    for _ in 0..4 {
        let (status, uuids) = send_batch(&http, &capture, "phc_k", 50).await;
        assert_eq!(status, 200);
        acked.extend(uuids);
    }
    // Give the consumer time to read the records into its batch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(db.scalar("SELECT count() FROM events").await.unwrap(), 0, "nothing flushed before the shutdown");
    assert!(consumer.terminate(Duration::from_secs(30)).unwrap(), "clean exit");
    assert_eq!(db.scalar("SELECT count() FROM events").await.unwrap(), 200, "the batch was inserted on the way out");

    // Its offsets were committed: the group's committed offsets equal the topic's end.
    let probe: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", kafka.brokers()).set("group.id", &p.group).create().unwrap();
    let md = probe.fetch_metadata(Some(&p.topic), Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut end_total = 0;
    for part in md.topics()[0].partitions() {
        tpl.add_partition(&p.topic, part.id());
        end_total += probe.fetch_watermarks(&p.topic, part.id(), Duration::from_secs(10)).unwrap().1;
    }
    let committed = probe.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let committed_total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum();
    assert_eq!(committed_total, end_total);
    assert_exactly_once(&db, &acked, Duration::from_secs(10)).await;
}

/// `/healthz`'s status and body.
async fn healthz(service: &Service) -> (u16, Value) {
    let resp = reqwest::get(service.url("/healthz")).await.expect("/healthz answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A consumer and capture on a dedicated ClickHouse (to freeze), with `settings`, after a first
/// batch is stored.
struct OnDedicatedClickHouse {
    ch: TestClickHouse,
    consumer: Service,
    capture: Service,
    db: ChQuery,
    http: reqwest::Client,
    acked: HashSet<Uuid>,
    _kafka: TestKafka,
}

impl OnDedicatedClickHouse {
    async fn start(name: &str, settings: &[(&str, &str)]) -> Self {
        let kafka = TestKafka::shared().unwrap();
        let ch = TestClickHouse::dedicated(name).unwrap();
        let mut p = Pipeline::new(&kafka, &ch, "phc_k=1");
        for (k, v) in settings {
            p.set(k, *v);
        }
        let consumer = p.consumer().await.unwrap();
        let capture = p.capture().await.unwrap();
        let db = ch.db(&p.database);
        let mut s =
            Self { ch, consumer, capture, db, http: reqwest::Client::new(), acked: HashSet::new(), _kafka: kafka };
        s.send().await;
        assert_exactly_once(&s.db, &s.acked, Duration::from_secs(60)).await;
        s
    }

    async fn send(&mut self) {
        let (status, uuids) = send_batch(&self.http, &self.capture, "phc_k", 20).await;
        assert_eq!(status, 200);
        self.acked.extend(uuids);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_consume_loop_fails_liveness_and_recovers() {
    // The loop's deadline far below the insert timeout (60 s): an insert into a frozen ClickHouse
    // holds the loop past its deadline, as a wedged loop would.
    let mut t = OnDedicatedClickHouse::start("frozen", &[("CAIRN_CONSUMER_LIVENESS_DEADLINE_MS", "3000")]).await;
    // Idle for longer than the deadline: an idle loop is not a stuck one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(healthz(&t.consumer).await.0, 200, "an idle consumer is alive");

    // ClickHouse frozen: it accepts connections and never answers.
    t.ch.signal("STOP").unwrap();
    t.send().await;
    wait_until("liveness failing while the loop is stuck in an insert", Duration::from_secs(30), || async {
        healthz(&t.consumer).await.0 == 503
    })
    .await
    .unwrap();
    let (_, body) = healthz(&t.consumer).await;
    assert_eq!(body["stalled"][0]["component"], "consume loop", "{body}");
    assert_eq!(body["stalled"][0]["deadline_ms"], 3000, "{body}");

    t.ch.signal("CONT").unwrap();
    assert_exactly_once(&t.db, &t.acked, Duration::from_secs(90)).await;
    wait_until("liveness back once the loop turns", Duration::from_secs(30), || async {
        healthz(&t.consumer).await.0 == 200
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_that_never_answers_is_abandoned_and_retried() {
    let mut t = OnDedicatedClickHouse::start(
        "frozen_retry",
        &[("CAIRN_CONSUMER_INSERT_TIMEOUT_MS", "1500"), ("CAIRN_CONSUMER_LIVENESS_DEADLINE_MS", "10000")],
    )
    .await;
    t.ch.signal("STOP").unwrap();
    t.send().await;
    // The insert times out and is retried: counted as a failure, ClickHouse not ready, the loop
    // alive (a frozen dependency is a readiness matter, not a reason to restart the consumer).
    wait_until("an insert abandoned after its timeout", Duration::from_secs(30), || async {
        t.consumer.metric("cairn_consumer_insert_failures_total").await.unwrap_or(0.0) >= 1.0
    })
    .await
    .unwrap();
    let ready = reqwest::get(t.consumer.url("/readyz")).await.unwrap().status().as_u16();
    assert_eq!(ready, 503, "ClickHouse frozen: not ready");
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(healthz(&t.consumer).await.0, 200, "retrying is progress: alive");

    t.ch.signal("CONT").unwrap();
    assert_exactly_once(&t.db, &t.acked, Duration::from_secs(90)).await;
    t.consumer.wait_ready(Duration::from_secs(30)).await.unwrap();
}
