//! The consumer scaled by its Kafka lag, with no metrics adapter: the operator reads the consumer
//! group's backlog from the test Kafka and sets the consumer Deployment's replicas on the real
//! API server — up at once to ceil(lag / target) within the partitions, down only after the
//! stabilisation window, held while ClickHouse is unhealthy.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_e2e::{unique, wait_until};
use cairn_operator::crd::AnalyticsPlatform;
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::json;
use support::*;

/// Produces `n` small records over the topic's partitions (keyed like capture's).
fn produce(brokers: &str, topic: &str, n: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for i in 0..n {
        let key = format!("1:user-{}", i % 10_007);
        let payload = format!("{{\"i\":{i}}}");
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

async fn consumer_replicas(deployments: &Api<Deployment>, name: &str) -> Option<i32> {
    deployments.get_opt(&format!("{name}-consumer")).await.ok().flatten().and_then(|d| d.spec?.replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_follows_its_lag_up_at_once_down_after_the_window_and_holds_without_clickhouse() {
    let env = setup_with(&[("CAIRN_OPERATOR_AUTOSCALE_SECS", "3")]).await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let topic = unique("op_lag");
    let mut ap = platform("lag", &env.kafka.brokers(), &env.ch.url(), &topic, &unique("op"));
    ap.spec.kafka.topic.partitions = 8;
    ap.spec.consumer.replicas = None;
    ap.spec.consumer.autoscaling = serde_json::from_value(json!({
        "minReplicas": 1, "maxReplicas": 20, "targetLagPerReplica": 50000, "scaleDownStabilizationSeconds": 20
    }))
    .unwrap();
    api.create(&PostParams::default(), &ap).await.unwrap();
    wait_phase(&api, "lag", "Ready", Duration::from_secs(120)).await;
    assert_eq!(consumer_replicas(&deployments, "lag").await, Some(1), "no lag: the minimum");
    let ap = api.get("lag").await.unwrap();
    let scaling = ap.status.as_ref().and_then(|s| s.consumer_autoscaling.clone()).expect("autoscaling status");
    assert_eq!((scaling.lag_records, scaling.reason.as_str()), (Some(0), "Steady"), "{scaling:?}");
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(env.client.clone(), &env.ns);
    assert!(hpas.get_opt("lag-consumer").await.unwrap().is_none(), "no autoscaler: the operator scales");

    // Every replicas value the consumer's Deployment takes from here on.
    let seen = Arc::new(Mutex::new(Vec::<i32>::new()));
    let recorder = {
        let seen = seen.clone();
        let stream = watcher(deployments.clone(), watcher::Config::default().fields("metadata.name=lag-consumer"))
            .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(d)) = stream.try_next().await {
                if let Some(r) = d.spec.and_then(|s| s.replicas) {
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&r) {
                        seen.push(r);
                    }
                }
            }
        })
    };

    // A surge: 400,000 records nobody consumed, on 8 partitions, at 50,000 per replica.
    let brokers = env.kafka.brokers();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || produce(&brokers, &t, 400_000)).await.unwrap();
    let surge = Instant::now();
    wait_until("8 consumer replicas", Duration::from_secs(30), || async {
        consumer_replicas(&deployments, "lag").await == Some(8)
    })
    .await
    .unwrap();
    let scaled_in = surge.elapsed();
    eprintln!("lag surge to 8 replicas: {:.1} s", scaled_in.as_secs_f64());
    // The status of that reconcile (written after the Deployment).
    wait_until("the status of the whole backlog", Duration::from_secs(15), || async {
        api.get("lag").await.ok().is_some_and(|ap| {
            ap.status.as_ref().and_then(|s| s.consumer_autoscaling.as_ref()).is_some_and(|c| {
                c.lag_records == Some(400_000) && c.replicas == 8 && c.oldest_unconsumed_age_seconds.is_some()
            })
        })
    })
    .await
    .unwrap();
    let ap = api.get("lag").await.unwrap();
    assert_eq!(condition(&ap, "ConsumerScaling").status, "True");
    let evs = events(&env.client, &env.ns).await;
    assert!(evs.iter().any(|(r, n)| r == "ConsumerScaled" && n.contains("→ 8")), "{evs:?}");

    // Drained: the replicas stay for the 20 s window, then come down, once.
    let drained = Instant::now();
    drain(&env.kafka.brokers(), &topic, "cairn-lag");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let now = api.get("lag").await.unwrap();
    assert_eq!(
        consumer_replicas(&deployments, "lag").await,
        Some(8),
        "held within the window: {:?} {:?}",
        now.status.and_then(|s| s.consumer_autoscaling),
        events(&env.client, &env.ns).await.into_iter().filter(|(r, _)| r.starts_with("Consumer")).collect::<Vec<_>>()
    );
    wait_until("back to 1 replica", Duration::from_secs(45), || async {
        consumer_replicas(&deployments, "lag").await == Some(1)
    })
    .await
    .unwrap();
    eprintln!("drained to 1 replica after {:.1} s (window 20 s)", drained.elapsed().as_secs_f64());
    assert!(drained.elapsed() >= Duration::from_secs(20), "not before the window");

    // ClickHouse unreachable: a new backlog does not scale the consumer; the condition says why.
    api.patch(
        "lag",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"clickhouse": {"external": {"url": "http://127.0.0.1:9"}}}})),
    )
    .await
    .unwrap();
    wait_until("ClickHouse reported unhealthy", Duration::from_secs(60), || async {
        api.get("lag").await.ok().is_some_and(|ap| {
            ap.status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "ClickHouseReady"))
                .is_some_and(|c| c.status == "False")
        })
    })
    .await
    .unwrap();
    let brokers = env.kafka.brokers();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || produce(&brokers, &t, 200_000)).await.unwrap();
    wait_until("the hold reported", Duration::from_secs(30), || async {
        api.get("lag").await.ok().is_some_and(|ap| {
            ap.status.as_ref().and_then(|s| s.consumer_autoscaling.as_ref()).is_some_and(|c| {
                c.reason == "ClickHouseUnhealthy" && c.lag_records == Some(200_000) && c.recommended_replicas == Some(4)
            })
        })
    })
    .await
    .unwrap();
    let ap = api.get("lag").await.unwrap();
    let held = condition(&ap, "ConsumerScaling");
    assert_eq!((held.status.as_str(), held.reason.as_str()), ("False", "ClickHouseUnhealthy"), "{held:?}");
    assert_eq!(consumer_replicas(&deployments, "lag").await, Some(1), "held while ClickHouse is unhealthy");

    // Back: the held backlog scales it out.
    api.patch(
        "lag",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"clickhouse": {"external": {"url": env.ch.url()}}}})),
    )
    .await
    .unwrap();
    wait_until("4 consumer replicas once ClickHouse is back", Duration::from_secs(60), || async {
        consumer_replicas(&deployments, "lag").await == Some(4)
    })
    .await
    .unwrap();
    // The watch delivers the change a moment after a GET sees it: wait for the recorder too.
    wait_until("the recorder saw 4 replicas", Duration::from_secs(15), || async {
        seen.lock().unwrap().last() == Some(&4)
    })
    .await
    .ok();
    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    // Up (in one step, or more if a reconcile read the backlog while it was being produced), never
    // past the partitions, then down once after the window, then up for the held backlog.
    let peak = seen.iter().position(|r| *r == 8).unwrap_or_else(|| panic!("never 8: {seen:?}"));
    assert!(seen[..=peak].windows(2).all(|w| w[0] < w[1]), "the way up: {seen:?}");
    assert_eq!(&seen[peak..], &[8, 1, 4], "the replicas went through {seen:?}: no flapping");
    assert!(seen.iter().all(|r| *r <= 8), "never past the partitions: {seen:?}");
}
