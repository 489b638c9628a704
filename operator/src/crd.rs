//! The `AnalyticsPlatform` custom resource (`cairn.dev/v1alpha1`).
//!
//! Its OpenAPI schema is generated from these types (schemars), with CEL rules that the API server
//! enforces: partitions may only grow, autoscaling min ≤ max, exactly one of external/managed per
//! dependency. `cargo run -p cairn-operator --bin crdgen` writes `crds/analyticsplatform.yaml`;
//! a test fails when the checked-in file is stale.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "cairn.dev";
pub const VERSION: &str = "v1alpha1";
/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "cairn-operator";
/// The finalizer that guards external state (the Kafka topic, the ClickHouse database) when the
/// deletion policy is `Delete`.
pub const FINALIZER: &str = "cairn.dev/cleanup";

/// A Cairn analytics platform: capture, consumer, query and auth workloads, the Kafka topic they
/// share, the ClickHouse schema they read and write, and how they are exposed.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
// kube's derive takes one `printcolumn` per column.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "cairn.dev",
    version = "v1alpha1",
    kind = "AnalyticsPlatform",
    plural = "analyticsplatforms",
    shortname = "ap",
    namespaced,
    status = "AnalyticsPlatformStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Capture", type_ = "integer", json_path = ".status.workloads.capture.readyReplicas"),
    printcolumn(name = "Consumer", type_ = "integer", json_path = ".status.workloads.consumer.readyReplicas"),
    printcolumn(name = "Query", type_ = "integer", json_path = ".status.workloads.query.readyReplicas"),
    printcolumn(name = "Auth", type_ = "integer", json_path = ".status.workloads.auth.readyReplicas"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.consumerAutoscaling.lagRecords"),
    printcolumn(name = "Freshness", type_ = "integer", json_path = ".status.freshnessSeconds"),
    printcolumn(name = "Disk", type_ = "string", json_path = ".status.clickhouse.diskFree"),
    printcolumn(
        name = "Oldest",
        type_ = "integer",
        priority = 1,
        json_path = ".status.consumerAutoscaling.oldestUnconsumedAgeSeconds"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsPlatformSpec {
    /// While true the operator changes nothing (children, topic, schema) and reports Paused.
    #[serde(default)]
    pub paused: bool,
    /// What deleting the platform does to its data: Retain (default) keeps the Kafka topic and
    /// the ClickHouse database (and managed dependencies' volumes); Delete removes them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The Cairn version the workloads run (their images' tag, unless a workload names an image).
    /// Without it the platform runs the operator's own version; when the operator is upgraded,
    /// such platforms move to the new version one at a time, each only once the one before is
    /// Ready again. Setting it pins the platform (and upgrades it when changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Days events are kept in ClickHouse; 0 keeps them forever.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub event_ttl_days: u32,
    #[serde(default)]
    pub capture: WorkloadSpec,
    #[serde(default)]
    pub consumer: WorkloadSpec,
    #[serde(default)]
    pub query: WorkloadSpec,
    #[serde(default)]
    pub auth: WorkloadSpec,
    pub kafka: KafkaSpec,
    pub clickhouse: ClickHouseSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Where the workloads send their traces; without it they export none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingSpec>,
}

/// Trace export from the platform's workloads to an OpenTelemetry collector (OTLP/HTTP). Export
/// headers (a collector's API key) go in a workload's `env` as `OTEL_EXPORTER_OTLP_HEADERS` from a
/// Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TracingSpec {
    /// The base URL of the collector's OTLP/HTTP receiver, e.g.
    /// `http://otel-collector.observability:4318`; spans go to `<url>/v1/traces`. Plain http
    /// (a collector in the cluster forwards over TLS); the workloads' NetworkPolicies allow its
    /// port.
    #[x_kube(validation = Rule::new("self.matches('^http://[^/?#@]+(/.*)?$')").message("otlpEndpoint must be an http:// URL with a host"))]
    pub otlp_endpoint: String,
    /// The share (0 to 1) of traces starting in Cairn that are recorded; a caller's sampled
    /// `traceparent` is always followed. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sample_ratio: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// One workload (capture, consumer, query or auth).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Container image; defaults to Cairn's image of this release for the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Replicas when autoscaling is off (default 2; 0 stops the workload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Extra environment variables (after the operator's own, so they can override them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// A HorizontalPodAutoscaler for the workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct AutoscalingSpec {
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Average CPU utilisation to keep, in percent of the request (default 70).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: Option<i32>,
    /// Consumer only: Kafka lag (records not consumed yet) per replica. With it the operator
    /// itself reads the consumer group's lag from Kafka and sets the consumer's replicas to
    /// ceil(lag / this), within minReplicas, maxReplicas and the topic's partitions (no
    /// HorizontalPodAutoscaler, no metrics adapter; `targetCPUUtilization` is then not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_lag_per_replica: Option<i64>,
    /// Consumer only, with `targetLagPerReplica`: the replicas come down only to the highest
    /// count the lag asked for within this many seconds (default 300), so a lag that dips for a
    /// moment does not make them flap. Scaling up is immediate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_stabilization_seconds: Option<i64>,
}

/// Kafka: an existing cluster, or brokers the operator runs (one for development, a quorum of
/// three or more for production, `managed.replicas`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.external) != has(self.managed)").message("set exactly one of kafka.external and kafka.managed"))]
#[x_kube(validation = Rule::new("!has(self.managed) || !has(self.managed.replicas) || self.managed.replicas == 1 || (self.managed.replicas >= 3 && self.managed.replicas % 2 == 1)").message("kafka.managed.replicas must be 1, or an odd number of at least 3 (a controller quorum)"))]
#[x_kube(validation = Rule::new("!has(oldSelf.managed) || !has(self.managed) || (has(self.managed.replicas) ? self.managed.replicas : 1) == (has(oldSelf.managed.replicas) ? oldSelf.managed.replicas : 1)").message("kafka.managed.replicas is fixed when the brokers are created (a controller quorum's voters are): run a new platform to change it"))]
pub struct KafkaSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalKafka>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedService>,
    #[serde(default)]
    pub topic: TopicSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalKafka {
    /// Bootstrap servers, comma-separated.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// plaintext (default), ssl, sasl_plaintext or sasl_ssl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_protocol: Option<String>,
    /// A Secret with `username`, `password` and optionally `mechanism` for SASL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_secret_ref: Option<String>,
}

/// The events topic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.maxRetentionHours) || self.maxRetentionHours >= self.retentionHours").message("maxRetentionHours must not be below retentionHours"))]
#[x_kube(validation = Rule::new("!has(self.maxPartitions) || self.maxPartitions >= self.partitions").message("maxPartitions must not be below partitions"))]
pub struct TopicSpec {
    /// Topic name (default `cairn_events`); the dead-letter topic is `<name>_dead_letter`.
    #[serde(default = "default_topic_name")]
    pub name: String,
    /// Partitions: the most consumer replicas that can work at once. May only grow.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("partitions may only grow"))]
    pub partitions: i32,
    /// Replication factor. Default: 3, or the number of brokers when the cluster has fewer (1 for
    /// managed Kafka). Applies when the topic is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas`: how many replicas must have an event before Kafka acknowledges it
    /// (capture produces with acks=all). Default: replication factor − 1, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_in_sync_replicas: Option<i32>,
    /// How long Kafka keeps events (default 168 hours): the longest ClickHouse outage that loses nothing.
    #[serde(default = "default_retention_hours")]
    #[schemars(range(min = 1))]
    pub retention_hours: i64,
    /// The longest the operator may stretch the retention to while the consumers are behind
    /// (default: twice `retentionHours`): when the oldest record not consumed yet is older than
    /// half the retention, the retention grows (within this) so that no acknowledged event is
    /// deleted unread, and returns to `retentionHours` once the backlog is gone. Equal to
    /// `retentionHours`, the retention never changes (the platform still reports `EventsAtRisk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_retention_hours: Option<i64>,
    /// With the consumer scaled by lag: the most partitions the operator may grow the topic to
    /// when the consumer already runs one replica per partition, has room for more
    /// (`maxReplicas`) and the lag keeps rising. Unset: the operator grows none. Partitions never
    /// shrink (lowering or removing this keeps what was grown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_partitions: Option<i32>,
}

impl Default for TopicSpec {
    fn default() -> Self {
        Self {
            name: default_topic_name(),
            partitions: default_partitions(),
            replication_factor: None,
            min_in_sync_replicas: None,
            retention_hours: default_retention_hours(),
            max_retention_hours: None,
            max_partitions: None,
        }
    }
}

fn default_topic_name() -> String {
    "cairn_events".into()
}
fn default_partitions() -> i32 {
    4
}
fn default_retention_hours() -> i64 {
    168
}

/// ClickHouse: an existing server, or a single-node server the operator runs (development only).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.external) != has(self.managed)").message("set exactly one of clickhouse.external and clickhouse.managed"))]
#[x_kube(validation = Rule::new("!has(self.managed) || !has(self.managed.replicas) || self.managed.replicas == 1").message("clickhouse.managed runs one server: a cluster is external (clickhouse.external with clickhouse.cluster)"))]
#[x_kube(validation = Rule::new("!has(self.cluster) || has(self.external)").message("clickhouse.cluster names a cluster of external servers (clickhouse.managed runs one server)"))]
#[x_kube(validation = Rule::new("(has(self.cluster) ? self.cluster : '') == (has(oldSelf.cluster) ? oldSelf.cluster : '')").message("clickhouse.cluster is fixed once the schema exists: tables cannot move between one server and a cluster in place"))]
pub struct ClickHouseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalClickHouse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedService>,
    /// Database (default `cairn`).
    #[serde(default = "default_database")]
    pub database: String,
    /// A cluster of the external servers (a name in their `remote_servers`, with the `{shard}`
    /// and `{replica}` macros and ClickHouse Keeper configured): the schema is created
    /// `ON CLUSTER`, each table as a Replicated local table (`<table>_local`) under a
    /// `Distributed` table sharded by the hash of the distinct id, so that a person's events stay
    /// on one shard. Unset for one server, and for ClickHouse Cloud (whose SharedMergeTree
    /// replicates the single-node schema by itself). Fixed once the schema exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub cluster: Option<String>,
    /// Days ClickHouse keeps its own logs (`system.query_log`, `trace_log`, `part_log`, … and
    /// the copies an upgrade leaves, `query_log_0`, …): the operator sets this TTL on each
    /// (default 7 for a managed ClickHouse; 0, leaving them alone, for an external server, whose
    /// administrators may keep them longer on purpose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub system_log_ttl_days: Option<u32>,
    /// Below this share of free space (percent) on any ClickHouse disk, the platform reports
    /// `DiskPressure` and heavy work (backfills) waits (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub min_free_disk_percent: Option<u32>,
    /// Event properties made columns of the events table, so that filters and breakdowns on them
    /// read a column instead of parsing every event's JSON (default: `$browser`, `$os`,
    /// `$device_type`, `$pathname`, `$host`, `$referring_domain`, `utm_source`, `utm_medium`,
    /// `utm_campaign`). A new one is added at once and the events stored before it are filled
    /// in the background; answers are the same before and after. Columns are never dropped.
    /// Keys of letters, digits and `$ _ - . : /` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_columns: Option<Vec<String>>,
    /// Event properties made columns because queries use them: every 10 minutes the operator
    /// reads ClickHouse's query log (`system.query_log`) for the properties that the query
    /// service's statements parsed out of the JSON (it names them in each statement's
    /// `log_comment`), and makes the costliest columns, up to `maxColumns` chosen this way.
    /// Added and backfilled like `propertyColumns`; never dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_property_columns: Option<AutoPropertyColumns>,
}

