//! The operator under real cluster conditions (issue: "correct under real cluster conditions, not
//! only on the happy path"): configuration changes roll the pods, autoscaling never drops
//! replicas, objects it does not own are left alone, deletion never drops shared data nor hangs,
//! storage changes, Kafka topic settings made by others survive, upgrades go one platform at a
//! time. All against the real API server of the test control plane (kwok runs the pods) and the
//! test stack's Kafka and ClickHouse.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_e2e::{unique, wait_until};
use cairn_operator::crd::{AnalyticsPlatform, DeletionPolicy};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolume, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service as KubeService,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::json;
use support::{
    condition, database_exists, events, merge, platform, setup, setup_with, topic_config, topic_partitions, wait_phase,
};

/// The config hash on a Deployment's pod template.
async fn template_hash(deployments: &Api<Deployment>, name: &str) -> String {
    let d = deployments.get(name).await.unwrap();
    d.spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get("cairn.dev/config-hash").cloned())
        .unwrap_or_default()
}

/// How many of the namespace's running pods of a component carry `hash`.
async fn pods_with_hash(pods: &Api<Pod>, component: &str, hash: &str) -> usize {
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/component={component}"));
    pods.list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.annotations().get("cairn.dev/config-hash").map(String::as_str) == Some(hash))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_roll_the_pods_and_status_follows_the_rollout() {
    // A short resync: Secrets are not watched, a rotation is seen at the next resync.
    let env = setup_with(&[("CAIRN_OPERATOR_RESYNC_SECS", "3"), ("CAIRN_OPERATOR_PROGRESS_DEADLINE_SECS", "12")]).await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "pg"}, "stringData": {"url": "postgres://a@db:5432/one"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut ap = platform("roll", &env.kafka.brokers(), &env.ch.url(), &unique("op_events"), &unique("op"));
    ap.spec.postgres = Some(serde_json::from_value(json!({"urlSecretRef": "pg"})).unwrap());
    api.create(&PostParams::default(), &ap).await.unwrap();
    wait_phase(&api, "roll", "Ready", Duration::from_secs(120)).await;
    let first = template_hash(&deployments, "roll-capture").await;
    assert_eq!(first.len(), 32, "{first:?}");
    assert_eq!(pods_with_hash(&pods, "capture", &first).await, 2);

    // A quota of exactly the pods running: a rollout (one surge pod at a time) cannot proceed.
    let running = pods.list(&ListParams::default()).await.unwrap().items.len();
    let quotas: Api<ResourceQuota> = Api::namespaced(env.client.clone(), &env.ns);
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "freeze"}, "spec": {"hard": {"pods": running.to_string()}}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    // Same broker, another address: everything still works, but every pod must be rolled to read it.
    let other_address = env.kafka.brokers().replace("127.0.0.1", "localhost");
    api.patch(
        "roll",
        &PatchParams::default(),
        &merge(json!({"spec": {"kafka": {"external": {"bootstrapServers": other_address}}}})),
    )
    .await
    .unwrap();
    let stuck = wait_phase(&api, "roll", "Progressing", Duration::from_secs(60)).await;
    assert_eq!(condition(&stuck, "Ready").status, "False", "old pods on the old address are not Ready");
    let second = template_hash(&deployments, "roll-capture").await;
    assert_ne!(first, second, "the new address is part of the pod template's hash");
    // The rollout cannot progress: after the progress deadline the platform says so.
    let stalled = wait_phase(&api, "roll", "Degraded", Duration::from_secs(90)).await;
    let degraded = condition(&stalled, "Degraded");
    assert_eq!(degraded.reason, "ProgressDeadlineExceeded", "{}", degraded.message);

    // Unfreeze: the rollout completes, every pod reads the new address, Ready again.
    quotas.delete("freeze", &DeleteParams::default()).await.unwrap();
    wait_until("the capture pods to run the new template", Duration::from_secs(120), || async {
        pods_with_hash(&pods, "capture", &second).await == 2
    })
    .await
    .unwrap();
    wait_phase(&api, "roll", "Ready", Duration::from_secs(120)).await;
    assert_eq!(pods_with_hash(&pods, "capture", &first).await, 0);

    // A rotated Secret that the pods read rolls them too.
    secrets
        .patch("pg", &PatchParams::default(), &merge(json!({"stringData": {"url": "postgres://a@db:5432/two"}})))
        .await
        .unwrap();
    wait_until("the rotated Secret to change the template", Duration::from_secs(60), || async {
        template_hash(&deployments, "roll-query").await != second
    })
    .await
    .unwrap();
    let third = template_hash(&deployments, "roll-query").await;
    wait_until("the query pod to run the rotated Secret", Duration::from_secs(120), || async {
        pods_with_hash(&pods, "query", &third).await == 1
    })
    .await
    .unwrap();
    wait_phase(&api, "roll", "Ready", Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_on_and_off_never_drops_replicas() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let mut ap = platform("scale", &env.kafka.brokers(), &env.ch.url(), &unique("op_events"), &unique("op"));
    ap.spec.capture.replicas = Some(3);
    api.create(&PostParams::default(), &ap).await.unwrap();
    wait_phase(&api, "scale", "Ready", Duration::from_secs(120)).await;

    // Every replicas value capture's Deployment takes from here on.
    let seen = Arc::new(Mutex::new(Vec::<i32>::new()));
    let recorder = {
        let seen = seen.clone();
        let stream = watcher(deployments.clone(), watcher::Config::default().fields("metadata.name=scale-capture"))
            .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(d)) = stream.try_next().await {
                if let Some(r) = d.spec.and_then(|s| s.replicas) {
                    seen.lock().unwrap().push(r);
                }
            }
        })
    };
    api.patch(
        "scale",
        &PatchParams::default(),
        &merge(json!({"spec": {"capture": {"replicas": null, "autoscaling": {"minReplicas": 1, "maxReplicas": 5}}}})),
    )
    .await
    .unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(env.client.clone(), &env.ns);
    wait_until("the autoscaler", Duration::from_secs(60), || async {
        hpas.get_opt("scale-capture").await.ok().flatten().is_some()
    })
    .await
    .unwrap();
    wait_phase(&api, "scale", "Ready", Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(deployments.get("scale-capture").await.unwrap().spec.unwrap().replicas, Some(3));

    // Off again, with no replicas in the spec: the count stays.
    api.patch("scale", &PatchParams::default(), &merge(json!({"spec": {"capture": {"autoscaling": null}}})))
        .await
        .unwrap();
    wait_until("the autoscaler to go", Duration::from_secs(60), || async {
        hpas.get_opt("scale-capture").await.ok().flatten().is_none()
    })
    .await
    .unwrap();
    wait_phase(&api, "scale", "Ready", Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| *r == 3), "capture's replicas went through {seen:?}");
    assert_eq!(deployments.get("scale-capture").await.unwrap().spec.unwrap().replicas, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_the_platform_does_not_own_are_neither_overwritten_adopted_nor_deleted() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let services: Api<KubeService> = Api::namespaced(env.client.clone(), &env.ns);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(env.client.clone(), &env.ns);
    // Another release's Service with capture's name, and a hand-made HPA with query's.
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "own-capture", "annotations": {"meta.helm.sh/release-name": "web"}},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    hpas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "own-query"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 2,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &platform("own", &env.kafka.brokers(), &env.ch.url(), &unique("op_events"), &unique("op")),
    )
    .await
    .unwrap();
    let ap = wait_phase(&api, "own", "Degraded", Duration::from_secs(90)).await;
    let degraded = condition(&ap, "Degraded");
    assert_eq!(degraded.reason, "OwnershipConflict");
    assert!(
        degraded.message.contains("Service own-capture") && degraded.message.contains("Helm release web"),
        "{}",
        degraded.message
    );
    wait_until("an Event naming the object", Duration::from_secs(30), || async {
        events(&env.client, &env.ns).await.iter().any(|(r, n)| r == "OwnershipConflict" && n.contains("own-capture"))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let theirs = services.get("own-capture").await.unwrap();
    assert!(theirs.owner_references().is_empty(), "not adopted");
    assert_eq!(theirs.spec.unwrap().selector.unwrap()["app"], "web", "not overwritten");
    assert!(hpas.get_opt("own-query").await.unwrap().is_some(), "not deleted");

    // Out of the way: the platform comes up, and still leaves the HPA alone.
    services.delete("own-capture", &DeleteParams::default()).await.unwrap();
    wait_phase(&api, "own", "Ready", Duration::from_secs(120)).await;
    assert!(hpas.get_opt("own-query").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_platform_keeps_the_topic_and_database_another_platform_uses() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let (topic, database) = (unique("op_events"), unique("op"));
    for name in ["first", "second"] {
        let mut ap = platform(name, &env.kafka.brokers(), &env.ch.url(), &topic, &database);
        ap.spec.deletion_policy = DeletionPolicy::Delete;
        api.create(&PostParams::default(), &ap).await.unwrap();
        wait_phase(&api, name, "Ready", Duration::from_secs(120)).await;
    }
    api.delete("first", &DeleteParams::default()).await.unwrap();
    wait_until("the first platform to be gone", Duration::from_secs(60), || async {
        api.get_opt("first").await.map(|a| a.is_none()).unwrap_or(false)
    })
    .await
    .unwrap();
    assert_eq!(topic_partitions(&env.kafka.brokers(), &topic), 4, "the shared topic stays");
    assert!(database_exists(&env.ch, &database).await, "the shared database stays");
    assert!(
        events(&env.client, &env.ns)
            .await
            .iter()
            .any(|(r, n)| r == "ExternalStateCleaned" && n.contains("kept database")),
        "{:?}",
        events(&env.client, &env.ns).await
    );
    // The last user takes them with it.
    api.delete("second", &DeleteParams::default()).await.unwrap();
    wait_until("the topic to be deleted", Duration::from_secs(90), || async {
        topic_partitions(&env.kafka.brokers(), &topic) == 0
    })
    .await
    .unwrap();
    wait_until("the database to be dropped", Duration::from_secs(30), || async {
        !database_exists(&env.ch, &database).await
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_deletion_never_hangs_on_cleanup_and_retain_keeps_the_credentials() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    // Delete policy, a ClickHouse that never answers, credentials in a Secret.
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "ch-creds"}, "stringData": {"username": "default", "password": ""}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut stuck = platform("stuck", &env.kafka.brokers(), "http://127.0.0.1:9", &unique("op_events"), &unique("op"));
    stuck.spec.clickhouse.external.as_mut().unwrap().credentials_secret_ref = Some("ch-creds".into());
    stuck.spec.deletion_policy = DeletionPolicy::Delete;
    api.create(&PostParams::default(), &stuck).await.unwrap();
    wait_phase(&api, "stuck", "Degraded", Duration::from_secs(90)).await;

    // Retain, with managed dependencies: the generated credentials outlive the platform.
    let mut kept = platform("kept", &env.kafka.brokers(), &env.ch.url(), &unique("op_events"), &unique("op"));
    kept.spec.postgres = Some(serde_json::from_value(json!({"managed": {}})).unwrap());
    api.create(&PostParams::default(), &kept).await.unwrap();
    wait_until("the generated credentials", Duration::from_secs(60), || async {
        secrets.get_opt("kept-credentials").await.ok().flatten().is_some()
    })
    .await
    .unwrap();
    let before = secrets.get("kept-credentials").await.unwrap().data.unwrap();
    api.delete("kept", &DeleteParams::default()).await.unwrap();
    wait_until("the retained platform to be gone", Duration::from_secs(60), || async {
        api.get_opt("kept").await.map(|a| a.is_none()).unwrap_or(false)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(secrets.get_opt("kept-credentials").await.unwrap().is_some(), "Retain keeps the credentials");
    api.create(&PostParams::default(), &kept).await.unwrap();
    let again = wait_phase(&api, "kept", "Ready", Duration::from_secs(120)).await;
    assert_eq!(secrets.get("kept-credentials").await.unwrap().data.unwrap(), before, "the same passwords again");
    assert!(again.status.unwrap().conditions.iter().all(|c| c.reason != "OwnershipConflict"));

    // The namespace goes, its Secrets first as far as the platform is concerned: no hang.
    secrets.delete("ch-creds", &DeleteParams::default()).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces.delete(&env.ns, &DeleteParams::default()).await.unwrap();
    wait_until("the namespace to be deleted", Duration::from_secs(120), || async {
        namespaces.get_opt(&env.ns).await.map(|n| n.is_none()).unwrap_or(false)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigger_volume_expands_the_claims_where_the_class_allows_and_never_blocks_other_changes() {
    let env = setup().await;
    let classes: Api<StorageClass> = Api::all(env.client.clone());
    let expandable = unique("expandable").replace('_', "-");
    let fixed = unique("fixed").replace('_', "-");
    for (name, expand) in [(&expandable, true), (&fixed, false)] {
        classes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name}, "provisioner": "kubernetes.io/no-provisioner",
                    "allowVolumeExpansion": expand, "volumeBindingMode": "Immediate"
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let mut ap = platform("vol", &env.kafka.brokers(), &env.ch.url(), &unique("op_events"), &unique("op"));
    ap.spec.postgres =
        Some(serde_json::from_value(json!({"managed": {"storage": "1Gi", "storageClassName": expandable}})).unwrap());
    api.create(&PostParams::default(), &ap).await.unwrap();
    // A volume for the claim (no provisioner here), bound by the PV controller.
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let pv = unique("pv").replace('_', "-");
    pvs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": pv},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": expandable,
                     "hostPath": {"path": "/tmp/cairn-test-pv"},
                     "claimRef": {"namespace": env.ns, "name": "data-vol-postgres-0"}}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), &env.ns);
    wait_until("the claim to be bound", Duration::from_secs(90), || async {
        pvcs.get_opt("data-vol-postgres-0").await.ok().flatten().and_then(|c| c.status?.phase).as_deref()
            == Some("Bound")
    })
    .await
    .unwrap();

    api.patch("vol", &PatchParams::default(), &merge(json!({"spec": {"postgres": {"managed": {"storage": "2Gi"}}}})))
        .await
        .unwrap();
    wait_until("the claim to ask for 2Gi", Duration::from_secs(60), || async {
        let c = pvcs.get("data-vol-postgres-0").await.unwrap();
        c.spec.and_then(|s| s.resources?.requests?.get("storage").cloned()).map(|q| q.0).as_deref() == Some("2Gi")
    })
    .await
    .unwrap();
    let ap = api.get("vol").await.unwrap();
    assert!(ap.status.unwrap().conditions.iter().all(|c| c.reason != "ApplyFailed"), "no ApplyFailed");

    // A class that does not expand: status says so, and an image change still applies.
    let mut other = platform("fix", &env.kafka.brokers(), &env.ch.url(), &unique("op_events"), &unique("op"));
    other.spec.postgres =
        Some(serde_json::from_value(json!({"managed": {"storage": "1Gi", "storageClassName": fixed}})).unwrap());
    api.create(&PostParams::default(), &other).await.unwrap();
    let pv2 = unique("pv").replace('_', "-");
    pvs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": pv2},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": fixed,
                     "hostPath": {"path": "/tmp/cairn-test-pv"},
                     "claimRef": {"namespace": env.ns, "name": "data-fix-postgres-0"}}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    wait_until("the second claim to be bound", Duration::from_secs(90), || async {
        pvcs.get_opt("data-fix-postgres-0").await.ok().flatten().and_then(|c| c.status?.phase).as_deref()
            == Some("Bound")
    })
    .await
    .unwrap();
    api.patch(
        "fix",
        &PatchParams::default(),
        &merge(json!({"spec": {"postgres": {"managed": {"storage": "3Gi", "image": "registry.local/postgres:18"}}}})),
    )
    .await
    .unwrap();
    let statefulsets: Api<StatefulSet> = Api::namespaced(env.client.clone(), &env.ns);
    wait_until("the image change to apply", Duration::from_secs(60), || async {
        let s = statefulsets.get("fix-postgres").await.unwrap();
        s.spec.and_then(|s| s.template.spec).and_then(|p| p.containers[0].image.clone()).as_deref()
            == Some("registry.local/postgres:18")
    })
    .await
    .unwrap();
    wait_until("status to say the volume cannot grow", Duration::from_secs(60), || async {
        let ap = api.get("fix").await.unwrap();
        ap.status
            .map(|s| {
                s.managed
                    .iter()
                    .any(|m| m.storage_message.as_deref().unwrap_or("").contains("does not allow expansion"))
            })
            .unwrap_or(false)
    })
    .await
    .unwrap();
    let c = pvcs.get("data-fix-postgres-0").await.unwrap();
    assert_eq!(c.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0, "1Gi");
    for name in [&pv, &pv2] {
        let _ = pvs.delete(name, &DeleteParams::default()).await;
    }
    for name in [&expandable, &fixed] {
        let _ = classes.delete(name, &DeleteParams::default()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_settings_change_incrementally_and_durably() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let topic = unique("op_events");
    api.create(
        &PostParams::default(),
        &platform("durable", &env.kafka.brokers(), &env.ch.url(), &topic, &unique("op")),
    )
    .await
    .unwrap();
    let ap = wait_phase(&api, "durable", "Ready", Duration::from_secs(120)).await;
    assert_eq!(ap.status.unwrap().kafka.unwrap().replication_factor, Some(1), "min(3, one broker)");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", env.kafka.brokers()).create().unwrap();
    let before = topic_config(&admin, &topic).await;
    assert_eq!(before["min.insync.replicas"], "1");
    assert_eq!(before["retention.ms"], (168 * 3_600_000i64).to_string());
    // Someone else tunes the topic.
    tokio::task::block_in_place(|| {
        cairn_common::kafka::incremental_alter_topic_config(
            admin.inner(),
            &topic,
            &[("segment.ms", "3600000".to_string())],
            Duration::from_secs(10),
        )
    })
    .unwrap();
    api.patch(
        "durable",
        &PatchParams::default(),
        &merge(json!({"spec": {"kafka": {"topic": {"retentionHours": 48}}}})),
    )
    .await
    .unwrap();
    wait_until("retention to follow the spec", Duration::from_secs(60), || async {
        topic_config(&admin, &topic).await["retention.ms"] == (48 * 3_600_000i64).to_string()
    })
    .await
    .unwrap();
    assert_eq!(topic_config(&admin, &topic).await["segment.ms"], "3600000", "others' settings stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_of_the_default_version_go_one_platform_at_a_time() {
    let env = setup_with(&[("CAIRN_OPERATOR_DEFAULT_VERSION", "1.0.0")]).await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let names = ["up-a", "up-b", "up-c"];
    for name in names {
        api.create(
            &PostParams::default(),
            &platform(name, &env.kafka.brokers(), &env.ch.url(), &unique("op_events"), &unique("op")),
        )
        .await
        .unwrap();
    }
    for name in names {
        let ap = wait_phase(&api, name, "Ready", Duration::from_secs(120)).await;
        assert_eq!(ap.status.unwrap().version.as_deref(), Some("1.0.0"));
    }
    // The operator is upgraded: its default version is now 2.0.0.
    let mut old = env.operator;
    old.kill9();
    let _new = support::start_operator(&env.kube, &env.ns, &[("CAIRN_OPERATOR_DEFAULT_VERSION", "2.0.0")]).await;
    let mut most_at_once = 0;
    let mut waited = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let mut rolling = 0;
        let mut done = 0;
        for name in names {
            let image = deployments
                .get(&format!("{name}-capture"))
                .await
                .unwrap()
                .spec
                .and_then(|s| s.template.spec)
                .and_then(|p| p.containers[0].image.clone())
                .unwrap_or_default();
            let ap = api.get(name).await.unwrap();
            let status = ap.status.clone().unwrap_or_default();
            if image.ends_with(":2.0.0") && status.version.as_deref() != Some("2.0.0") {
                rolling += 1;
            }
            if status.version.as_deref() == Some("2.0.0") && status.phase.as_deref() == Some("Ready") {
                done += 1;
            }
            waited |= status.conditions.iter().any(|c| c.type_ == "UpgradePending" && c.status == "True");
        }
        most_at_once = most_at_once.max(rolling);
        if done == names.len() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "upgrades did not finish: {done} of 3 done");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(most_at_once, 1, "at most one platform rolls to a new default at a time");
    assert!(waited, "the others said they were waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_leader_stops_acting_when_its_lease_expires() {
    let env = setup_with(&[("CAIRN_OPERATOR_RESYNC_SECS", "1"), ("CAIRN_OPERATOR_RETRY_SECS", "1")]).await;
    let standby = support::start_operator(
        &env.kube,
        &env.ns,
        &[("CAIRN_OPERATOR_RESYNC_SECS", "1"), ("CAIRN_OPERATOR_RETRY_SECS", "1")],
    )
    .await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    api.create(
        &PostParams::default(),
        &platform("lead", &env.kafka.brokers(), &env.ch.url(), &unique("op_events"), &unique("op")),
    )
    .await
    .unwrap();
    wait_phase(&api, "lead", "Ready", Duration::from_secs(120)).await;
    let (leader, follower) = if env.operator.metric("cairn_operator_leader").await.unwrap() == 1.0 {
        (&env.operator, &standby)
    } else {
        (&standby, &env.operator)
    };
    assert_eq!(follower.metric("cairn_operator_leader").await.unwrap(), 0.0);
    // The leader stalls (as a process under a long pause would) with reconciles due every second.
    let pid = leader.pid().unwrap() as libc::pid_t;
    let ok_before = leader.metric("cairn_operator_reconciles_total{result=\"ok\"}").await.unwrap();
    // SAFETY: signals to a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    wait_until("the follower to take the expired lease", Duration::from_secs(60), || async {
        follower.metric("cairn_operator_leader").await.unwrap_or(0.0) == 1.0
    })
    .await
    .unwrap();
    // The new leader acts on a change the stalled one has not seen.
    api.patch("lead", &PatchParams::default(), &merge(json!({"spec": {"capture": {"replicas": 3}}}))).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    wait_until("the new leader to scale capture", Duration::from_secs(60), || async {
        deployments.get("lead-capture").await.ok().and_then(|d| d.spec?.replicas) == Some(3)
    })
    .await
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<i32>::new()));
    let recorder = {
        let seen = seen.clone();
        let stream = watcher(deployments.clone(), watcher::Config::default().fields("metadata.name=lead-capture"))
            .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(d)) = stream.next().await {
                if let Some(r) = d.spec.and_then(|s| s.replicas) {
                    seen.lock().unwrap().push(r);
                }
            }
        })
    };
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    tokio::time::sleep(Duration::from_secs(8)).await;
    recorder.abort();
    assert_eq!(leader.metric("cairn_operator_leader").await.unwrap(), 0.0, "the old leader stepped down");
    let ok_after = leader.metric("cairn_operator_reconciles_total{result=\"ok\"}").await.unwrap();
    assert_eq!(ok_before, ok_after, "the old leader completed no reconcile after its lease expired");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|r| *r == 3), "capture's replicas went through {seen:?} after the old leader woke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_backfill_runs_apart_from_reconciles_once_and_survives_a_restart() {
    use cairn_common::clickhouse::{migrate_with, MIGRATIONS};
    use cairn_common::config::ClickHouseConfig;
    let env = setup().await;
    // A database at migration 1 holding millions of events: migration 2's copy of them into
    // events_by_person takes a while.
    let database = unique("op");
    let cfg = ClickHouseConfig {
        url: env.ch.url(),
        database: database.clone(),
        user: "default".into(),
        password: None,
        lz4: false,
        event_ttl_days: 0,
        cluster: None,
    };
    migrate_with(&cfg, &MIGRATIONS[..1]).await.unwrap();
    let db = env.ch.db(&database);
    db.rows(
        "INSERT INTO events (uuid, project_id, event, distinct_id, properties, timestamp, received_at) \
         SELECT generateUUIDv4(), 1, 'e', toString(number % 100000), '{}', \
                toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + toIntervalSecond(number % 5000000), now64(3) \
         FROM numbers(15000000)",
    )
    .await
    .unwrap();
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    api.create(
        &PostParams::default(),
        &platform("fill", &env.kafka.brokers(), &env.ch.url(), &unique("op_events"), &database),
    )
    .await
    .unwrap();
    // The schema is applied and the platform is Ready while the copy still runs.
    let mut operator = env.operator;
    wait_until("the backfill to run", Duration::from_secs(60), || async {
        let ap = api.get("fill").await.unwrap();
        ap.status.and_then(|s| s.clickhouse).is_some_and(|c| {
            c.schema_version == MIGRATIONS.len() as u32 && c.backfills.iter().any(|b| b.state == "Running")
        })
    })
    .await
    .unwrap();
    // Reconciles go on every 2 s while it runs; none sends the copy again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(operator.metric("cairn_operator_backfills_started_total").await.unwrap(), 1.0);
    let reconciles = operator.metric("cairn_operator_reconcile_duration_seconds_count").await.unwrap();
    // (The copy of 15 million rows takes tens of seconds; no reconcile waited for it.)
    let quick = operator.metric("cairn_operator_reconcile_duration_seconds_bucket{le=\"5.12\"}").await.unwrap();
    assert!(reconciles >= 2.0 && quick == reconciles, "{quick} of {reconciles} reconciles under 5.12 s");
    // The operator restarts mid-copy: the copy is finished (again, harmlessly) by the next one.
    operator.kill9();
    let next = support::start_operator(&env.kube, &env.ns, &[]).await;
    wait_until("the backfill to be done", Duration::from_secs(240), || async {
        let ap = api.get("fill").await.unwrap();
        ap.status.and_then(|s| s.clickhouse).is_some_and(|c| c.backfills.is_empty())
    })
    .await
    .unwrap();
    let events = db.scalar("SELECT count() FROM events FINAL").await.unwrap();
    let copied = db.scalar("SELECT count() FROM events_by_person FINAL").await.unwrap();
    assert_eq!((events, copied), (15_000_000, 15_000_000));
    drop(next);
}

