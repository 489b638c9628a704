//! What the operator's integration tests share: a namespace of their own on the test control plane
//! (kube-apiserver, etcd, kube-controller-manager, kube-scheduler and kwok, so Deployments get Pods
//! that become Ready), the test stack's real Kafka and ClickHouse, and an operator process watching
//! only that namespace.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cairn_e2e::{unique, wait_until, Service, TestClickHouse, TestKafka, TestKube};
use cairn_operator::crd::AnalyticsPlatform;
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{Api, ListParams, Patch, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::ClientConfig;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

pub struct Env {
    pub kube: TestKube,
    pub kafka: TestKafka,
    pub ch: TestClickHouse,
    pub client: Client,
    pub ns: String,
    pub operator: Service,
}

/// The CRD applied, a fresh namespace, and an operator watching it with `extra` in its
/// environment (on top of a 2 s retry and a 10 s dependency timeout).
pub async fn setup_with(extra: &[(&str, &str)]) -> Env {
    let kube = TestKube::shared().unwrap();
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let crd = cairn_e2e::repo_root().join("crds/analyticsplatform.yaml");
    kube.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &crd.display().to_string()]).unwrap();
    kube.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd/analyticsplatforms.cairn.dev"])
        .unwrap();
    let client = client(&kube).await;
    let ns = unique("ns").replace('_', "-");
    create_namespace(&client, &ns).await;
    let operator = start_operator(&kube, &ns, extra).await;
    Env { kube, kafka, ch, client, ns, operator }
}

pub async fn setup() -> Env {
    setup_with(&[]).await
}

pub async fn client(kube: &TestKube) -> Client {
    let kc = Kubeconfig::read_from(kube.kubeconfig()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(cfg).unwrap()
}

pub async fn create_namespace(client: &Client, ns: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
}

/// An operator process watching `ns` (its lease there too), with a 2 s retry, a 10 s dependency
/// timeout and the heartbeat off unless `extra` says otherwise.
pub async fn start_operator(kube: &TestKube, ns: &str, extra: &[(&str, &str)]) -> Service {
    let mut env = HashMap::new();
    env.insert("KUBECONFIG".to_string(), kube.kubeconfig().display().to_string());
    env.insert("WATCH_NAMESPACE".to_string(), ns.to_string());
    env.insert("POD_NAMESPACE".to_string(), ns.to_string());
    env.insert("POD_NAME".to_string(), unique("operator"));
    env.insert("CAIRN_OPERATOR_RETRY_SECS".to_string(), "2".into());
    env.insert("CAIRN_OPERATOR_DEPENDENCY_TIMEOUT_SECS".to_string(), "10".into());
    // kwok's pods run nothing: no capture takes heartbeats here (the heartbeat's own tests turn
    // it on; on the kind cluster it runs as in production).
    env.insert("CAIRN_OPERATOR_HEARTBEAT_SECS".to_string(), "0".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Service::start("operator", &env).await.unwrap()
}

pub fn platform(name: &str, brokers: &str, clickhouse: &str, topic: &str, database: &str) -> AnalyticsPlatform {
    serde_json::from_value(json!({
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "AnalyticsPlatform",
        "metadata": {"name": name},
        "spec": {
            "capture": {"replicas": 2},
            "consumer": {"replicas": 1},
            "query": {"replicas": 1},
            "auth": {"replicas": 1},
            "kafka": {"external": {"bootstrapServers": brokers}, "topic": {"name": topic, "partitions": 4}},
            // The test bed's ClickHouse keeps its data on this machine's disk, which the builds
            // share (often under 15 % free): pressure is tested with a threshold of its own.
            "clickhouse": {"external": {"url": clickhouse}, "database": database, "minFreeDiskPercent": 1}
        }
    }))
    .unwrap()
}

/// Waits until the platform reports `phase` for its current generation.
pub async fn wait_phase(api: &Api<AnalyticsPlatform>, name: &str, phase: &str, timeout: Duration) -> AnalyticsPlatform {
    let result = wait_until(&format!("{name} to be {phase}"), timeout, || async {
        match api.get(name).await {
            Ok(ap) => {
                let s = ap.status.clone().unwrap_or_default();
                s.phase.as_deref() == Some(phase) && s.observed_generation == ap.metadata.generation
            }
            Err(_) => false,
        }
    })
    .await;
    let ap = api.get(name).await.unwrap();
    if let Err(e) = result {
        panic!("{e}; status: {}", serde_json::to_string_pretty(&ap.status).unwrap());
    }
    ap
}

/// A condition of the platform as it is now.
pub fn condition(ap: &AnalyticsPlatform, type_: &str) -> cairn_operator::crd::Condition {
    ap.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_).cloned())
        .unwrap_or_else(|| panic!("no {type_} condition: {:?}", ap.status))
}

pub fn topic_partitions(brokers: &str, topic: &str) -> usize {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    md.topics().first().map(|t| if t.error().is_some() { 0 } else { t.partitions().len() }).unwrap_or(0)
}

/// A JSON merge patch.
pub fn merge(v: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(v)
}

/// A topic's settings as the broker describes them.
pub async fn topic_config(admin: &AdminClient<DefaultClientContext>, topic: &str) -> BTreeMap<String, String> {
    let r = admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()).await.unwrap();
    let r = r.into_iter().next().unwrap().unwrap();
    r.entries.iter().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect()
}

/// Commits the log end of every partition of `topic` for `group`: as if its consumers had read
/// everything.
pub fn drain(brokers: &str, topic: &str, group: &str) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        let (_, high) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).unwrap();
        tpl.add_partition_offset(topic, p.id(), Offset::Offset(high)).unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

/// The reasons and notes of the namespace's Events.
pub async fn events(client: &Client, ns: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

/// Whether a ClickHouse database exists.
pub async fn database_exists(ch: &TestClickHouse, database: &str) -> bool {
    !ch.db("default")
        .rows(&format!("SELECT name FROM system.databases WHERE name = '{database}'"))
        .await
        .unwrap()
        .is_empty()
}
