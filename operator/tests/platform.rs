//! The operator against a real kube-apiserver, etcd, kube-controller-manager and kwok (one fake
//! node, so Deployments get Pods that become Ready), with the real Kafka and ClickHouse of the test
//! stack. Each test has a namespace of its own and an operator watching only it.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use cairn_e2e::{unique, wait_until, Service};
use cairn_operator::crd::AnalyticsPlatform;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Service as KubeService};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use support::{platform, setup, topic_partitions, wait_phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_comes_up_follows_its_spec_and_repairs_drift() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let topic = unique("op_events");
    let database = unique("op");
    api.create(&PostParams::default(), &platform("demo", &env.kafka.brokers(), &env.ch.url(), &topic, &database))
        .await
        .unwrap();

    // Apply → children with owner references → Ready with the current generation.
    let ap = wait_phase(&api, "demo", "Ready", Duration::from_secs(120)).await;
    let status = ap.status.clone().unwrap();
    assert!(status.conditions.iter().all(|c| c.observed_generation == ap.metadata.generation.unwrap()));
    for t in ["Ready", "KafkaReady", "ClickHouseReady", "CaptureReady", "ConsumerReady", "QueryReady", "AuthReady"] {
        let c = status.conditions.iter().find(|c| c.type_ == t).unwrap_or_else(|| panic!("no {t} condition"));
        assert_eq!(c.status, "True", "{t}: {}", c.message);
    }
    assert_eq!(status.workloads.capture.ready_replicas, 2);
    assert_eq!(status.kafka.as_ref().unwrap().partitions, 4);
    assert_eq!(status.clickhouse.as_ref().unwrap().schema_version, cairn_common::clickhouse::MIGRATIONS.len() as u32);
    assert!(status.endpoints.as_ref().unwrap().capture.starts_with("http://demo-capture."));

    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let list = deployments.list(&ListParams::default()).await.unwrap();
    let mut names: Vec<String> = list.items.iter().map(|d| d.name_any()).collect();
    names.sort();
    assert_eq!(names, ["demo-auth", "demo-capture", "demo-consumer", "demo-query"]);
    for d in &list.items {
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("AnalyticsPlatform", "demo", Some(true))
        );
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.containers[0].security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
    }
    let capture = deployments.get("demo-capture").await.unwrap();
    assert_eq!(capture.spec.as_ref().unwrap().replicas, Some(2));
    let cm: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let config = cm.get("demo-config").await.unwrap().data.unwrap();
    assert_eq!(config["CAIRN_KAFKA_TOPIC"], topic);
    assert_eq!(
        Api::<PodDisruptionBudget>::namespaced(env.client.clone(), &env.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    assert_eq!(
        Api::<NetworkPolicy>::namespaced(env.client.clone(), &env.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        4,
        "one NetworkPolicy per workload"
    );
    assert_eq!(topic_partitions(&env.kafka.brokers(), &topic), 4);
    assert_eq!(topic_partitions(&env.kafka.brokers(), &format!("{topic}_dead_letter")), 4);
    let db = env.ch.db(&database);
    assert_eq!(
        db.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'events'")
            .await
            .unwrap(),
        1
    );

    // Change replicas and partitions → the Deployment and the topic follow.
    api.patch(
        "demo",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"consumer": {"replicas": 3}, "kafka": {"topic": {"partitions": 6}}}})),
    )
    .await
    .unwrap();
    let ap = wait_phase(&api, "demo", "Ready", Duration::from_secs(120)).await;
    assert_eq!(ap.status.as_ref().unwrap().kafka.as_ref().unwrap().partitions, 6);
    assert_eq!(ap.status.as_ref().unwrap().workloads.consumer.ready_replicas, 3);
    assert_eq!(deployments.get("demo-consumer").await.unwrap().spec.unwrap().replicas, Some(3));
    assert_eq!(topic_partitions(&env.kafka.brokers(), &topic), 6);

    // Partitions may only grow: the API server refuses (CEL), and nothing changes.
    let err = api
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({"spec": {"kafka": {"topic": {"partitions": 2}}}})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("partitions may only grow"), "{err}");

    // A child deleted by hand comes back; a field edited by hand is put back.
    let services: Api<KubeService> = Api::namespaced(env.client.clone(), &env.ns);
    let old_uid = services.get("demo-capture").await.unwrap().metadata.uid;
    services.delete("demo-capture", &DeleteParams::default()).await.unwrap();
    wait_until("the capture Service to come back", Duration::from_secs(60), || async {
        services.get_opt("demo-capture").await.ok().flatten().map(|s| s.metadata.uid != old_uid).unwrap_or(false)
    })
    .await
    .unwrap();
    deployments
        .patch("demo-capture", &PatchParams::apply("someone-else").force(), &Patch::Apply(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "demo-capture"}, "spec": {"replicas": 5}
        })))
        .await
        .unwrap();
    wait_until("the capture replicas to be put back", Duration::from_secs(60), || async {
        deployments.get("demo-capture").await.ok().and_then(|d| d.spec?.replicas) == Some(2)
    })
    .await
    .unwrap();

    // Events tell the story.
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let reasons: Vec<String> =
        events.list(&ListParams::default()).await.unwrap().items.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(reasons.iter().any(|r| r == "SchemaMigrated"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Ready"), "{reasons:?}");

    // Delete → children garbage-collected; Retain keeps the topic and the data.
    api.delete("demo", &DeleteParams::default()).await.unwrap();
    wait_until("children to be garbage-collected", Duration::from_secs(90), || async {
        deployments.list(&ListParams::default()).await.map(|l| l.items.is_empty()).unwrap_or(false)
            && api.get_opt("demo").await.map(|a| a.is_none()).unwrap_or(false)
    })
    .await
    .unwrap();
    assert_eq!(topic_partitions(&env.kafka.brokers(), &topic), 6, "Retain keeps the topic");
    assert_eq!(
        db.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'events'")
            .await
            .unwrap(),
        1
    );
    drop(env.kube);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_refused_and_unreachable_kafka_degrades() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let topic = unique("op_events");
    let database = unique("op");

    let mut bad = platform("bad", &env.kafka.brokers(), &env.ch.url(), &topic, &database);
    bad.spec.consumer.autoscaling = Some(serde_json::from_value(json!({"minReplicas": 5, "maxReplicas": 2})).unwrap());
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(err.to_string().contains("minReplicas must not exceed maxReplicas"), "{err}");

    let mut both = platform("both", &env.kafka.brokers(), &env.ch.url(), &topic, &database);
    both.spec.kafka.managed = Some(Default::default());
    let err = api.create(&PostParams::default(), &both).await.unwrap_err();
    assert!(err.to_string().contains("exactly one of kafka.external and kafka.managed"), "{err}");

    for (endpoint, refused) in
        [("https://collector:4318", true), ("collector:4318", true), ("http://collector:4318", false)]
    {
        let mut traced = platform("traced", &env.kafka.brokers(), &env.ch.url(), &topic, &database);
        traced.spec.paused = true;
        traced.spec.tracing = Some(serde_json::from_value(json!({"otlpEndpoint": endpoint})).unwrap());
        match api.create(&PostParams::default(), &traced).await {
            Err(err) => {
                assert!(refused, "{endpoint}: {err}");
                assert!(err.to_string().contains("otlpEndpoint must be an http:// URL with a host"), "{err}");
            }
            Ok(_) => {
                assert!(!refused, "{endpoint} was accepted");
                api.delete("traced", &Default::default()).await.unwrap();
            }
        }
    }
    let mut over =
        serde_json::to_value(platform("ratio", &env.kafka.brokers(), &env.ch.url(), &topic, &database)).unwrap();
    over["spec"]["tracing"] = json!({"otlpEndpoint": "http://c:4318", "sampleRatio": 1.5});
    let err = api.create(&PostParams::default(), &serde_json::from_value(over).unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("sampleRatio"), "{err}");

    let mut negative =
        serde_json::to_value(platform("neg", &env.kafka.brokers(), &env.ch.url(), &topic, &database)).unwrap();
    negative["spec"]["capture"]["replicas"] = json!(-1);
    let err = api.create(&PostParams::default(), &serde_json::from_value(negative).unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("replicas"), "{err}");

    // Kafka that nobody answers on: Degraded with a clear reason, no crash; fixing it recovers.
    api.create(&PostParams::default(), &platform("lost", "127.0.0.1:1", &env.ch.url(), &topic, &database))
        .await
        .unwrap();
    let ap = wait_phase(&api, "lost", "Degraded", Duration::from_secs(90)).await;
    let degraded = ap.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Degraded").unwrap().clone();
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "KafkaUnreachable", "{}", degraded.message);
    let ready = ap.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().clone();
    assert_eq!(ready.status, "False");
    api.patch(
        "lost",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"kafka": {"external": {"bootstrapServers": env.kafka.brokers()}}}})),
    )
    .await
    .unwrap();
    wait_phase(&api, "lost", "Ready", Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delete_policy_removes_the_topic_and_the_database() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let topic = unique("op_events");
    let database = unique("op");
    let mut ap = platform("gone", &env.kafka.brokers(), &env.ch.url(), &topic, &database);
    ap.spec.deletion_policy = cairn_operator::crd::DeletionPolicy::Delete;
    api.create(&PostParams::default(), &ap).await.unwrap();
    let ap = wait_phase(&api, "gone", "Ready", Duration::from_secs(120)).await;
    assert!(ap.finalizers().iter().any(|f| f == cairn_operator::crd::FINALIZER));
    assert_eq!(topic_partitions(&env.kafka.brokers(), &topic), 4);

    api.delete("gone", &DeleteParams::default()).await.unwrap();
    wait_until("the platform to be gone", Duration::from_secs(90), || async {
        api.get_opt("gone").await.map(|a| a.is_none()).unwrap_or(false)
    })
    .await
    .unwrap();
    wait_until("the topic to be deleted", Duration::from_secs(30), || async {
        topic_partitions(&env.kafka.brokers(), &topic) == 0
    })
    .await
    .unwrap();
    let dbs = env
        .ch
        .db("default")
        .rows(&format!("SELECT name FROM system.databases WHERE name = '{database}'"))
        .await
        .unwrap();
    assert!(dbs.is_empty(), "the database was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_platform_is_left_alone() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let topic = unique("op_events");
    api.create(&PostParams::default(), &platform("calm", &env.kafka.brokers(), &env.ch.url(), &topic, &unique("op")))
        .await
        .unwrap();
    wait_phase(&api, "calm", "Ready", Duration::from_secs(120)).await;
    api.patch(
        "calm",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true, "capture": {"replicas": 4}}})),
    )
    .await
    .unwrap();
    wait_phase(&api, "calm", "Paused", Duration::from_secs(60)).await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(deployments.get("calm-capture").await.unwrap().spec.unwrap().replicas, Some(2), "paused: no changes");
    api.patch("calm", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": false}}))).await.unwrap();
    wait_phase(&api, "calm", "Ready", Duration::from_secs(120)).await;
    assert_eq!(deployments.get("calm-capture").await.unwrap().spec.unwrap().replicas, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_fail_over() {
    let env = setup().await;
    // A second replica in the same namespace: it must wait for the lease.
    let mut extra = HashMap::new();
    extra.insert("KUBECONFIG".to_string(), env.kube.kubeconfig().display().to_string());
    extra.insert("WATCH_NAMESPACE".to_string(), env.ns.clone());
    extra.insert("POD_NAMESPACE".to_string(), env.ns.clone());
    extra.insert("POD_NAME".to_string(), unique("standby"));
    extra.insert("CAIRN_OPERATOR_RETRY_SECS".to_string(), "2".into());
    let standby = Service::start("operator", &extra).await.unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(env.client.clone(), &env.ns);
    wait_until("a lease holder", Duration::from_secs(30), || async {
        leases.get_opt("cairn-operator-leader").await.ok().flatten().and_then(|l| l.spec?.holder_identity).is_some()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leaders = env.operator.metric("cairn_operator_leader").await.unwrap()
        + standby.metric("cairn_operator_leader").await.unwrap();
    assert_eq!(leaders, 1.0, "exactly one replica leads");
    let first_leader_is_standby = standby.metric("cairn_operator_leader").await.unwrap() == 1.0;

    // Kill the leader without letting it release the lease: the other takes over when it expires.
    let (mut leader, follower) =
        if first_leader_is_standby { (standby, env.operator) } else { (env.operator, standby) };
    leader.kill9();
    wait_until("the follower to take over", Duration::from_secs(45), || async {
        follower.metric("cairn_operator_leader").await.unwrap_or(0.0) == 1.0
    })
    .await
    .unwrap();
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    api.create(
        &PostParams::default(),
        &platform("after", &env.kafka.brokers(), &env.ch.url(), &unique("op_events"), &unique("op")),
    )
    .await
    .unwrap();
    wait_phase(&api, "after", "Ready", Duration::from_secs(120)).await;
}
