//! Past one node, on real processes: a quorum of three Kafka brokers (one killed while events
//! flow, then brought back), and three captures with three consumers on one topic (consumers
//! killed and restarted while events flow). In every case each event that capture acknowledged
//! ends up in ClickHouse exactly once, as queries see it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_e2e::{
    assert_exactly_once_allowing, wait_until, ChQuery, Pipeline, Service, TestClickHouse, TestKafka, TestKafkaQuorum,
};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use uuid::Uuid;

/// What the senders saw: acknowledged uuids, refused uuids, and the slowest answer.
#[derive(Default)]
struct Sent {
    acked: HashSet<Uuid>,
    refused: HashSet<Uuid>,
    statuses: Vec<u16>,
    slowest: Duration,
}

/// Sends batches of `n` events to the captures in turn until `stop`, one request at a time per
/// capture.
fn spawn_senders(
    captures: &[String],
    n: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Sent>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    captures
        .iter()
        .enumerate()
        .map(|(w, url)| {
            let (url, stop, sent) = (url.clone(), stop.clone(), sent.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let uuids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
                    let batch: Vec<Value> = uuids
                        .iter()
                        .enumerate()
                        .map(|(i, u)| {
                            json!({"event": "scale", "distinct_id": format!("u{w}-{}", (round * n + i) % 97),
                                   "uuid": u, "properties": {"round": round}})
                        })
                        .collect();
                    let started = Instant::now();
                    let status = match http
                        .post(format!("{url}/batch"))
                        .json(&json!({"api_key": "phc_k", "batch": batch}))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await
                    {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    };
                    let took = started.elapsed();
                    let mut s = sent.lock().unwrap();
                    s.statuses.push(status);
                    s.slowest = s.slowest.max(took);
                    if status == 200 {
                        s.acked.extend(uuids);
                    } else {
                        s.refused.extend(uuids);
                    }
                    round += 1;
                }
            })
        })
        .collect()
}

/// Every acknowledged event stored exactly once, as queries see it; the rows stored before merging.
async fn assert_exactly_once(db: &ChQuery, sent: &Sent, timeout: Duration) -> u64 {
    assert_exactly_once_allowing(db, &sent.acked, &sent.refused, timeout).await
}

/// A topic's setting, as the cluster describes it.
async fn topic_setting(brokers: &str, topic: &str, name: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let described = admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()).await.unwrap();
    let resource = described.into_iter().next()?.ok()?;
    resource.entries.into_iter().find(|e| e.name == name).and_then(|e| e.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_of_three_killed_while_events_flow_loses_nothing_and_capture_keeps_acknowledging() {
    let quorum = TestKafkaQuorum::dedicated("kill", 3).unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::on_brokers(&quorum.brokers(), &ch, "phc_k=1");
    p.set("CAIRN_KAFKA_TOPIC_PARTITIONS", "6");
    let consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let db = ch.db(&p.database);

    // The services created the topic replicated three times, acknowledged by two.
    wait_until("the topic on three replicas", Duration::from_secs(30), || async {
        quorum
            .replicas(&p.topic)
            .is_ok_and(|r| r.len() == 6 && r.iter().all(|&(replicas, isr)| replicas == 3 && isr == 3))
    })
    .await
    .unwrap();
    assert_eq!(topic_setting(&quorum.brokers(), &p.topic, "min.insync.replicas").await.as_deref(), Some("2"));

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Sent::default()));
    let senders = spawn_senders(&[capture.url("")], 50, stop.clone(), sent.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_kill = sent.lock().unwrap().acked.len();

    // A broker dies (SIGKILL, no controlled shutdown): its partitions' leadership moves once the
    // controller fences it, and the topic goes on with two in-sync replicas.
    quorum.nodes[1].kill().unwrap();
    let killed = Instant::now();
    wait_until("the killed broker out of every ISR", Duration::from_secs(30), || async {
        quorum.replicas(&p.topic).is_ok_and(|r| r.iter().all(|&(_, isr)| isr == 2))
    })
    .await
    .unwrap();
    eprintln!("killed broker fenced and out of every ISR after {:.1} s", killed.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = sent.lock().unwrap().acked.len() - before_kill;
    assert!(during > 0, "capture acknowledged events while a broker was down");

    // Back: it catches up and rejoins every ISR.
    quorum.nodes[1].start().unwrap();
    let restarted = Instant::now();
    wait_until("the broker back in every ISR", Duration::from_secs(90), || async {
        quorum.replicas(&p.topic).is_ok_and(|r| r.iter().all(|&(_, isr)| isr == 3))
    })
    .await
    .unwrap();
    eprintln!("restarted broker back in every ISR after {:.1} s", restarted.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let refused = sent.statuses.iter().filter(|s| **s != 200).count();
    eprintln!(
        "{} requests, {} refused, slowest answer {:.2} s; {} events acknowledged ({during} while the broker was down)",
        sent.statuses.len(),
        refused,
        sent.slowest.as_secs_f64(),
        sent.acked.len()
    );
    assert_eq!(refused, 0, "capture acknowledged every request through the broker's death: {:?}", sent.statuses);
    let rows = assert_exactly_once(&db, &sent, Duration::from_secs(90)).await;
    eprintln!("{rows} rows stored for {} events", sent.acked.len());
    consumer.wait_ready(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_captures_and_three_consumers_restarted_while_events_flow_lose_nothing() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_k=1");
    p.set("CAIRN_KAFKA_TOPIC_PARTITIONS", "12").set("CAIRN_CONSUMER_BATCH_MAX_EVENTS", "500");
    let mut consumers: Vec<Service> = Vec::new();
    for _ in 0..3 {
        consumers.push(p.consumer().await.unwrap());
    }
    let mut captures = Vec::new();
    for _ in 0..3 {
        captures.push(p.capture().await.unwrap());
    }
    let db = ch.db(&p.database);
    let urls: Vec<String> = captures.iter().map(|c| c.url("")).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Sent::default()));
    let senders = spawn_senders(&urls, 100, stop.clone(), sent.clone());
    let mut logs = Vec::new();
    // A crash, a restart, a graceful stop, a restart, while events flow.
    tokio::time::sleep(Duration::from_secs(4)).await;
    consumers[0].kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;
    logs.push(consumers[0].log.clone());
    consumers[0] = p.consumer().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(consumers[1].terminate(Duration::from_secs(30)).unwrap(), "a graceful stop");
    tokio::time::sleep(Duration::from_secs(2)).await;
    logs.push(consumers[1].log.clone());
    consumers[1] = p.consumer().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    assert!(sent.statuses.iter().all(|s| *s == 200), "captures acknowledged every request");
    let rows = assert_exactly_once(&db, &sent, Duration::from_secs(90)).await;
    eprintln!(
        "{} events acknowledged by 3 captures; {rows} rows stored before merging ({} delivered again after the crash)",
        sent.acked.len(),
        rows - sent.acked.len() as u64
    );

    // Every consumer took part, with incremental (cooperative) rebalances.
    logs.extend(consumers.iter().map(|c| c.log.clone()));
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        // (The text log colours field names: match the words, not `protocol=…`.)
        assert!(
            text.lines().any(|l| l.contains("partitions assigned") && l.contains("cooperative")),
            "{} was assigned partitions, cooperatively",
            log.display()
        );
        assert!(
            !text.lines().any(|l| l.contains("partitions") && l.contains("eager")),
            "{}: an eager rebalance",
            log.display()
        );
    }
}