/// How the operator chooses property columns from query usage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoPropertyColumns {
    /// The most columns chosen from usage, beyond `propertyColumns` (default 10; 0 turns the
    /// choice off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_columns: Option<u32>,
    /// A property becomes a column once at least this many statements parsed it within
    /// `lookbackDays` (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_queries: Option<u32>,
    /// How far back the query log is read (default 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 90))]
    pub lookback_days: Option<u32>,
}

impl AutoPropertyColumns {
    pub const DEFAULT_MAX_COLUMNS: u32 = 10;
    pub const DEFAULT_MIN_QUERIES: u32 = 100;
    pub const DEFAULT_LOOKBACK_DAYS: u32 = 7;
}

fn default_database() -> String {
    "cairn".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalClickHouse {
    /// The HTTP interface, e.g. `https://clickhouse.example.com:8443`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// A Secret with `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<String>,
}

/// PostgreSQL (for query and auth).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.urlSecretRef) != has(self.managed)").message("set exactly one of postgres.urlSecretRef and postgres.managed"))]
#[x_kube(validation = Rule::new("!has(self.managed) || !has(self.managed.replicas) || self.managed.replicas == 1").message("postgres.managed runs one server"))]
pub struct PostgresSpec {
    /// A Secret whose `url` key holds a postgres:// URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedService>,
}

/// A dependency the operator runs itself, as pods with volumes: Kafka as one broker or a quorum,
/// ClickHouse and PostgreSQL as one server (for development and trials).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedService {
    /// Kafka only: how many brokers, each a combined broker and KRaft controller (default 1).
    /// Three or more (odd) make a quorum that survives one broker's loss: Kafka's own topics and
    /// new topics get a replication factor of 3 and `min.insync.replicas` 2, the brokers spread
    /// over nodes and zones, and a PodDisruptionBudget lets one go at a time. Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Size of the data volume, e.g. `10Gi`; without it the data lives in an emptyDir (at most
    /// 10Gi). A larger size later expands the volume where its StorageClass allows it; volumes
    /// never shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// The StorageClass of the data volume (the cluster's default when unset). Applies when the
    /// volume is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Requests and limits of its container. Without them: 250m CPU and 512Mi requested, a 2Gi
    /// limit; for Kafka 1Gi requested and a 4Gi limit. Kafka's heap is half its memory limit
    /// (between 256Mi and 8Gi; 1Gi without a limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// How capture and query are exposed outside the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    #[schemars(length(min = 1))]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// A TLS Secret for the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsPlatformStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Progressing, Ready, Degraded, Paused or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub workloads: WorkloadsStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clickhouse: Option<ClickHouseStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// The Cairn version the platform runs: rolled out and Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The version being rolled out, while it differs from `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// Managed dependencies (StatefulSets) and their volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed: Vec<ManagedStatus>,
    /// The consumer scaled by its lag (`consumer.autoscaling.targetLagPerReplica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_autoscaling: Option<ConsumerAutoscalingStatus>,
    /// How far behind the data path is, in seconds, by the operator's heartbeat: the time the
    /// newest heartbeat took from capture to ClickHouse when it has arrived, else the time since
    /// the newest one that did arrive was sent (absent while the heartbeat is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness_seconds: Option<i64>,
    /// The heartbeat through the data path (capture → Kafka → consumer → ClickHouse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_path: Option<DataPathStatus>,
    /// The consumer group's backlog and what it means for the topic's retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<BacklogStatus>,
}

