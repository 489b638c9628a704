//! Dependencies the operator runs itself when the spec asks for `managed` (development and
//! trials): a single-node Kafka in KRaft mode, a ClickHouse server and PostgreSQL, each a
//! one-replica StatefulSet with a Service. Production points `external` at real clusters.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::config::generated_secret_name;
use super::{child_meta, child_name, selector_labels};
use crate::crd::{AnalyticsPlatform, DeletionPolicy, ManagedService};

pub const KAFKA_IMAGE: &str = "apache/kafka:4.1.1";
pub const CLICKHOUSE_IMAGE: &str = "clickhouse/clickhouse-server:25.8";
pub const POSTGRES_IMAGE: &str = "postgres:17";

/// A managed dependency's Service as `<name>.<namespace>.svc`: the operator reaches it from its
/// own namespace, and Kafka advertises it to every client, so the short name is not enough.
fn service_host(ap: &AnalyticsPlatform, component: &str) -> String {
    format!("{}.{}.svc", child_name(ap, component), ap.namespace().unwrap_or_else(|| "default".into()))
}

pub fn managed_kafka_bootstrap(ap: &AnalyticsPlatform) -> String {
    format!("{}:9092", service_host(ap, "kafka"))
}

pub fn managed_clickhouse_url(ap: &AnalyticsPlatform) -> String {
    format!("http://{}:8123", service_host(ap, "clickhouse"))
}

/// `CAIRN_POSTGRES_URL` for managed PostgreSQL, assembled from the generated password.
pub fn managed_postgres_url_env(ap: &AnalyticsPlatform) -> Vec<Value> {
    vec![
        json!({"name": "CAIRN_POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": generated_secret_name(ap), "key": "postgres-password"}}}),
        json!({"name": "CAIRN_POSTGRES_URL", "value": format!("postgres://cairn:$(CAIRN_POSTGRES_PASSWORD)@{}:5432/cairn", service_host(ap, "postgres"))}),
    ]
}

struct Managed<'a> {
    component: &'static str,
    spec: &'a ManagedService,
    image: &'static str,
    port: (&'static str, i32),
    data_path: &'static str,
    env: Vec<Value>,
    args: Option<Vec<&'static str>>,
    run_as: i64,
}

fn statefulset(ap: &AnalyticsPlatform, m: &Managed<'_>) -> StatefulSet {
    let name = child_name(ap, m.component);
    let volume_claims = m.spec.storage.as_ref().map(|size| {
        vec![json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})]
    });
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {}})];
    if volume_claims.is_none() {
        volumes.push(json!({"name": "data", "emptyDir": {}}));
    }
    let mut container = json!({
        "name": m.component,
        "image": m.spec.image.clone().unwrap_or_else(|| m.image.to_string()),
        "ports": [{"name": m.port.0, "containerPort": m.port.1}],
        "env": m.env,
        "volumeMounts": [{"name": "data", "mountPath": m.data_path}, {"name": "tmp", "mountPath": "/tmp"}],
        "readinessProbe": {"tcpSocket": {"port": m.port.0}, "periodSeconds": 5},
        "resources": m.spec.resources.as_ref().map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .unwrap_or_else(|| json!({"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}})),
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
    });
    if let Some(args) = &m.args {
        container["args"] = json!(args);
    }
    let mut spec = json!({
        "serviceName": name,
        "replicas": 1,
        "selector": {"matchLabels": selector_labels(ap, m.component)},
        "template": {
            "metadata": {"labels": super::labels(ap, m.component)},
            "spec": {
                "automountServiceAccountToken": false,
                "securityContext": {"runAsNonRoot": true, "runAsUser": m.run_as, "fsGroup": m.run_as, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": volumes
            }
        }
    });
    if let Some(claims) = volume_claims {
        spec["volumeClaimTemplates"] = json!(claims);
        // The deletion policy, for the data of a dependency the platform runs: Delete removes the
        // volumes with the platform; Retain keeps them (and a platform of the same name created
        // again finds them). Scaling never deletes them.
        let when_deleted = if ap.spec.deletion_policy == DeletionPolicy::Delete { "Delete" } else { "Retain" };
        spec["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": when_deleted, "whenScaled": "Retain"});
    }
    serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": child_meta(ap, name, m.component), "spec": spec}))
        .unwrap_or_default()
}

fn service(ap: &AnalyticsPlatform, component: &str, port: (&str, i32)) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_meta(ap, child_name(ap, component), component),
        "spec": {"selector": selector_labels(ap, component), "ports": [{"name": port.0, "port": port.1, "targetPort": port.0}]}
    }))
    .unwrap_or_default()
}

