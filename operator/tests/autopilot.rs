//! The operator on autopilot, on the real API server with the test Kafka and ClickHouse: the
//! backlog guard stretches the topic's retention before unconsumed events would be deleted,
//! partitions grow when the consumer cannot, ClickHouse's own logs get a TTL and its disks are
//! watched, and the heartbeat says when events stop arriving although every Deployment is Ready.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_e2e::{unique, wait_until};
use cairn_operator::crd::AnalyticsPlatform;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PatchParams, PostParams};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::json;
use support::*;

/// Produces `n` records stamped `age` ago.
fn produce_aged(brokers: &str, topic: &str, n: usize, age: Duration) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let ts = (SystemTime::now() - age).duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    for i in 0..n {
        let key = format!("1:user-{i}");
        let payload = format!("{{\"i\":{i}}}");
        while producer.send(BaseRecord::to(topic).key(&key).payload(&payload).timestamp(ts)).is_err() {
            producer.poll(Duration::from_millis(50));
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_near_the_retention_stretches_it_within_the_cap_and_nothing_else() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let topic = unique("op_backlog");
    let mut ap = platform("backlog", &env.kafka.brokers(), &env.ch.url(), &topic, &unique("op"));
    ap.spec.kafka.topic.retention_hours = 1;
    api.create(&PostParams::default(), &ap).await.unwrap();
    wait_phase(&api, "backlog", "Ready", Duration::from_secs(120)).await;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", env.kafka.brokers()).create().unwrap();
    let before = topic_config(&admin, &topic).await;
    assert_eq!(before["retention.ms"], "3600000");

    // A backlog whose oldest record is 40 minutes old, on a 1 h retention.
    let brokers = env.kafka.brokers();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || produce_aged(&brokers, &t, 1_000, Duration::from_secs(40 * 60))).await.unwrap();
    wait_until("the retention stretched to 2 h", Duration::from_secs(60), || async {
        topic_config(&admin, &topic).await["retention.ms"] == "7200000"
    })
    .await
    .unwrap();
    wait_until("EventsAtRisk reported", Duration::from_secs(30), || async {
        api.get("backlog").await.ok().is_some_and(|ap| {
            ap.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "EventsAtRisk" && c.status == "True"))
        })
    })
    .await
    .unwrap();
    let ap = api.get("backlog").await.unwrap();
    let risk = condition(&ap, "EventsAtRisk");
    assert_eq!(risk.reason, "RetentionExtended", "{risk:?}");
    assert!(risk.message.contains("40m old") && risk.message.contains("extended to 2h"), "{}", risk.message);
    let backlog = ap.status.as_ref().unwrap().backlog.clone().unwrap();
    assert_eq!((backlog.lag_records, backlog.retention_hours, backlog.at_risk), (1_000, 2, true));
    assert!(backlog.oldest_unconsumed_age_seconds.unwrap() >= 40 * 60);
    assert_eq!(ap.status.as_ref().unwrap().phase.as_deref(), Some("Ready"), "protected: still Ready");
    // Only the retention changed.
    let after = topic_config(&admin, &topic).await;
    for (k, v) in &before {
        if k != "retention.ms" {
            assert_eq!(after.get(k), Some(v), "{k} changed");
        }
    }
    let evs = events(&env.client, &env.ns).await;
    assert!(evs.iter().any(|(r, _)| r == "EventsAtRisk"), "{evs:?}");
    assert!(evs.iter().any(|(r, n)| r == "RetentionChanged" && n.contains("1h → 2h")), "{evs:?}");

    // A cap of 1 h: the retention goes back, and the platform says the events are at risk.
    api.patch(
        "backlog",
        &PatchParams::default(),
        &merge(json!({"spec": {"kafka": {"topic": {"maxRetentionHours": 1}}}})),
    )
    .await
    .unwrap();
    let ap = wait_phase(&api, "backlog", "Degraded", Duration::from_secs(60)).await;
    let degraded = condition(&ap, "Degraded");
    assert_eq!(degraded.reason, "EventsAtRisk", "{degraded:?}");
    assert!(degraded.message.contains("deleted unread"), "{}", degraded.message);
    assert_eq!(condition(&ap, "EventsAtRisk").reason, "RetentionCapReached");
    assert_eq!(topic_config(&admin, &topic).await["retention.ms"], "3600000", "never past the cap");

    // The backlog consumed: back to the spec's retention, Ready, not at risk.
    api.patch(
        "backlog",
        &PatchParams::default(),
        &merge(json!({"spec": {"kafka": {"topic": {"maxRetentionHours": 4}}}})),
    )
    .await
    .unwrap();
    wait_until("the stretched retention again", Duration::from_secs(60), || async {
        topic_config(&admin, &topic).await["retention.ms"] == "7200000"
    })
    .await
    .unwrap();
    let brokers = env.kafka.brokers();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || drain(&brokers, &t, "cairn-backlog")).await.unwrap();
    wait_until("the spec's retention once drained", Duration::from_secs(60), || async {
        topic_config(&admin, &topic).await["retention.ms"] == "3600000"
    })
    .await
    .unwrap();
    wait_until("EventsAtRisk cleared", Duration::from_secs(30), || async {
        api.get("backlog").await.ok().is_some_and(|ap| {
            ap.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "EventsAtRisk" && c.status == "False"))
        })
    })
    .await
    .unwrap();
    let ap = wait_phase(&api, "backlog", "Ready", Duration::from_secs(30)).await;
    assert_eq!(ap.status.unwrap().backlog.unwrap().retention_hours, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_grow_when_the_consumer_cannot_and_never_past_the_max() {
    let env = setup_with(&[("CAIRN_OPERATOR_AUTOSCALE_SECS", "2")]).await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let topic = unique("op_grow");
    let mut ap = platform("grow", &env.kafka.brokers(), &env.ch.url(), &topic, &unique("op"));
    ap.spec.kafka.topic.partitions = 2;
    ap.spec.kafka.topic.max_partitions = Some(4);
    ap.spec.consumer.replicas = None;
    ap.spec.consumer.autoscaling = serde_json::from_value(json!({
        "minReplicas": 1, "maxReplicas": 10, "targetLagPerReplica": 1000
    }))
    .unwrap();
    api.create(&PostParams::default(), &ap).await.unwrap();
    wait_phase(&api, "grow", "Ready", Duration::from_secs(120)).await;

    // A lag that keeps rising, far beyond what 2 replicas on 2 partitions can take.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (brokers, t, stop) = (env.kafka.brokers(), topic.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            while !stop.load(Ordering::Relaxed) {
                produce_aged(&brokers, &t, 2_000, Duration::ZERO);
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let replicas = |n: i32| {
        let deployments = deployments.clone();
        async move { deployments.get("grow-consumer").await.ok().and_then(|d| d.spec?.replicas) == Some(n) }
    };
    wait_until("2 replicas on 2 partitions", Duration::from_secs(30), || replicas(2)).await.unwrap();
    wait_until("the topic grown to 4 partitions", Duration::from_secs(60), || async {
        topic_partitions(&env.kafka.brokers(), &topic) == 4
    })
    .await
    .unwrap();
    wait_until("4 replicas on 4 partitions", Duration::from_secs(30), || replicas(4)).await.unwrap();
    // Well past the max's chance to be crossed: still 4 (and the dead letters follow).
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();
    assert_eq!(topic_partitions(&env.kafka.brokers(), &topic), 4, "never past maxPartitions");
    assert_eq!(topic_partitions(&env.kafka.brokers(), &format!("{topic}_dead_letter")), 4);
    let ap = api.get("grow").await.unwrap();
    assert_eq!(ap.status.as_ref().unwrap().kafka.as_ref().unwrap().partitions, 4);
    assert!(ap.status.as_ref().unwrap().consumer_autoscaling.as_ref().unwrap().replicas <= 4);
    let evs = events(&env.client, &env.ns).await;
    assert!(evs.iter().any(|(r, n)| r == "PartitionsGrown" && n.contains("grown to 4 partitions")), "{evs:?}");
    // A restarted operator keeps the grown topic (no "cannot shrink").
    let mut old = env.operator;
    old.kill9();
    let _new = start_operator(&env.kube, &env.ns, &[("CAIRN_OPERATOR_AUTOSCALE_SECS", "2")]).await;
    api.patch("grow", &PatchParams::default(), &merge(json!({"metadata": {"annotations": {"touch": "1"}}})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ap = api.get("grow").await.unwrap();
    assert_eq!(condition(&ap, "KafkaReady").status, "True", "{:?}", condition(&ap, "KafkaReady"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_logs_get_a_ttl_disks_are_watched_and_the_event_ttl_is_verified() {
    let env = setup().await;
    // The embedded engine of the test bed keeps a query log only: make more tables of the shape
    // a ClickHouse server gives them (MergeTree with an event_date), including the copies an
    // upgrade leaves behind, and one of them already with a TTL of its own.
    let sys = env.ch.db("default");
    let suffix = unique("t").replace('-', "_");
    let names = [format!("{suffix}_query_log"), format!("{suffix}_trace_log"), format!("{suffix}_query_log_0")];
    for name in &names {
        sys.rows(&format!(
            "CREATE TABLE IF NOT EXISTS system.`{name}` (event_date Date, event_time DateTime, query String) \
             ENGINE = MergeTree PARTITION BY toYYYYMM(event_date) ORDER BY event_time"
        ))
        .await
        .unwrap();
    }
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let mut ap = platform("logs", &env.kafka.brokers(), &env.ch.url(), &unique("op_logs"), &unique("op"));
    ap.spec.event_ttl_days = 30;
    ap.spec.clickhouse.system_log_ttl_days = Some(3);
    api.create(&PostParams::default(), &ap).await.unwrap();
    let ap = wait_phase(&api, "logs", "Ready", Duration::from_secs(120)).await;
    for name in &names {
        let create = sys
            .rows(&format!(
                "SELECT create_table_query FROM system.tables WHERE database = 'system' AND name = '{name}'"
            ))
            .await
            .unwrap();
        let q = create[0]["create_table_query"].as_str().unwrap().to_string();
        assert!(
            q.contains("TTL event_date + toIntervalDay(3)"),
            "{name}: {q}; {:?}",
            ap.status.as_ref().unwrap().clickhouse
        );
    }
    let ch = ap.status.as_ref().unwrap().clickhouse.clone().unwrap();
    assert!(ch.system_logs.as_deref().is_some_and(|s| s.contains("keep 3 days")), "{ch:?}");
    assert!(ch.event_ttl.as_deref().is_some_and(|s| s.contains("TTL 30 days, verified")), "{ch:?}");
    assert!(!ch.disks.is_empty() && ch.disks.iter().all(|d| d.total_bytes > 0 && d.free_bytes <= d.total_bytes));
    assert!(ch.disk_free.as_deref().is_some_and(|f| f.ends_with('%')), "{ch:?}");
    assert_eq!(condition(&ap, "DiskPressure").status, "False");

    // A threshold above what the disk has free: DiskPressure, Degraded.
    api.patch("logs", &PatchParams::default(), &merge(json!({"spec": {"clickhouse": {"minFreeDiskPercent": 100}}})))
        .await
        .unwrap();
    let ap = wait_phase(&api, "logs", "Degraded", Duration::from_secs(60)).await;
    let p = condition(&ap, "DiskPressure");
    assert_eq!((p.status.as_str(), p.reason.as_str()), ("True", "LowFreeSpace"), "{p:?}");
    assert!(p.message.contains("free of") && p.message.contains("backfills wait"), "{}", p.message);
    assert_eq!(condition(&ap, "Degraded").reason, "DiskPressure");
    api.patch("logs", &PatchParams::default(), &merge(json!({"spec": {"clickhouse": {"minFreeDiskPercent": 1}}})))
        .await
        .unwrap();
    wait_phase(&api, "logs", "Ready", Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_whose_heartbeat_cannot_pass_is_not_healthy_although_every_deployment_is_ready() {
    // kwok's pods are Ready and run nothing: capture takes no heartbeat, as when every capture
    // pod answers probes but nothing behind them works.
    let env =
        setup_with(&[("CAIRN_OPERATOR_HEARTBEAT_SECS", "2"), ("CAIRN_OPERATOR_FRESHNESS_THRESHOLD_SECS", "8")]).await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let ap = platform("beat", &env.kafka.brokers(), &env.ch.url(), &unique("op_beat"), &unique("op"));
    api.create(&PostParams::default(), &ap).await.unwrap();
    let ap = wait_phase(&api, "beat", "Degraded", Duration::from_secs(120)).await;
    let s = ap.status.clone().unwrap();
    let c = condition(&ap, "DataPathHealthy");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "CaptureRefusedHeartbeat"), "{c:?}");
    assert!(s.freshness_seconds.is_some_and(|f| f > 8), "{s:?}");
    assert!(s.workloads.capture.ready_replicas >= 1, "capture is Ready all the same");
    let dp = s.data_path.unwrap();
    assert!(dp.send_error.is_some() && dp.first_sent_time.is_some() && dp.last_arrived_time.is_none(), "{dp:?}");
    assert_eq!(condition(&ap, "Degraded").reason, "CaptureRefusedHeartbeat");
    let evs = events(&env.client, &env.ns).await;
    assert!(evs.iter().any(|(r, _)| r == "CaptureRefusedHeartbeat" || r == "DataPathStalled"), "{evs:?}");
}

/// Properties that the query service's statements parse out of the JSON most (by ClickHouse's
/// query log) become columns, the costliest first, within `maxColumns`; raising it adds the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_properties_queries_parse_most_become_columns() {
    // The query log read at every reconcile, every 2 seconds.
    let env = setup_with(&[("CAIRN_OPERATOR_PROPERTY_USAGE_SECS", "1"), ("CAIRN_OPERATOR_RESYNC_SECS", "2")]).await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let database = unique("op_auto");
    let mut ap = platform("autocols", &env.kafka.brokers(), &env.ch.url(), &unique("op_auto"), &database);
    ap.spec.clickhouse.property_columns = Some(vec!["$browser".into()]);
    ap.spec.clickhouse.auto_property_columns = Some(cairn_operator::crd::AutoPropertyColumns {
        max_columns: Some(2),
        min_queries: Some(3),
        lookback_days: Some(1),
    });
    api.create(&PostParams::default(), &ap).await.unwrap();
    wait_phase(&api, "autocols", "Ready", Duration::from_secs(120)).await;

    // Statements as the query service sends them over the platform's database, each naming the
    // properties it parses; the longer they take, the costlier the property. `$browser` is a
    // column already, `rare` is parsed too seldom, and a key that could never be a column is
    // not one however often.
    let ch = env.ch.db(&database);
    for (key, times, secs) in
        [("region", 5, "0.2"), ("plan", 4, "0.1"), ("tier", 3, "0.01"), ("rare", 2, "0.5"), ("$browser", 6, "0.3")]
    {
        for _ in 0..times {
            ch.rows(&format!(
                "SELECT sleep({secs}) FROM (SELECT count() FROM events WHERE JSONExtractString(properties, '{key}') != '') \
                 SETTINGS log_comment = '{{\"properties\":[\"{key}\"]}}'"
            ))
            .await
            .unwrap();
        }
    }
    ch.rows("SYSTEM FLUSH LOGS").await.unwrap();
    let columns = |ch: cairn_e2e::ChQuery| async move {
        let rows = ch
            .rows("SELECT comment FROM system.columns WHERE database = currentDatabase() AND table = 'events' AND startsWith(name, 'mp_')")
            .await
            .unwrap();
        let mut keys: Vec<String> = rows
            .iter()
            .filter_map(|r| r["comment"].as_str()?.strip_prefix("cairn property: ").map(str::to_string))
            .collect();
        keys.sort();
        keys
    };
    let status = |ap: &AnalyticsPlatform| {
        ap.status
            .as_ref()
            .and_then(|s| s.clickhouse.as_ref())
            .and_then(|c| c.property_columns.clone())
            .unwrap_or_default()
    };
    wait_until("the two costliest properties to become columns", Duration::from_secs(60), || async {
        columns(ch.clone()).await == ["$browser", "plan", "region"]
    })
    .await
    .unwrap();
    wait_until("the status to name them", Duration::from_secs(60), || async {
        let s = status(&api.get("autocols").await.unwrap());
        s.contains("plan") && s.contains("region") && s.contains("from query usage")
    })
    .await
    .unwrap();

    // One more allowed: the next one.
    api.patch(
        "autocols",
        &PatchParams::default(),
        &merge(json!({"spec": {"clickhouse": {"autoPropertyColumns": {"maxColumns": 3}}}})),
    )
    .await
    .unwrap();
    wait_until("the third column", Duration::from_secs(60), || async {
        columns(ch.clone()).await == ["$browser", "plan", "region", "tier"]
    })
    .await
    .unwrap();
    // Turned off: nothing more is added, nothing is dropped.
    api.patch(
        "autocols",
        &PatchParams::default(),
        &merge(json!({"spec": {"clickhouse": {"autoPropertyColumns": {"maxColumns": 0, "minQueries": 1}}}})),
    )
    .await
    .unwrap();
    wait_phase(&api, "autocols", "Ready", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(columns(ch.clone()).await, ["$browser", "plan", "region", "tier"]);
    let s = status(&api.get("autocols").await.unwrap());
    assert!(!s.contains("from query usage"), "{s}");
}