/// The heartbeat: a synthetic event the operator sends through capture into an internal project
/// (that no analysis reads) and reads back from ClickHouse.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataPathStatus {
    /// When the last heartbeat was sent (RFC 3339), and whether capture acknowledged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_time: Option<String>,
    /// When the operator first sent one (RFC 3339): the freshness counts from here until one
    /// arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_sent_time: Option<String>,
    /// The send time of the newest heartbeat found in ClickHouse (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_arrived_time: Option<String>,
    /// How long the newest heartbeat took from its send (the operator's clock) to being stored
    /// in ClickHouse (its `ingested_at`), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// What went wrong with the last send, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_error: Option<String>,
    pub message: String,
}

/// The consumer group's backlog against the topic's retention.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BacklogStatus {
    /// Records not consumed yet.
    pub lag_records: i64,
    /// Age of the oldest record not consumed yet, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_unconsumed_age_seconds: Option<i64>,
    /// The retention the topic has now (hours): `retentionHours`, or more while the backlog
    /// needs it.
    pub retention_hours: i64,
    /// Whether the backlog's oldest record is near the retention.
    pub at_risk: bool,
    pub message: String,
}

/// What the operator read of the consumer group's lag and what it did about it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerAutoscalingStatus {
    /// The replicas the operator set.
    pub replicas: i32,
    /// What the lag alone asks for (absent when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_replicas: Option<i32>,
    /// Records not consumed yet, over every partition (absent when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_records: Option<i64>,
    /// Age of the oldest record not consumed yet, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_unconsumed_age_seconds: Option<i64>,
    /// ScaledUp, ScaledDown, Stabilizing, Steady, ClickHouseUnhealthy or LagUnknown.
    pub reason: String,
    pub message: String,
    /// When the operator last changed the replicas (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// The lag's recommendations within the scale-down window (the window the next decision uses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<crate::autoscale::Recommendation>,
}