/// The StatefulSets and Services of every managed dependency the spec asks for.
pub fn managed_dependencies(ap: &AnalyticsPlatform) -> Vec<(StatefulSet, Service)> {
    let mut out = Vec::new();
    if let Some(spec) = &ap.spec.kafka.managed {
        let host = service_host(ap, "kafka");
        let m = Managed {
            component: "kafka",
            spec,
            image: KAFKA_IMAGE,
            port: ("kafka", 9092),
            data_path: "/var/lib/kafka/data",
            env: vec![
                json!({"name": "KAFKA_NODE_ID", "value": "1"}),
                json!({"name": "KAFKA_PROCESS_ROLES", "value": "broker,controller"}),
                json!({"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092,CONTROLLER://:9093"}),
                json!({"name": "KAFKA_ADVERTISED_LISTENERS", "value": format!("PLAINTEXT://{host}:9092")}),
                json!({"name": "KAFKA_CONTROLLER_LISTENER_NAMES", "value": "CONTROLLER"}),
                json!({"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "value": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"}),
                json!({"name": "KAFKA_CONTROLLER_QUORUM_VOTERS", "value": "1@localhost:9093"}),
                json!({"name": "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "value": "1"}),
                json!({"name": "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "value": "1"}),
                json!({"name": "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "value": "1"}),
                json!({"name": "KAFKA_AUTO_CREATE_TOPICS_ENABLE", "value": "false"}),
                json!({"name": "KAFKA_LOG_DIRS", "value": "/var/lib/kafka/data"}),
                json!({"name": "KAFKA_HEAP_OPTS", "value": "-Xmx512m -Xms256m"}),
                // Compaction here is __consumer_offsets only: the cleaner's default 128 MB dedupe
                // buffer would hold a quarter of the heap for good (fuller young GCs, marking).
                json!({"name": "KAFKA_LOG_CLEANER_DEDUPE_BUFFER_SIZE", "value": "16777216"}),
            ],
            args: None,
            run_as: 1000,
        };
        out.push((statefulset(ap, &m), service(ap, "kafka", m.port)));
    }
    if let Some(spec) = &ap.spec.clickhouse.managed {
        let m = Managed {
            component: "clickhouse",
            spec,
            image: CLICKHOUSE_IMAGE,
            port: ("http", 8123),
            data_path: "/var/lib/clickhouse",
            env: vec![
                json!({"name": "CLICKHOUSE_USER", "value": "cairn"}),
                json!({"name": "CLICKHOUSE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": generated_secret_name(ap), "key": "clickhouse-password"}}}),
                json!({"name": "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT", "value": "1"}),
            ],
            args: None,
            run_as: 101,
        };
        out.push((statefulset(ap, &m), service(ap, "clickhouse", m.port)));
    }
    if let Some(spec) = ap.spec.postgres.as_ref().and_then(|p| p.managed.as_ref()) {
        let m = Managed {
            component: "postgres",
            spec,
            image: POSTGRES_IMAGE,
            port: ("postgres", 5432),
            data_path: "/var/lib/postgresql/data",
            env: vec![
                json!({"name": "POSTGRES_USER", "value": "cairn"}),
                json!({"name": "POSTGRES_DB", "value": "cairn"}),
                json!({"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}),
                json!({"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": generated_secret_name(ap), "key": "postgres-password"}}}),
            ],
            args: None,
            run_as: 999,
        };
        out.push((statefulset(ap, &m), service(ap, "postgres", m.port)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ManagedService;
    use crate::resources::fixtures::platform;

    #[test]
    fn managed_kafka_and_clickhouse_with_storage() {
        let mut ap = platform();
        assert!(managed_dependencies(&ap).is_empty(), "external dependencies run nothing");
        ap.spec.kafka.external = None;
        ap.spec.kafka.managed = Some(ManagedService { storage: Some("5Gi".into()), ..Default::default() });
        ap.spec.clickhouse.external = None;
        ap.spec.clickhouse.managed = Some(ManagedService::default());
        let deps = managed_dependencies(&ap);
        assert_eq!(deps.len(), 2);
        let (kafka, svc) = &deps[0];
        assert_eq!(kafka.metadata.name.as_deref(), Some("demo-kafka"));
        assert_eq!(kafka.spec.as_ref().unwrap().volume_claim_templates.as_ref().unwrap().len(), 1);
        assert_eq!(svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port, 9092);
        let ns = ap.namespace().unwrap_or_else(|| "default".into());
        assert_eq!(crate::resources::config::kafka_bootstrap(&ap), format!("demo-kafka.{ns}.svc:9092"));
        assert_eq!(crate::resources::config::clickhouse_url(&ap), format!("http://demo-clickhouse.{ns}.svc:8123"));
        let kafka_spec = kafka.spec.as_ref().unwrap();
        let retention = kafka_spec.persistent_volume_claim_retention_policy.as_ref().unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"), "the default policy keeps the data");
        ap.spec.deletion_policy = DeletionPolicy::Delete;
        let deps = managed_dependencies(&ap);
        let retention = deps[0].0.spec.as_ref().unwrap().persistent_volume_claim_retention_policy.clone().unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
        let ch = &deps[1].0;
        assert!(ch.spec.as_ref().unwrap().volume_claim_templates.is_none(), "no storage: emptyDir");
    }
}
