//! Dependencies the operator runs itself when the spec asks for `managed`: Kafka in KRaft mode as
//! one broker (development and trials) or a quorum of three or more combined broker-controllers,
//! a ClickHouse server and PostgreSQL (one-replica StatefulSets), each with a Service. ClickHouse
//! and PostgreSQL past one node are `external`.
//!
//! A Kafka quorum (`managed.replicas` ≥ 3): the brokers find each other through a headless Service
//! (`<platform>-kafka-brokers`, which also publishes not-yet-ready pods: the controllers must meet
//! before any broker is ready), each takes its node id from its pod index, and the static voter
//! set names every pod. Kafka's own topics and new topics get RF 3 and `min.insync.replicas` 2; the
//! pods prefer distinct nodes and zones; a PodDisruptionBudget lets one go at a time, which keeps
//! both the controller majority and two in-sync replicas of every partition.

use cairn_common::config::catalogue;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ResourceRequirements, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::config::generated_secret_name;
use super::{build, child_meta, child_name, selector_labels, to_json, BuildError};
use crate::crd::{AnalyticsPlatform, DeletionPolicy, ManagedService};

/// The size limit of a managed dependency's data when it has no volume (`storage` unset): the
/// kubelet evicts the pod beyond it instead of letting it fill the node's disk.
pub const EMPTY_DIR_DATA_LIMIT: &str = "10Gi";
/// The size limit of every `/tmp`.
pub const EMPTY_DIR_TMP_LIMIT: &str = "1Gi";

pub const KAFKA_IMAGE: &str = "apache/kafka:4.1.1";
pub const CLICKHOUSE_IMAGE: &str = "clickhouse/clickhouse-server:25.8";
pub const POSTGRES_IMAGE: &str = "postgres:17";

/// A managed dependency's Service as `<name>.<namespace>.svc`: the operator reaches it from its
/// own namespace, and Kafka advertises it to every client, so the short name is not enough.
/// `<platform>-<component>.<namespace>.svc`: a name that cannot fall through to the node's
/// resolver as a bare word.
pub fn service_host(ap: &AnalyticsPlatform, component: &str) -> String {
    format!("{}.{}.svc", child_name(ap, component), ap.namespace().unwrap_or_else(|| "default".into()))
}

pub fn managed_kafka_bootstrap(ap: &AnalyticsPlatform) -> String {
    format!("{}:9092", service_host(ap, "kafka"))
}

/// How many brokers the managed Kafka runs (1 unless `replicas` says more).
pub fn managed_kafka_brokers(ap: &AnalyticsPlatform) -> i32 {
    ap.spec.kafka.managed.as_ref().and_then(|m| m.replicas).unwrap_or(1).max(1)
}

/// The headless Service a quorum's brokers find each other through.
pub fn kafka_brokers_service(ap: &AnalyticsPlatform) -> String {
    child_name(ap, "kafka-brokers")
}