/// A managed dependency as observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStatus {
    /// kafka, clickhouse or postgres.
    pub component: String,
    pub ready_replicas: i32,
    /// Whether the StatefulSet runs its current revision.
    pub rolled_out: bool,
    /// The size of its volume as the claim has it now (after an expansion, when done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// What stands between the spec's `storage` and the volume, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_message: Option<String>,
}

/// A status condition, as Kubernetes conventions define it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
    pub observed_generation: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadsStatus {
    #[serde(default)]
    pub capture: WorkloadStatus,
    #[serde(default)]
    pub consumer: WorkloadStatus,
    #[serde(default)]
    pub query: WorkloadStatus,
    #[serde(default)]
    pub auth: WorkloadStatus,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub desired_replicas: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaStatus {
    pub topic: String,
    /// The topic's actual partition count.
    pub partitions: i32,
    /// The topic's replication factor as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClickHouseStatus {
    /// The highest migration applied.
    pub schema_version: u32,
    pub database: String,
    /// Copies of stored data that migrations asked for, run apart from reconciles; listed until
    /// done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backfills: Vec<BackfillStatus>,
    /// The read-only account the query service uses (`SELECT` on the database, nothing else);
    /// absent while the operator could not make it, and query uses the platform's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_user: Option<String>,
    /// The least free share of any disk, e.g. `42%` (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free: Option<String>,
    /// ClickHouse's disks (`system.disks`): for a managed ClickHouse, its volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskStatus>,
    /// The system log tables that carry the operator's TTL, and what is in the way, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_logs: Option<String>,
    /// The events' TTL as found on the tables after applying it, and whether the data honours it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ttl: Option<String>,
    /// The event properties that are columns, and their backfills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_columns: Option<String>,
}

/// One ClickHouse disk.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskStatus {
    pub name: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// A backfill not done yet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillStatus {
    /// The migration that asked for it.
    pub migration: u32,
    pub name: String,
    /// Pending (not started, or waiting: disk, a retry), Running or Failed.
    pub state: String,
    /// When it started (RFC 3339), while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Rows read so far and rows to read, as ClickHouse reports them while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub capture: String,
    pub query: String,
}