/// The query service reads ClickHouse through an account of its own that can read the platform's
/// database and do nothing else; credentials made by an earlier operator version get its
/// password added; a rotated password takes effect; the account goes with the platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_reads_clickhouse_through_a_read_only_account_of_its_own() {
    // A short resync: Secrets are not watched, a rotation is seen at the next resync.
    let env = setup_with(&[("CAIRN_OPERATOR_RESYNC_SECS", "3")]).await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let (topic, database) = (unique("op_events"), unique("op"));
    // Credentials as an earlier operator version made them: no query password.
    let old: Secret = serde_json::from_value(json!({
        "metadata": {"name": "reader-credentials", "annotations": {"cairn.dev/credentials-of": format!("{}/reader", env.ns)}},
        "stringData": {"clickhouse-password": "a", "postgres-password": "b", "auth-token-key": "c", "internal-token": "d"}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &old).await.unwrap();
    let mut ap = platform("reader", &env.kafka.brokers(), &env.ch.url(), &topic, &database);
    ap.spec.deletion_policy = DeletionPolicy::Delete;
    api.create(&PostParams::default(), &ap).await.unwrap();
    let ready = wait_phase(&api, "reader", "Ready", Duration::from_secs(120)).await;
    let user = format!("cairn_query.{}.reader", env.ns);
    assert_eq!(ready.status.and_then(|s| s.clickhouse).and_then(|c| c.query_user), Some(user.clone()));

    // The key was added, the others kept.
    let data = secrets.get("reader-credentials").await.unwrap().data.unwrap();
    assert_eq!(data["internal-token"].0, b"d", "existing keys are never replaced");
    let password = String::from_utf8(data["clickhouse-query-password"].0.clone()).unwrap();
    assert!(password.len() >= 32);

    // Query's pods read it.
    wait_until("query's Deployment to use the account", Duration::from_secs(60), || async {
        let d = deployments.get("reader-query").await.unwrap();
        let env = d.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap_or_default();
        let user_ok =
            env.iter().any(|e| e.name == "CAIRN_CLICKHOUSE_USER" && e.value.as_deref() == Some(user.as_str()));
        let password_ok = env.iter().any(|e| {
            e.name == "CAIRN_CLICKHOUSE_PASSWORD"
                && e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).map(|k| k.key.as_str())
                    == Some("clickhouse-query-password")
        });
        user_ok && password_ok
    })
    .await
    .unwrap();

    // It reads the platform's database and nothing else.
    let as_query = |password: &str| {
        clickhouse::Client::default()
            .with_url(env.ch.url())
            .with_user(&user)
            .with_password(password)
            .with_database(&database)
    };
    let reader = as_query(&password);
    let n: u64 = reader.query("SELECT count() FROM events").fetch_one().await.unwrap();
    assert_eq!(n, 0);
    let other = unique("op_other");
    env.ch.db("default").rows(&format!("CREATE DATABASE {other}")).await.unwrap();
    env.ch
        .db("default")
        .rows(&format!("CREATE TABLE {other}.t (a UInt8) ENGINE = MergeTree ORDER BY a"))
        .await
        .unwrap();
    for sql in [
        "INSERT INTO events (uuid, project_id, event, distinct_id, timestamp) SELECT generateUUIDv4(), 1, 'x', 'y', now64(3)".to_string(),
        "ALTER TABLE events DELETE WHERE 1".to_string(),
        "DROP TABLE events".to_string(),
        "CREATE TABLE mine (a UInt8) ENGINE = Memory".to_string(),
        format!("SELECT count() FROM {other}.t"),
        format!("CREATE USER IF NOT EXISTS `sneaky` IDENTIFIED WITH sha256_hash BY '{}' SALT 's'", "0".repeat(64)),
    ] {
        let refused = reader.query(&sql).execute().await;
        assert!(refused.is_err(), "the query account could run: {sql}");
    }
    assert!(as_query("wrong").query("SELECT 1").execute().await.is_err(), "a wrong password is refused");

    // A rotated password takes effect.
    let rotated = "rotated-query-password-0123456789abcdef";
    secrets
        .patch(
            "reader-credentials",
            &PatchParams::default(),
            &merge(json!({"stringData": {"clickhouse-query-password": rotated}})),
        )
        .await
        .unwrap();
    wait_until("the rotated password to work", Duration::from_secs(60), || async {
        as_query(rotated).query("SELECT count() FROM events").fetch_one::<u64>().await.is_ok()
    })
    .await
    .unwrap();
    assert!(as_query(&password).query("SELECT 1").execute().await.is_err(), "the old password is refused");

    // The account goes with the platform.
    let users = || async { env.ch.db("default").rows("SHOW USERS").await.unwrap() };
    let named = |rows: Vec<serde_json::Value>| rows.iter().any(|u| u["name"] == user.as_str());
    assert!(named(users().await), "{:?}", users().await);
    api.delete("reader", &DeleteParams::default()).await.unwrap();
    wait_until("the platform to be gone", Duration::from_secs(60), || async {
        api.get_opt("reader").await.map(|a| a.is_none()).unwrap_or(false)
    })
    .await
    .unwrap();
    assert!(!named(users().await), "{:?}", users().await);
}