/// The KRaft cluster id of a managed quorum: the platform's uid as Kafka writes ids (its 16 bytes
/// in URL-safe base64 without padding), the same for every broker and every reconcile.
pub fn kafka_cluster_id(ap: &AnalyticsPlatform) -> Result<String, BuildError> {
    use base64::Engine;
    let unbuildable =
        |reason: String| BuildError::Unbuildable { kind: "StatefulSet", name: child_name(ap, "kafka"), reason };
    let uid = ap.uid().ok_or_else(|| unbuildable("the platform has no uid yet".into()))?;
    let id = uuid::Uuid::parse_str(&uid).map_err(|e| unbuildable(format!("the platform's uid {uid}: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes()))
}

/// The environment of a quorum's brokers: the node id from the pod's index, the address each
/// advertises (its own pod name under the headless Service), the static voter set, one cluster
/// id, and RF 3 / `min.insync.replicas` 2 for Kafka's own topics and new topics.
fn kafka_quorum_env(ap: &AnalyticsPlatform, brokers: i32) -> Result<Vec<Value>, BuildError> {
    let ns = ap.namespace().unwrap_or_else(|| "default".into());
    let (sts, headless) = (child_name(ap, "kafka"), kafka_brokers_service(ap));
    let voters = (0..brokers).map(|i| format!("{i}@{sts}-{i}.{headless}.{ns}.svc:9093")).collect::<Vec<_>>().join(",");
    let rf = brokers.min(3);
    Ok(vec![
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        // The StatefulSet controller labels each pod with its index (Kubernetes 1.28 and later).
        json!({"name": "KAFKA_NODE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}}),
        json!({"name": "CLUSTER_ID", "value": kafka_cluster_id(ap)?}),
        json!({"name": "KAFKA_PROCESS_ROLES", "value": "broker,controller"}),
        json!({"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092,CONTROLLER://:9093"}),
        json!({"name": "KAFKA_ADVERTISED_LISTENERS", "value": format!("PLAINTEXT://$(POD_NAME).{headless}.{ns}.svc:9092")}),
        json!({"name": "KAFKA_CONTROLLER_LISTENER_NAMES", "value": "CONTROLLER"}),
        json!({"name": "KAFKA_INTER_BROKER_LISTENER_NAME", "value": "PLAINTEXT"}),
        json!({"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "value": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"}),
        json!({"name": "KAFKA_CONTROLLER_QUORUM_VOTERS", "value": voters}),
        json!({"name": "KAFKA_DEFAULT_REPLICATION_FACTOR", "value": rf.to_string()}),
        json!({"name": "KAFKA_MIN_INSYNC_REPLICAS", "value": (rf - 1).to_string()}),
        json!({"name": "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "value": rf.to_string()}),
        json!({"name": "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "value": rf.to_string()}),
        json!({"name": "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "value": (rf - 1).to_string()}),
        json!({"name": "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", "value": rf.to_string()}),
        json!({"name": "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "value": (rf - 1).to_string()}),
        // A replica that came back takes leadership of its partitions again, so leaders stay
        // spread over the brokers after a restart.
        json!({"name": "KAFKA_AUTO_LEADER_REBALANCE_ENABLE", "value": "true"}),
    ])
}

pub fn managed_clickhouse_url(ap: &AnalyticsPlatform) -> String {
    format!("http://{}:8123", service_host(ap, "clickhouse"))
}

/// A variable of the pod only for Kubernetes to substitute into `CAIRN_POSTGRES_URL` (no
/// service reads it).
pub const POSTGRES_PASSWORD_HELPER: &str = "CAIRN_POSTGRES_PASSWORD";

/// `CAIRN_POSTGRES_URL` for managed PostgreSQL, assembled from the generated password.
pub fn managed_postgres_url_env(ap: &AnalyticsPlatform) -> Vec<Value> {
    vec![
        json!({"name": POSTGRES_PASSWORD_HELPER, "valueFrom": {"secretKeyRef": {"name": generated_secret_name(ap), "key": "postgres-password"}}}),
        json!({"name": catalogue::POSTGRES_URL.name, "value": format!("postgres://cairn:$({POSTGRES_PASSWORD_HELPER})@{}:5432/cairn", service_host(ap, "postgres"))}),
    ]
}

/// One managed dependency: what its StatefulSet and Service are built from.
pub struct Managed<'a> {
    pub component: &'static str,
    spec: &'a ManagedService,
    /// Pods: 1, or a Kafka quorum's brokers.
    replicas: i32,
    image: &'static str,
    port: (&'static str, i32),
    data_path: &'static str,
    env: Vec<Value>,
    args: Option<Vec<&'static str>>,
    run_as: i64,
    /// Requests and limits: the spec's, else this dependency's defaults.
    resources: Value,
}

/// What every managed dependency gets when the spec gives no resources.
fn default_resources() -> Value {
    json!({"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}})
}

/// The broker's defaults: a 4 GiB limit, so that the heap can be 2 GiB (see [`kafka_heap_opts`]).
fn kafka_default_resources() -> Value {
    json!({"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}})
}

/// The broker's heap: half its container's memory limit (the rest is for the page cache, which
/// Kafka reads and writes through, and the JVM's own memory), between 256 MiB and 8 GiB; 1 GiB,
/// Kafka's own default, when there is no limit. Initial = maximum, as Kafka's scripts do: at
/// 25,000 events/s a 512 MiB ZGC heap ran a collection every ~20 s, and those cycles held
/// capture's whole p99 tail (docs/BENCHMARKS.md).
pub fn kafka_heap_opts(resources: Option<&Value>) -> String {
    const MIB: u64 = 1 << 20;
    let limit =
        resources.and_then(|r| r.pointer("/limits/memory")).and_then(Value::as_str).and_then(parse_quantity_bytes);
    let heap_mib = match limit {
        Some(bytes) => (bytes / 2 / MIB).clamp(256, 8192),
        None => 1024,
    };
    format!("-Xmx{heap_mib}m -Xms{heap_mib}m")
}

/// A Kubernetes quantity (`4Gi`, `512M`, `1e9`, `1500000000`) in bytes; None if it is not one.
pub fn parse_quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// The size the volume claim template of a StatefulSet asks for, if it has one.
pub fn claimed_storage(sts: &StatefulSet) -> Option<String> {
    let claims = sts.spec.as_ref()?.volume_claim_templates.as_ref()?;
    let claim = claims.iter().find(|c| c.metadata.name.as_deref() == Some("data"))?;
    claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage").map(|q| q.0.clone())
}

/// What a change of `storage` asks of an existing StatefulSet, whose volume claim templates the
/// API server does not let change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageChange {
    None,
    /// Expand the existing claims to this size (where the StorageClass allows it).
    Grow {
        from: String,
        to: String,
    },
    /// Volumes cannot shrink.
    Shrink {
        from: String,
        to: String,
    },
    /// From an emptyDir to a volume or back: only a new StatefulSet can do it.
    Kind {
        from: Option<String>,
        to: Option<String>,
    },
    /// A size that is not a quantity (the schema lets any string through).
    Invalid(String),
}

pub fn storage_change(existing: &StatefulSet, wanted: Option<&str>) -> StorageChange {
    let current = claimed_storage(existing);
    match (current, wanted) {
        (None, None) => StorageChange::None,
        (Some(from), Some(to)) => match (parse_quantity_bytes(&from), parse_quantity_bytes(to)) {
            (_, None) => StorageChange::Invalid(to.to_string()),
            (Some(a), Some(b)) if b > a => StorageChange::Grow { from, to: to.to_string() },
            (Some(a), Some(b)) if b < a => StorageChange::Shrink { from, to: to.to_string() },
            _ => StorageChange::None,
        },
        (from, to) => StorageChange::Kind { from, to: to.map(str::to_string) },
    }
}

impl Managed<'_> {
    /// The StatefulSet. `existing` is the one running now, if any: its volume claim templates are
    /// kept as they are (the API server refuses any change to them; a bigger `storage` is applied
    /// to the claims themselves, see `controller.rs`), so that every other change (image,
    /// resources) still applies.
    pub fn statefulset(
        &self,
        ap: &AnalyticsPlatform,
        existing: Option<&StatefulSet>,
    ) -> Result<StatefulSet, BuildError> {
        statefulset(ap, self, existing)
    }

    pub fn service(&self, ap: &AnalyticsPlatform) -> Result<Service, BuildError> {
        service(ap, self.component, self.port)
    }

    /// A quorum's headless Service and PodDisruptionBudget (None for one pod).
    pub fn quorum_parts(&self, ap: &AnalyticsPlatform) -> Result<Option<(Service, PodDisruptionBudget)>, BuildError> {
        if self.replicas <= 1 {
            return Ok(None);
        }
        let headless = build(
            "Service",
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": child_meta(ap, kafka_brokers_service(ap), self.component),
                "spec": {
                    "clusterIP": "None",
                    "publishNotReadyAddresses": true,
                    "selector": selector_labels(ap, self.component),
                    "ports": [{"name": "kafka", "port": 9092, "targetPort": 9092}, {"name": "controller", "port": 9093, "targetPort": 9093}]
                }
            }),
        )?;
        let pdb = build(
            "PodDisruptionBudget",
            json!({
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": child_meta(ap, self.name(ap), self.component),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(ap, self.component)}}
            }),
        )?;
        Ok(Some((headless, pdb)))
    }

    pub fn replicas(&self) -> i32 {
        self.replicas
    }

    pub fn name(&self, ap: &AnalyticsPlatform) -> String {
        child_name(ap, self.component)
    }

    pub fn storage(&self) -> Option<&str> {
        self.spec.storage.as_deref()
    }
}

fn statefulset(
    ap: &AnalyticsPlatform,
    m: &Managed<'_>,
    existing: Option<&StatefulSet>,
) -> Result<StatefulSet, BuildError> {
    let name = child_name(ap, m.component);
    let volume_claims: Option<Vec<Value>> = match existing {
        Some(sts) => match sts.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref()) {
            Some(claims) => Some(
                claims
                    .iter()
                    .map(|c| {
                        // Only what the operator set: name and spec (the API server adds status).
                        let mut c = c.clone();
                        c.status = None;
                        to_json("StatefulSet", &name, &c)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            None => None,
        },
        None => m.spec.storage.as_ref().map(|size| {
            let mut claim = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}});
            if let Some(class) = &m.spec.storage_class_name {
                claim["spec"]["storageClassName"] = json!(class);
            }
            vec![claim]
        }),
    };
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": EMPTY_DIR_TMP_LIMIT}})];
    if volume_claims.is_none() {
        volumes.push(json!({"name": "data", "emptyDir": {"sizeLimit": EMPTY_DIR_DATA_LIMIT}}));
    }
    let mut container = json!({
        "name": m.component,
        "image": m.spec.image.clone().unwrap_or_else(|| m.image.to_string()),
        "ports": [{"name": m.port.0, "containerPort": m.port.1}],
        "env": m.env,
        "volumeMounts": [{"name": "data", "mountPath": m.data_path}, {"name": "tmp", "mountPath": "/tmp"}],
        "readinessProbe": {"tcpSocket": {"port": m.port.0}, "periodSeconds": 5},
        "resources": m.resources,
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
    });
    if let Some(args) = &m.args {
        container["args"] = json!(args);
    }
    let mut spec = json!({
        "serviceName": name,
        "replicas": m.replicas,
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
    if m.replicas > 1 {
        // A quorum: pods named under the headless Service, started together (a broker is ready
        // only once a majority of controllers is up, so one at a time would never get there),
        // spread over nodes and then zones where the cluster allows.
        spec["serviceName"] = json!(kafka_brokers_service(ap));
        spec["podManagementPolicy"] = json!("Parallel");
        let term = |key: &str, weight: i32| json!({"weight": weight, "podAffinityTerm": {"topologyKey": key, "labelSelector": {"matchLabels": selector_labels(ap, m.component)}}});
        spec["template"]["spec"]["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            term("kubernetes.io/hostname", 100), term("topology.kubernetes.io/zone", 50)
        ]}});
        spec["template"]["spec"]["containers"][0]["ports"] =
            json!([{"name": m.port.0, "containerPort": m.port.1}, {"name": "controller", "containerPort": 9093}]);
    }
    if let Some(claims) = volume_claims {
        spec["volumeClaimTemplates"] = json!(claims);
        // The deletion policy, for the data of a dependency the platform runs: Delete removes the
        // volumes with the platform; Retain keeps them (and a platform of the same name created
        // again finds them). Scaling never deletes them.
        let when_deleted = if ap.spec.deletion_policy == DeletionPolicy::Delete { "Delete" } else { "Retain" };
        spec["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": when_deleted, "whenScaled": "Retain"});
    }
    build(
        "StatefulSet",
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": child_meta(ap, name, m.component), "spec": spec}),
    )
}

fn resources_of(
    ap: &AnalyticsPlatform,
    component: &str,
    r: Option<&ResourceRequirements>,
) -> Result<Option<Value>, BuildError> {
    r.map(|r| to_json("StatefulSet", &child_name(ap, component), r)).transpose()
}

fn service(ap: &AnalyticsPlatform, component: &str, port: (&str, i32)) -> Result<Service, BuildError> {
    build(
        "Service",
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": child_meta(ap, child_name(ap, component), component),
            "spec": {"selector": selector_labels(ap, component), "ports": [{"name": port.0, "port": port.1, "targetPort": port.0}]}
        }),
    )
}

/// Components a platform may run as managed dependencies.
pub const MANAGED_COMPONENTS: [&str; 3] = ["kafka", "clickhouse", "postgres"];

/// Every managed dependency the spec asks for.
pub fn managed_dependencies(ap: &AnalyticsPlatform) -> Result<Vec<Managed<'_>>, BuildError> {
    let mut out = Vec::new();
    if let Some(spec) = &ap.spec.kafka.managed {
        let host = service_host(ap, "kafka");
        let resources = resources_of(ap, "kafka", spec.resources.as_ref())?.unwrap_or_else(kafka_default_resources);
        let brokers = managed_kafka_brokers(ap);
        let common = vec![
            json!({"name": "KAFKA_AUTO_CREATE_TOPICS_ENABLE", "value": "false"}),
            json!({"name": "KAFKA_LOG_DIRS", "value": "/var/lib/kafka/data"}),
            json!({"name": "KAFKA_HEAP_OPTS", "value": kafka_heap_opts(Some(&resources))}),
            // Compaction here is __consumer_offsets only: the cleaner's default 128 MB dedupe
            // buffer would hold a quarter of the heap for good (fuller young GCs, marking).
            json!({"name": "KAFKA_LOG_CLEANER_DEDUPE_BUFFER_SIZE", "value": "16777216"}),
        ];
        let env = if brokers > 1 {
            let mut env = kafka_quorum_env(ap, brokers)?;
            env.extend(common);
            env
        } else {
            let mut env = vec![
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
            ];
            env.extend(common);
            env
        };
        let m = Managed {
            component: "kafka",
            spec,
            replicas: brokers,
            image: KAFKA_IMAGE,
            port: ("kafka", 9092),
            data_path: "/var/lib/kafka/data",
            env,
            args: None,
            run_as: 1000,
            resources,
        };
        out.push(m);
    }
    if let Some(spec) = &ap.spec.clickhouse.managed {
        let m = Managed {
            component: "clickhouse",
            spec,
            replicas: 1,
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
            resources: resources_of(ap, "clickhouse", spec.resources.as_ref())?.unwrap_or_else(default_resources),
        };
        out.push(m);
    }
    if let Some(spec) = ap.spec.postgres.as_ref().and_then(|p| p.managed.as_ref()) {
        let m = Managed {
            component: "postgres",
            spec,
            replicas: 1,
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
            resources: resources_of(ap, "postgres", spec.resources.as_ref())?.unwrap_or_else(default_resources),
        };
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ManagedService;
    use crate::resources::fixtures::platform;

    #[test]
    fn managed_kafka_and_clickhouse_with_storage() {
        let mut ap = platform();
        assert!(managed_dependencies(&ap).unwrap().is_empty(), "external dependencies run nothing");
        ap.spec.kafka.external = None;
        ap.spec.kafka.managed = Some(ManagedService { storage: Some("5Gi".into()), ..Default::default() });
        ap.spec.clickhouse.external = None;
        ap.spec.clickhouse.managed = Some(ManagedService::default());
        let deps = built(&ap);
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
        let deps = built(&ap);
        let retention = deps[0].0.spec.as_ref().unwrap().persistent_volume_claim_retention_policy.clone().unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
        let env = &kafka_spec.template.spec.as_ref().unwrap().containers[0].env.clone().unwrap();
        let heap = env.iter().find(|e| e.name == "KAFKA_HEAP_OPTS").and_then(|e| e.value.clone());
        assert_eq!(heap.as_deref(), Some("-Xmx2048m -Xms2048m"), "half the default 4Gi limit");
        let ch = &deps[1].0;
        assert!(ch.spec.as_ref().unwrap().volume_claim_templates.is_none(), "no storage: emptyDir");
        let volumes = ch.spec.as_ref().unwrap().template.spec.as_ref().unwrap().volumes.clone().unwrap();
        assert!(volumes.iter().all(|v| v.empty_dir.as_ref().unwrap().size_limit.is_some()), "emptyDirs are bounded");
    }

    #[test]
    fn a_managed_kafka_quorum_names_its_voters_replicates_three_times_and_lets_one_go() {
        let mut ap = platform();
        ap.metadata.uid = Some("6f1c1f5e-8d1c-4c53-9a8e-2f0f3b7f9a11".into());
        ap.spec.kafka.external = None;
        ap.spec.kafka.managed =
            Some(ManagedService { replicas: Some(3), storage: Some("20Gi".into()), ..Default::default() });
        let deps = managed_dependencies(&ap).unwrap();
        let sts = deps[0].statefulset(&ap, None).unwrap();
        let spec = sts.spec.clone().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("demo-kafka-brokers"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"), "the controllers must meet to be ready");
        let pod = spec.template.spec.clone().unwrap();
        let anti = pod
            .affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        let keys: Vec<&str> = anti.iter().map(|t| t.pod_affinity_term.topology_key.as_str()).collect();
        assert_eq!(keys, ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]);
        let env = pod.containers[0].env.clone().unwrap();
        let var = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
        let ns = ap.namespace().unwrap_or_else(|| "default".into());
        assert_eq!(
            var("KAFKA_CONTROLLER_QUORUM_VOTERS").unwrap(),
            format!(
                "0@demo-kafka-0.demo-kafka-brokers.{ns}.svc:9093,1@demo-kafka-1.demo-kafka-brokers.{ns}.svc:9093,\
                 2@demo-kafka-2.demo-kafka-brokers.{ns}.svc:9093"
            )
        );
        assert_eq!(
            var("KAFKA_ADVERTISED_LISTENERS").unwrap(),
            format!("PLAINTEXT://$(POD_NAME).demo-kafka-brokers.{ns}.svc:9092"),
            "each broker advertises its own pod"
        );
        let node_id = env.iter().find(|e| e.name == "KAFKA_NODE_ID").and_then(|e| e.value_from.clone()).unwrap();
        assert_eq!(node_id.field_ref.unwrap().field_path, "metadata.labels['apps.kubernetes.io/pod-index']");
        let pod_name_at = env.iter().position(|e| e.name == "POD_NAME").unwrap();
        let advertised_at = env.iter().position(|e| e.name == "KAFKA_ADVERTISED_LISTENERS").unwrap();
        assert!(pod_name_at < advertised_at, "$(POD_NAME) is expanded only from variables defined before it");
        assert_eq!(
            var("CLUSTER_ID").as_deref(),
            Some("bxwfXo0cTFOaji8PO3-aEQ"),
            "the uid's bytes, as Kafka writes ids"
        );
        for (name, value) in [
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2"),
        ] {
            assert_eq!(var(name).as_deref(), Some(value), "{name}");
        }
        let (headless, pdb) = deps[0].quorum_parts(&ap).unwrap().expect("a quorum has a headless Service and a PDB");
        let hs = headless.spec.unwrap();
        assert_eq!(hs.cluster_ip.as_deref(), Some("None"));
        assert_eq!(hs.publish_not_ready_addresses, Some(true));
        assert_eq!(headless.metadata.name.as_deref(), Some("demo-kafka-brokers"));
        assert_eq!(
            pdb.spec.unwrap().max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)),
            "one broker at a time: two of three keep the controller majority and min.insync.replicas"
        );

        // One broker: as before (no quorum parts, its own Service name, ordered start).
        ap.spec.kafka.managed = Some(ManagedService::default());
        let deps = managed_dependencies(&ap).unwrap();
        assert!(deps[0].quorum_parts(&ap).unwrap().is_none());
        let spec = deps[0].statefulset(&ap, None).unwrap().spec.unwrap();
        assert_eq!((spec.replicas, spec.service_name.as_deref()), (Some(1), Some("demo-kafka")));
        assert!(spec.pod_management_policy.is_none(), "immutable: an existing broker's StatefulSet keeps it");
    }

    fn built(ap: &AnalyticsPlatform) -> Vec<(StatefulSet, Service)> {
        managed_dependencies(ap)
            .unwrap()
            .iter()
            .map(|m| (m.statefulset(ap, None).unwrap(), m.service(ap).unwrap()))
            .collect()
    }

    #[test]
    fn storage_changes_keep_the_claim_templates() {
        let mut ap = platform();
        ap.spec.kafka.external = None;
        ap.spec.kafka.managed = Some(ManagedService { storage: Some("5Gi".into()), ..Default::default() });
        let deps = managed_dependencies(&ap).unwrap();
        let old = deps[0].statefulset(&ap, None).unwrap();
        assert_eq!(claimed_storage(&old).as_deref(), Some("5Gi"));
        assert_eq!(storage_change(&old, Some("5Gi")), StorageChange::None);
        assert_eq!(storage_change(&old, Some("5120Mi")), StorageChange::None, "the same size written otherwise");
        assert_eq!(storage_change(&old, Some("8Gi")), StorageChange::Grow { from: "5Gi".into(), to: "8Gi".into() });
        assert_eq!(storage_change(&old, Some("1Gi")), StorageChange::Shrink { from: "5Gi".into(), to: "1Gi".into() });
        assert_eq!(storage_change(&old, None), StorageChange::Kind { from: Some("5Gi".into()), to: None });
        assert_eq!(storage_change(&old, Some("big")), StorageChange::Invalid("big".into()));
        // The spec grows to 8Gi: the StatefulSet keeps its 5Gi template (immutable), other fields follow.
        ap.spec.kafka.managed = Some(ManagedService {
            storage: Some("8Gi".into()),
            image: Some("registry.local/kafka:2".into()),
            ..Default::default()
        });
        let deps = managed_dependencies(&ap).unwrap();
        let new = deps[0].statefulset(&ap, Some(&old)).unwrap();
        assert_eq!(claimed_storage(&new).as_deref(), Some("5Gi"));
        let image = new.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
        assert_eq!(image.as_deref(), Some("registry.local/kafka:2"));
    }

    #[test]
    fn broker_heap_is_half_the_memory_limit() {
        let with_limit = |l: &str| kafka_heap_opts(Some(&json!({"limits": {"memory": l}})));
        assert_eq!(with_limit("4Gi"), "-Xmx2048m -Xms2048m");
        assert_eq!(with_limit("3G"), "-Xmx1430m -Xms1430m");
        assert_eq!(with_limit("6144Mi"), "-Xmx3072m -Xms3072m");
        assert_eq!(with_limit("256Mi"), "-Xmx256m -Xms256m", "never below 256 MiB");
        assert_eq!(with_limit("64Gi"), "-Xmx8192m -Xms8192m", "never above 8 GiB");
        assert_eq!(
            kafka_heap_opts(Some(&json!({"requests": {"memory": "1Gi"}}))),
            "-Xmx1024m -Xms1024m",
            "no limit: 1 GiB"
        );
        assert_eq!(kafka_heap_opts(None), "-Xmx1024m -Xms1024m");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity_bytes("2Gi"), Some(2 << 30));
        assert_eq!(parse_quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(parse_quantity_bytes("1e9"), Some(1_000_000_000));
        assert_eq!(parse_quantity_bytes("123456"), Some(123_456));
        assert_eq!(parse_quantity_bytes("lots"), None);
        assert_eq!(parse_quantity_bytes("2Qi"), None);
    }
}
