//! The reconciler: one AnalyticsPlatform → its children (server-side apply under one field
//! manager, owned by the platform, never over what it does not own), its Kafka topics, its
//! ClickHouse schema, and an honest status.
//!
//! Triggers: a spec change (the generation predicate ignores the operator's own status writes),
//! a change to any owned child (so a child edited or deleted by hand is put back), and a periodic
//! resync. An idle platform costs one reconcile per resync. Secrets are not watched (the operator
//! may not list Secrets cluster-wide): a rotated credentials Secret is seen at the next resync.
//!
//! One reconcile, in steps (each a function below):
//! 1. identity, configuration and credentials (ServiceAccount, ConfigMap, generated Secret, the
//!    referenced Secrets read for their versions);
//! 2. NetworkPolicies and managed dependencies (StatefulSets, their volumes, Services);
//! 3. Kafka topics, the ClickHouse schema and the platform's claim on both;
//! 4. the workloads (Deployments whose pod template carries the configuration's hash, Services,
//!    PodDisruptionBudgets, autoscalers) and the Ingress;
//! 5. what runs → status ([`crate::status::evaluate`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::clickhouse::{apply_event_ttl, client as clickhouse_client, migrate_deferring_backfills};
use cairn_common::config::{ClickHouseConfig, ConfigError, KafkaConfig, SecretString, Source};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::Store;
use kube::runtime::{predicates, reflector, watcher, Predicate, PredicateConfig, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::autoscale;
use crate::children::{ChildError, Children};
use crate::claims::{self, Claim};
use crate::crd::{
    AnalyticsPlatform, AnalyticsPlatformStatus, BacklogStatus, ClickHouseStatus, ConsumerAutoscalingStatus,
    DataPathStatus, DeletionPolicy, Endpoints, KafkaStatus, ManagedStatus, WorkloadStatus, WorkloadsStatus,
    FIELD_MANAGER, FINALIZER,
};
use crate::leader::Leadership;
use crate::metrics::OperatorMetrics;
use crate::query_user;
use crate::resources::config::{
    clickhouse_url, config_hash, config_map, credentials_meta, dead_letter_topic, generated_secret,
    generated_secret_name, kafka_bootstrap, platform_key, referenced_secrets, CREDENTIALS_OF_ANNOTATION,
};
use crate::resources::ingress::{endpoints, ingress};
use crate::resources::managed::{
    managed_dependencies, parse_quantity_bytes, storage_change, Managed, StorageChange, EMPTY_DIR_DATA_LIMIT,
    MANAGED_COMPONENTS,
};
use crate::resources::network::{
    bootstrap_ports, network_policies, service_account, service_account_name, url_port, ExternalPorts, OperatorPeer,
    POLICY_PARTS,
};
use crate::resources::workload::{
    capture_peers_service, consumer_group, deployment, deployment_name, horizontal_pod_autoscaler, lag_policy,
    pod_disruption_budget, replicas_plan, service, PodInputs, Replicas,
};
use crate::resources::{child_name, BuildError, Workload};
use crate::rollout::{UpgradeSlot, VersionChoice};
use crate::status::{evaluate, DependencyState, Observed, WorkloadObservation};
use crate::topic::{delete_topics, reconcile_topics, Effective};
use crate::{backlog, heartbeat, housekeeping};

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("the AnalyticsPlatform has no namespace or uid")]
    MissingMetadata,
    #[error("cannot clean up external state: {0}")]
    Cleanup(String),
    #[error("this replica no longer holds the leader lease")]
    NotLeader,
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingMetadata => "missing_metadata",
            Error::Cleanup(_) => "cleanup",
            Error::NotLeader => "not_leader",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.metric_label()
                }
                _ => "finalizer",
            },
        }
    }
}

/// How the controller behaves; from the environment (see `main.rs`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often settled platforms are looked at again.
    pub resync: Duration,
    /// How soon unsettled ones are.
    pub retry: Duration,
    /// How often a platform whose consumer scales by lag is looked at again.
    pub autoscale: Duration,
    /// How often a heartbeat goes through each platform's data path (None: off).
    pub heartbeat: Option<Duration>,
    /// A platform whose newest heartbeat arrived longer ago than this is not healthy.
    pub freshness_threshold: Duration,
    /// Watch one namespace only (namespace-scoped installation), or all.
    pub namespace: Option<String>,
    /// Timeout of each call to Kafka or ClickHouse.
    pub dependency_timeout: Duration,
    /// A rollout without progress for this long fails (`ProgressDeadlineExceeded`).
    pub progress_deadline: Duration,
    /// How long deletion keeps retrying the cleanup of external state before it gives up (with a
    /// Warning Event naming what is left) and lets the platform go.
    pub cleanup_timeout: Duration,
    /// The operator's own namespace (its pods are let into managed dependencies).
    pub operator_namespace: Option<String>,
    /// The Cairn version platforms without `spec.version` run.
    pub default_version: String,
    /// How often each platform's query log is read to choose property columns from usage.
    pub property_usage_interval: Duration,
}

/// The operator process's own configuration (declared in `cairn_common::config::catalogue`).
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub addr: std::net::SocketAddr,
    pub settings: Settings,
    /// This replica's name in leader election.
    pub identity: String,
    /// Where the leader Lease lives.
    pub lease_namespace: String,
    pub leader_election: bool,
}

impl OperatorConfig {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        use cairn_common::config::catalogue::*;
        let settings = Settings {
            resync: OPERATOR_RESYNC_SECS.secs(env)?,
            retry: OPERATOR_RETRY_SECS.secs(env)?,
            autoscale: OPERATOR_AUTOSCALE_SECS.secs(env)?,
            heartbeat: Some(OPERATOR_HEARTBEAT_SECS.secs(env)?).filter(|d| !d.is_zero()),
            freshness_threshold: OPERATOR_FRESHNESS_THRESHOLD_SECS.secs(env)?,
            namespace: WATCH_NAMESPACE.opt(env),
            dependency_timeout: OPERATOR_DEPENDENCY_TIMEOUT_SECS.secs(env)?,
            progress_deadline: OPERATOR_PROGRESS_DEADLINE_SECS.secs(env)?,
            cleanup_timeout: OPERATOR_CLEANUP_TIMEOUT_SECS.secs(env)?,
            operator_namespace: POD_NAMESPACE.opt(env),
            default_version: OPERATOR_DEFAULT_VERSION
                .opt(env)
                .unwrap_or_else(|| crate::resources::OPERATOR_VERSION.to_string()),
            property_usage_interval: OPERATOR_PROPERTY_USAGE_SECS.secs(env)?,
        };
        let lease_namespace = settings
            .operator_namespace
            .clone()
            .or_else(|| settings.namespace.clone())
            .unwrap_or_else(|| "default".into());
        Ok(Self {
            addr: OPERATOR_ADDR.parse(env)?,
            identity: POD_NAME.opt(env).unwrap_or_else(|| format!("cairn-operator-{}", std::process::id())),
            lease_namespace,
            leader_election: OPERATOR_LEADER_ELECTION.bool(env)?,
            settings,
        })
    }
}

pub struct Context {
    pub client: Client,
    pub metrics: Arc<OperatorMetrics>,
    pub recorder: Recorder,
    pub settings: Settings,
    pub leadership: Leadership,
    /// Every platform the controller watches (for shared-use checks and upgrade ordering).
    pub platforms: Store<AnalyticsPlatform>,
    pub upgrades: UpgradeSlot,
    /// Backfills running apart from reconciles.
    pub backfills: crate::backfills::Backfills,
    /// Sends the heartbeats to capture.
    pub http: reqwest::Client,
    /// Property columns chosen from each platform's query usage, and when it was last read.
    pub property_usage: crate::property_usage::UsageMemos,
}

/// Runs the controller until `stop`.
pub async fn run(
    client: Client,
    metrics: Arc<OperatorMetrics>,
    settings: Settings,
    identity: String,
    leadership: Leadership,
    stop: CancellationToken,
) {
    let platforms: Api<AnalyticsPlatform> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    fn owned<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let children = watcher::Config::default().labels("app.kubernetes.io/managed-by=cairn-operator");
    let ns = settings.namespace.clone();
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: Some(identity) });

    let (reader, writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics,
        recorder,
        settings,
        leadership,
        platforms: reader.clone(),
        upgrades: UpgradeSlot::default(),
        backfills: Default::default(),
        // Building fails only without a TLS backend, which this client (plain HTTP) never uses.
        // No pooled connections: each heartbeat tests the path afresh.
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new()),
        property_usage: Default::default(),
    });
    let stream = watcher(platforms, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        // Spec changes, and finalizer changes (the finalizer helper adds ours and waits for the
        // change to come back); not the operator's own status writes.
        .predicate_filter(predicates::generation.combine(predicates::finalizers), PredicateConfig::default());

    // Children trigger a reconcile of their owner when they change or disappear, but not when a
    // watch restarts and lists them again unchanged (the resource-version predicate): an idle
    // platform then costs nothing but its periodic resync. Secrets are not watched: that would
    // need list/watch on every Secret of the cluster.
    fn changes<K>(
        api: Api<K>,
        cfg: watcher::Config,
    ) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        watcher(api, cfg)
            .default_backoff()
            .touched_objects()
            .predicate_filter(predicates::resource_version, PredicateConfig::default())
    }

    Controller::for_stream(stream, reader)
        .owns_stream(changes(owned::<Deployment>(&client, &ns), children.clone()))
        .owns_stream(changes(owned::<Service>(&client, &ns), children.clone()))
        .owns_stream(changes(owned::<ConfigMap>(&client, &ns), children.clone()))
        .owns_stream(changes(owned::<ServiceAccount>(&client, &ns), children.clone()))
        .owns_stream(changes(owned::<PodDisruptionBudget>(&client, &ns), children.clone()))
        .owns_stream(changes(owned::<HorizontalPodAutoscaler>(&client, &ns), children.clone()))
        .owns_stream(changes(owned::<NetworkPolicy>(&client, &ns), children.clone()))
        .owns_stream(changes(owned::<Ingress>(&client, &ns), children.clone()))
        .owns_stream(changes(owned::<StatefulSet>(&client, &ns), children))
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(platform = %obj, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
}

fn error_policy(ap: Arc<AnalyticsPlatform>, error: &Error, ctx: Arc<Context>) -> Action {
    if !matches!(error, Error::NotLeader) {
        tracing::warn!(platform = %ap.name_any(), %error, "reconcile error; retrying");
    }
    ctx.metrics.count_error(error.metric_label());
    Action::requeue(ctx.settings.retry)
}

#[tracing::instrument(skip_all, fields(platform = %ap.name_any(), namespace = ap.namespace().unwrap_or_default()))]
async fn reconcile(ap: Arc<AnalyticsPlatform>, ctx: Arc<Context>) -> Result<Action, Error> {
    // A replica that lost its lease (or was stalled past it) does nothing at all.
    if !ctx.leadership.is_leader() {
        return Err(Error::NotLeader);
    }
    let started = Instant::now();
    let ns = ap.namespace().ok_or(Error::MissingMetadata)?;
    let api: Api<AnalyticsPlatform> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, ap, |event| async {
        match event {
            Finalizer::Apply(ap) => apply_platform(&ap, &ctx).await,
            Finalizer::Cleanup(ap) => cleanup(&ap, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(Error::NotLeader)
        | kube::runtime::finalizer::Error::CleanupFailed(Error::NotLeader) => Error::NotLeader,
        e => Error::Finalizer(Box::new(e)),
    });
    if !matches!(result, Err(Error::NotLeader)) {
        ctx.metrics.observe(started.elapsed(), result.is_ok());
    }
    result
}

fn secret_value(secret: Option<&Secret>, key: &str) -> Option<String> {
    secret.and_then(|s| s.data.as_ref()).and_then(|d| d.get(key)).and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// The Secrets a platform's configuration reads, as they are (absent ones are `None`).
#[derive(Debug, Default)]
struct Secrets {
    generated: Option<Secret>,
    referenced: BTreeMap<String, Option<Secret>>,
}

impl Secrets {
    fn named(&self, name: &str) -> Option<&Secret> {
        self.referenced.get(name).and_then(Option::as_ref)
    }

    /// `resourceVersion` of every Secret the pods' environment reads (the generated one and the
    /// referenced ones that exist), for the configuration hash.
    fn versions(&self, ap: &AnalyticsPlatform) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(s) = &self.generated {
            out.insert(generated_secret_name(ap), s.resource_version().unwrap_or_default());
        }
        for (name, s) in &self.referenced {
            if let Some(s) = s {
                out.insert(name.clone(), s.resource_version().unwrap_or_default());
            }
        }
        out
    }
}

async fn read_secrets(client: &Client, ns: &str, ap: &AnalyticsPlatform) -> Result<Secrets, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut out = Secrets { generated: api.get_opt(&generated_secret_name(ap)).await?, ..Default::default() };
    for (name, _) in referenced_secrets(ap) {
        let s = api.get_opt(&name).await?;
        out.referenced.insert(name, s);
    }
    Ok(out)
}

/// How the operator itself reaches the platform's Kafka.
fn kafka_config(ap: &AnalyticsPlatform, secrets: &Secrets) -> KafkaConfig {
    let mut cfg = KafkaConfig {
        brokers: kafka_bootstrap(ap),
        topic: ap.spec.kafka.topic.name.clone(),
        dead_letter_topic: dead_letter_topic(ap),
        security_protocol: None,
        sasl_mechanism: None,
        sasl_username: None,
        sasl_password: None,
        ssl_ca_location: None,
        message_max_bytes: cairn_common::config::DEFAULT_MESSAGE_MAX_BYTES,
    };
    if let Some(e) = &ap.spec.kafka.external {
        cfg.security_protocol = e.security_protocol.clone();
        if let Some(name) = &e.sasl_secret_ref {
            let s = secrets.named(name);
            cfg.sasl_username = secret_value(s, "username");
            cfg.sasl_password = secret_value(s, "password").map(SecretString::from);
            cfg.sasl_mechanism = secret_value(s, "mechanism").or(Some("SCRAM-SHA-512".into()));
        }
    }
    cfg
}

/// How the operator itself reaches the platform's ClickHouse.
fn clickhouse_config(ap: &AnalyticsPlatform, secrets: &Secrets) -> ClickHouseConfig {
    let (user, password) = match (&ap.spec.clickhouse.external, &ap.spec.clickhouse.managed) {
        (Some(e), _) => match &e.credentials_secret_ref {
            Some(name) => {
                let s = secrets.named(name);
                (secret_value(s, "username").unwrap_or_else(|| "default".into()), secret_value(s, "password"))
            }
            None => ("default".into(), None),
        },
        _ => ("cairn".into(), secret_value(secrets.generated.as_ref(), "clickhouse-password")),
    };
    ClickHouseConfig {
        url: clickhouse_url(ap),
        database: ap.spec.clickhouse.database.clone(),
        user,
        password: password.map(SecretString::from),
        lz4: false,
        event_ttl_days: ap.spec.event_ttl_days,
        cluster: ap.spec.clickhouse.cluster.clone(),
    }
}

async fn publish(ctx: &Context, ap: &AnalyticsPlatform, type_: EventType, reason: &str, note: String) {
    publish_action(ctx, ap, type_, reason, "Reconcile", note).await;
}

/// An Event with its own action. The recorder folds repeats of one (type, reason, action) into a
/// series that keeps the first note, so events whose notes differ in substance (each scaling of
/// the consumer) need actions that differ too.
async fn publish_action(
    ctx: &Context,
    ap: &AnalyticsPlatform,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &ap.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish an event");
    }
}

/// What went wrong while writing children, for the status.
#[derive(Debug, Default)]
struct Report {
    conflicts: Vec<String>,
    invalid: Option<String>,
    apply_error: Option<String>,
    not_leader: bool,
}

impl Report {
    fn note<T>(&mut self, r: Result<T, ChildError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e @ ChildError::Conflict { .. }) => {
                tracing::warn!(error = %e, "ownership conflict");
                self.conflicts.push(e.to_string());
                None
            }
            Err(ChildError::NotLeader) => {
                self.not_leader = true;
                None
            }
            Err(ChildError::Build(e)) => {
                self.invalid.get_or_insert_with(|| e.to_string());
                None
            }
            Err(e @ ChildError::Kube { .. }) => {
                tracing::warn!(error = %e, "apply failed");
                self.apply_error.get_or_insert_with(|| e.to_string());
                None
            }
        }
    }

    fn built<T>(&mut self, r: Result<T, BuildError>) -> Option<T> {
        self.note(r.map_err(ChildError::from))
    }
}

async fn put<K>(children: &Children<'_>, built: Result<K, BuildError>) -> Result<K, ChildError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    children.apply(&built?).await
}

/// Step 1b: the generated credentials. Created once and never overwritten; only their owner
/// reference follows the deletion policy. A Secret of that name that is not this platform's (by
/// owner or by its `credentials-of` annotation) is a conflict.
async fn ensure_credentials(
    ctx: &Context,
    children: &Children<'_>,
    ap: &AnalyticsPlatform,
    existing: Option<Secret>,
) -> Result<Secret, ChildError> {
    let ours = |s: &Secret| {
        crate::children::controlled_by(&s.metadata, children.uid())
            || s.metadata.annotations.as_ref().and_then(|a| a.get(CREDENTIALS_OF_ANNOTATION)) == Some(&platform_key(ap))
    };
    let secret = match existing {
        Some(s) if ours(&s) => s,
        Some(s) => {
            return Err(ChildError::Conflict {
                kind: "Secret".into(),
                name: generated_secret_name(ap),
                owner: crate::children::describe_owner(&s.metadata),
            })
        }
        None => {
            let (s, created) = children.create_secret(&generated_secret(ap)?).await?;
            if !ours(&s) {
                return Err(ChildError::Conflict {
                    kind: "Secret".into(),
                    name: generated_secret_name(ap),
                    owner: crate::children::describe_owner(&s.metadata),
                });
            }
            if created {
                publish(ctx, ap, EventType::Normal, "CredentialsGenerated", "generated credentials".into()).await;
            }
            s
        }
    };
    // Keys that credentials made by an earlier operator version lack are added (never replaced).
    let missing: BTreeMap<String, String> = generated_secret(ap)?
        .string_data
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !secret.data.as_ref().is_some_and(|d| d.contains_key(k)))
        .collect();
    let secret = if missing.is_empty() {
        secret
    } else {
        children.guard()?;
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ap.namespace().unwrap_or_default());
        let keys: Vec<&String> = missing.keys().collect();
        tracing::info!(?keys, "adding keys to the generated credentials");
        // A resourceVersion precondition: a concurrent writer makes this fail and retry, never
        // lose its keys to ours.
        let patch = json!({"metadata": {"resourceVersion": secret.resource_version()}, "stringData": missing});
        api.patch(&generated_secret_name(ap), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| ChildError::Kube { kind: "Secret".into(), name: generated_secret_name(ap), source })?
    };
    // The owner reference as the policy says (Delete: owned; Retain: kept when the platform goes).
    let wanted = credentials_meta(ap);
    let owned = crate::children::controlled_by(&secret.metadata, children.uid());
    let want_owned = wanted.owner_references.as_ref().is_some_and(|o| !o.is_empty());
    if owned != want_owned
        || secret.metadata.annotations.as_ref().and_then(|a| a.get(CREDENTIALS_OF_ANNOTATION)).is_none()
    {
        children.guard()?;
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ap.namespace().unwrap_or_default());
        // A merge patch: it replaces the owner list whoever set it (credentials created by an
        // earlier operator version carry an owner reference its create made, which server-side
        // apply would not take away).
        let owners = wanted.owner_references.clone().unwrap_or_default();
        let patch = json!({"metadata": {
            "ownerReferences": owners,
            "annotations": {CREDENTIALS_OF_ANNOTATION: platform_key(ap)}
        }});
        return api
            .patch(&generated_secret_name(ap), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| ChildError::Kube { kind: "Secret".into(), name: generated_secret_name(ap), source });
    }
    Ok(secret)
}

/// Step 2b: a managed dependency's StatefulSet, its volume's size, its Service.
async fn apply_managed(
    ctx: &Context,
    children: &Children<'_>,
    report: &mut Report,
    ap: &AnalyticsPlatform,
    m: &Managed<'_>,
) -> ManagedStatus {
    let name = m.name(ap);
    let mut status = ManagedStatus { component: m.component.to_string(), ..Default::default() };
    let Some(existing) = report.note(children.get::<StatefulSet>(&name).await) else {
        return status;
    };
    if let Some(sts) = &existing {
        status.storage_message = resize_volumes(ctx, children, report, ap, m, sts).await;
    }
    let applied = match report.built(m.statefulset(ap, existing.as_ref())) {
        Some(sts) => report.note(children.apply_checked(&sts).await),
        None => None,
    };
    report.note(put(children, m.service(ap)).await);
    if let Some(Some((headless, pdb))) = report.built(m.quorum_parts(ap)) {
        report.note(children.apply(&headless).await);
        report.note(children.apply(&pdb).await);
    }
    if let Some(sts) = applied {
        let st = sts.status.clone().unwrap_or_default();
        let generation_seen = st.observed_generation.unwrap_or(0) >= sts.metadata.generation.unwrap_or(0);
        let revision_current = st.update_revision.is_none() || st.current_revision == st.update_revision;
        status.ready_replicas = st.ready_replicas.unwrap_or(0);
        status.rolled_out = generation_seen && revision_current && status.ready_replicas >= m.replicas();
        status.storage = crate::resources::managed::claimed_storage(&sts)
            .or_else(|| Some(format!("emptyDir (limit {EMPTY_DIR_DATA_LIMIT})")).filter(|_| m.storage().is_none()));
    }
    status
}

/// A larger `storage` for an existing StatefulSet: its claims are expanded where their
/// StorageClass allows it (the template itself cannot change). Returns what stands in the way,
/// if anything.
async fn resize_volumes(
    ctx: &Context,
    children: &Children<'_>,
    report: &mut Report,
    ap: &AnalyticsPlatform,
    m: &Managed<'_>,
    sts: &StatefulSet,
) -> Option<String> {
    let (from, to) = match storage_change(sts, m.storage()) {
        StorageChange::None => return None,
        StorageChange::Grow { from, to } => (from, to),
        StorageChange::Shrink { from, to } => {
            return Some(format!("volumes cannot shrink: {from} stays (spec asks for {to})"));
        }
        StorageChange::Kind { from, to } => {
            return Some(format!(
                "storage cannot change from {} to {} on a running StatefulSet; delete the StatefulSet \
                 (kubectl delete statefulset {} --cascade=orphan) to re-create it",
                from.as_deref().unwrap_or("emptyDir"),
                to.as_deref().unwrap_or("emptyDir"),
                m.name(ap)
            ));
        }
        StorageChange::Invalid(v) => return Some(format!("storage {v:?} is not a quantity")),
    };
    let ns = ap.namespace().unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let mut pending = Vec::new();
    for i in 0..replicas {
        let claim = format!("data-{}-{i}", m.name(ap));
        let pvc = match pvcs.get_opt(&claim).await {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => return Some(format!("cannot read claim {claim}: {e}")),
        };
        let requested =
            pvc.spec.as_ref().and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage").cloned());
        if requested.as_ref().and_then(|q| parse_quantity_bytes(&q.0)) >= parse_quantity_bytes(&to) {
            let capacity = pvc.status.as_ref().and_then(|s| s.capacity.as_ref()?.get("storage").cloned());
            if capacity.as_ref().and_then(|q| parse_quantity_bytes(&q.0)) < parse_quantity_bytes(&to) {
                pending.push(format!("{claim} is being expanded to {to}"));
            }
            continue;
        }
        let class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone());
        let expandable = match &class {
            Some(c) => match Api::<StorageClass>::all(ctx.client.clone()).get_opt(c).await {
                Ok(Some(sc)) => sc.allow_volume_expansion.unwrap_or(false),
                Ok(None) => false,
                // Not allowed to read StorageClasses (namespace-scoped install): let the API
                // server decide.
                Err(_) => true,
            },
            None => false,
        };
        if !expandable {
            return Some(format!(
                "volume {claim} stays {from}: its StorageClass {} does not allow expansion (spec asks for {to})",
                class.as_deref().unwrap_or("(none)")
            ));
        }
        if let Err(e) = children.guard() {
            report.note::<()>(Err(e));
            return None;
        }
        let patch = json!({"spec": {"resources": {"requests": {"storage": to}}}});
        match pvcs.patch(&claim, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                publish(
                    ctx,
                    ap,
                    EventType::Normal,
                    "VolumeExpanding",
                    format!("expanding {claim} from {from} to {to}"),
                )
                .await;
                pending.push(format!("{claim} is being expanded to {to}"));
            }
            Err(e) => return Some(format!("cannot expand {claim} to {to}: {e}")),
        }
    }
    (!pending.is_empty()).then(|| pending.join("; "))
}

/// The ports external dependencies are reached on (for the egress policies).
fn external_ports(ap: &AnalyticsPlatform, secrets: &Secrets) -> ExternalPorts {
    let kafka = ap.spec.kafka.external.as_ref().map(|e| bootstrap_ports(&e.bootstrap_servers)).unwrap_or_default();
    let clickhouse = ap.spec.clickhouse.external.as_ref().and_then(|e| url_port(&e.url)).into_iter().collect();
    let postgres = ap
        .spec
        .postgres
        .as_ref()
        .and_then(|p| p.url_secret_ref.as_ref())
        .map(|name| secret_value(secrets.named(name), "url").and_then(|u| url_port(&u)).unwrap_or(5432))
        .into_iter()
        .collect();
    ExternalPorts { kafka, clickhouse, postgres }
}

/// Step 3a: the Kafka topics.
async fn reconcile_kafka(
    ctx: &Context,
    ap: &AnalyticsPlatform,
    cfg: &KafkaConfig,
    previous: &AnalyticsPlatformStatus,
    effective: Effective,
) -> (DependencyState, Option<KafkaStatus>) {
    // The managed broker's volume (or its emptyDir's limit) bounds what its topics may hold.
    let volume = ap
        .spec
        .kafka
        .managed
        .as_ref()
        .and_then(|m| parse_quantity_bytes(m.storage.as_deref().unwrap_or(EMPTY_DIR_DATA_LIMIT)));
    let run = reconcile_topics(cfg, &ap.spec.kafka.topic, &cfg.dead_letter_topic, volume, effective);
    match tokio::time::timeout(ctx.settings.dependency_timeout, run).await {
        Ok(Ok(shape)) => {
            if let Some(before) = previous.kafka.as_ref().map(|k| k.partitions) {
                if before != shape.partitions {
                    publish(
                        ctx,
                        ap,
                        EventType::Normal,
                        "PartitionsChanged",
                        format!("topic {} now has {} partitions (was {before})", cfg.topic, shape.partitions),
                    )
                    .await;
                }
            }
            (
                DependencyState::Ready(format!(
                    "topic {} has {} partitions, replication factor {}",
                    cfg.topic, shape.partitions, shape.replication_factor
                )),
                Some(KafkaStatus {
                    topic: cfg.topic.clone(),
                    partitions: shape.partitions,
                    replication_factor: Some(shape.replication_factor),
                }),
            )
        }
        Ok(Err(e)) => {
            (DependencyState::Failed { reason: e.reason().into(), message: e.to_string() }, previous.kafka.clone())
        }
        Err(_) => (
            DependencyState::Failed {
                reason: "KafkaUnreachable".into(),
                message: format!("no answer within {:?}", ctx.settings.dependency_timeout),
            },
            previous.kafka.clone(),
        ),
    }
}

/// Step 3c: reads the consumer group's lag from Kafka and decides the consumer's replicas
/// ([`autoscale::decide`]); an Event says each change and why.
#[allow(clippy::too_many_arguments)]
async fn scale_consumer(
    ctx: &Context,
    ap: &AnalyticsPlatform,
    policy: &autoscale::Policy,
    partitions: i32,
    clickhouse: &DependencyState,
    previous: &AnalyticsPlatformStatus,
    lag: Option<autoscale::Lag>,
    unreadable: Option<&str>,
) -> Result<(ConsumerAutoscalingStatus, Option<i32>), Error> {
    let ns = ap.namespace().ok_or(Error::MissingMetadata)?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let current = deployments
        .get_opt(&deployment_name(ap, Workload::Consumer))
        .await
        .map_err(Error::Kube)?
        .and_then(|d| d.spec?.replicas);
    let history = previous.consumer_autoscaling.as_ref().map(|c| c.recommendations.clone()).unwrap_or_default();
    let healthy = matches!(clickhouse, DependencyState::Ready(_));
    let now_s = heartbeat::now_ms() / 1000;
    let d = autoscale::decide(policy, partitions, lag, healthy, current, &history, now_s);
    let mut message = d.message.clone();
    if let Some(e) = unreadable {
        message.push_str(&format!(" ({e})"));
    }
    // Partitions grow when the consumer runs one replica per partition and the lag still rises.
    let lag_before = previous.consumer_autoscaling.as_ref().and_then(|c| c.lag_records);
    let grow = autoscale::grow_partitions(
        policy,
        partitions,
        ap.spec.kafka.topic.max_partitions,
        current,
        lag_before,
        lag.map(|l| l.records),
        healthy,
    );
    let changed = current.is_some_and(|c| c != d.replicas);
    if changed {
        let action = format!("ScaleConsumerTo{}", d.replicas);
        publish_action(ctx, ap, EventType::Normal, "ConsumerScaled", &action, message.clone()).await;
    } else if !d.reason.follows_lag()
        && previous.consumer_autoscaling.as_ref().map(|c| c.reason.as_str()) != Some(d.reason.as_str())
    {
        publish(ctx, ap, EventType::Warning, "ConsumerScalingHeld", message.clone()).await;
    }
    Ok((
        ConsumerAutoscalingStatus {
            replicas: d.replicas,
            recommended_replicas: d.recommended,
            lag_records: lag.map(|l| l.records),
            oldest_unconsumed_age_seconds: lag.and_then(|l| l.oldest_age_seconds),
            reason: d.reason.as_str().to_string(),
            message,
            last_scale_time: if changed {
                Some(now())
            } else {
                previous.consumer_autoscaling.as_ref().and_then(|c| c.last_scale_time.clone())
            },
            recommendations: d.recommendations,
        },
        grow,
    ))
}

/// Step 3a: the consumer group's lag, read from Kafka (the committed offsets, the log ends and
/// the first unconsumed record of each partition); or why it could not be.
async fn read_lag(ctx: &Context, ap: &AnalyticsPlatform, cfg: &KafkaConfig) -> Result<autoscale::Lag, String> {
    let group = consumer_group(ap);
    let timeout = ctx.settings.dependency_timeout;
    let read =
        tokio::time::timeout(timeout, cairn_common::kafka::lag::group_lag(cfg, &cfg.topic, &group, timeout)).await;
    let now_ms = heartbeat::now_ms();
    match read {
        Ok(Ok(g)) => Ok(autoscale::Lag {
            records: g.records,
            oldest_age_seconds: g.oldest_timestamp_ms.map(|ts| ((now_ms - ts) / 1000).max(0)),
        }),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Step 3a: the backlog guard (backlog.rs): the retention the topic gets, the status, and an
/// Event when the backlog starts to be at risk or the retention changes.
async fn guard_backlog(
    ctx: &Context,
    ap: &AnalyticsPlatform,
    previous: &AnalyticsPlatformStatus,
    lag: &Result<autoscale::Lag, String>,
) -> (backlog::Guard, Option<BacklogStatus>) {
    let topic = &ap.spec.kafka.topic;
    let in_force = previous.backlog.as_ref().map(|b| b.retention_hours);
    let oldest = lag.as_ref().ok().and_then(|l| l.oldest_age_seconds);
    // A backlog whose oldest record could not be read is an unknown, not "nothing waits".
    let known = lag.as_ref().is_ok_and(|l| l.records == 0 || l.oldest_age_seconds.is_some());
    let g = backlog::guard(topic.retention_hours, topic.max_retention_hours, in_force, oldest, known);
    let was = previous.backlog.as_ref();
    if g.at_risk && !was.is_some_and(|b| b.at_risk) {
        publish(ctx, ap, EventType::Warning, "EventsAtRisk", g.message.clone()).await;
    }
    let before = in_force.unwrap_or(topic.retention_hours);
    if g.retention_hours != before {
        let action = format!("SetRetentionTo{}h", g.retention_hours);
        let note = format!("retention of topic {} {before}h → {}h: {}", topic.name, g.retention_hours, g.message);
        publish_action(ctx, ap, EventType::Normal, "RetentionChanged", &action, note).await;
    }
    let status = match lag {
        Ok(l) => Some(BacklogStatus {
            lag_records: l.records,
            oldest_unconsumed_age_seconds: l.oldest_age_seconds,
            retention_hours: g.retention_hours,
            at_risk: g.at_risk,
            message: g.message.clone(),
        }),
        Err(e) => was.map(|b| BacklogStatus {
            retention_hours: g.retention_hours,
            message: format!("{} (lag unreadable: {e})", g.message),
            ..b.clone()
        }),
    };
    (g, status)
}

/// `http://<cluster IP>:<port>` of the platform's capture Service.
async fn capture_address(ctx: &Context, ap: &AnalyticsPlatform) -> Result<String, String> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ap.namespace().unwrap_or_default());
    let name = child_name(ap, Workload::Capture.name());
    let svc = services.get_opt(&name).await.map_err(|e| format!("cannot read Service {name}: {e}"))?;
    let ip = svc
        .and_then(|s| s.spec?.cluster_ip)
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| format!("Service {name} has no cluster IP"))?;
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
    Ok(format!("http://{host}:{}", crate::resources::workload::SERVICE_PORT))
}

/// Step 4b: the heartbeat (heartbeat.rs): reads the newest heartbeat back from ClickHouse, sends
/// the next through capture when one is due (and capture has a ready replica), and judges the
/// data path.
#[allow(clippy::too_many_arguments)]
async fn beat(
    ctx: &Context,
    ap: &AnalyticsPlatform,
    interval: Duration,
    secrets: &Secrets,
    ch_cfg: &ClickHouseConfig,
    capture_ready: bool,
    clickhouse_ready: bool,
    previous: &AnalyticsPlatformStatus,
) -> (heartbeat::Assessment, DataPathStatus) {
    let uid = ap.uid().unwrap_or_default();
    let was = previous.data_path.clone().unwrap_or_default();
    let timeout = ctx.settings.dependency_timeout;
    let (arrived, read_error) = if clickhouse_ready {
        let read = tokio::time::timeout(timeout, heartbeat::newest_arrived(&clickhouse_client(ch_cfg), &uid)).await;
        match read {
            Ok(Ok(a)) => (a, None),
            Ok(Err(e)) => (None, Some(e.to_string())),
            Err(_) => (None, Some(format!("no answer within {timeout:?}"))),
        }
    } else {
        // Already known unreachable this reconcile: not asked twice.
        (None, Some("ClickHouse is not ready".to_string()))
    };
    // Kept from the status when ClickHouse could not be asked, or has none younger than a week.
    let last_arrived =
        arrived.map(|(sent, _)| sent).or_else(|| was.last_arrived_time.as_deref().and_then(heartbeat::parse_ms));
    let latency_ms = match arrived {
        Some((sent, stored)) => Some((stored - sent).max(0)),
        None => was.latency_ms,
    };
    let now_ms = heartbeat::now_ms();
    let mut first_sent = was.first_sent_time.as_deref().and_then(heartbeat::parse_ms);
    let mut last_sent = was.last_sent_time.as_deref().and_then(heartbeat::parse_ms);
    let mut send_error = was.send_error.clone();
    let sent_before = last_sent;
    let due = last_sent.is_none_or(|t| now_ms - t >= i64::try_from(interval.as_millis()).unwrap_or(i64::MAX) - 1_000);
    if due && capture_ready {
        let key = secret_value(secrets.generated.as_ref(), heartbeat::KEY);
        // Capture's Service by its cluster IP, read from the API: no cluster DNS between the
        // operator and the path it tests (a name that fails its search domains can be answered
        // by the node's resolver, and a pooled connection would keep whatever answered).
        let base = match tokio::time::timeout(timeout, capture_address(ctx, ap)).await {
            Ok(b) => b,
            Err(_) => Err(format!("the API server did not answer within {timeout:?}")),
        };
        let sent = match (key, base) {
            (Some(key), Ok(base)) => heartbeat::send(&ctx.http, &base, &key, &uid, now_ms).await,
            (None, _) => Err(format!("the generated credentials have no {}", heartbeat::KEY)),
            (_, Err(e)) => Err(e),
        };
        ctx.metrics
            .heartbeats
            .get_or_create(&crate::metrics::ResultLabels { result: if sent.is_ok() { "ok" } else { "error" } })
            .inc();
        if let Err(e) = &sent {
            tracing::warn!(error = %e, "the heartbeat could not be sent through capture");
        }
        send_error = sent.err();
        first_sent = first_sent.or(Some(now_ms));
        last_sent = Some(now_ms);
    }
    let seen = heartbeat::Seen { first_sent, last_sent: sent_before, last_arrived, latency_ms };
    let a =
        heartbeat::assess(now_ms, seen, ctx.settings.freshness_threshold, send_error.as_deref(), read_error.as_deref());
    let status = DataPathStatus {
        last_sent_time: last_sent.and_then(heartbeat::format_ms),
        first_sent_time: first_sent.and_then(heartbeat::format_ms),
        last_arrived_time: last_arrived.and_then(heartbeat::format_ms),
        latency_ms,
        send_error,
        message: a.message.clone(),
    };
    if previous.data_path.is_some() {
        let was_healthy =
            previous.conditions.iter().find(|c| c.type_ == crate::status::DATA_PATH_HEALTHY).map(|c| c.status.clone());
        match (a.healthy, was_healthy.as_deref()) {
            (Some(false), Some(s)) if s != "False" => {
                publish(ctx, ap, EventType::Warning, "DataPathStalled", a.message.clone()).await;
            }
            (Some(true), Some("False")) => {
                publish(ctx, ap, EventType::Normal, "DataPathRecovered", a.message.clone()).await;
            }
            _ => {}
        }
    }
    (a, status)
}

/// Step 3b: the ClickHouse schema, the events' TTL, and the platform's claim on the database.
async fn reconcile_clickhouse(
    ctx: &Context,
    ap: &AnalyticsPlatform,
    cfg: &ClickHouseConfig,
    claim: &Claim,
    query_password: Option<&str>,
    previous: &AnalyticsPlatformStatus,
) -> (DependencyState, Option<ClickHouseStatus>, Option<Option<String>>) {
    use cairn_common::clickhouse::MigrationError;
    let ch_spec = &ap.spec.clickhouse;
    let schema = async {
        // Copies of stored data are deferred: they run apart (backfills.rs), never in here.
        let status = migrate_deferring_backfills(cfg).await?;
        let ch = clickhouse_client(cfg);
        let topology = cfg.topology();
        apply_event_ttl(&ch, &topology, cfg.event_ttl_days).await?;
        claims::register(cfg, claim)
            .await
            .map_err(|source| MigrationError::ClickHouse { doing: "registering the platform", source })?;
        // The disks first: under pressure, backfills wait.
        // Not readable (an account without access to system.disks): reported, not a failure.
        let disks = match housekeeping::disks(&ch, &topology).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read ClickHouse's disks");
                Vec::new()
            }
        };
        let min_free = ch_spec.min_free_disk_percent.unwrap_or(housekeeping::DEFAULT_MIN_FREE_DISK_PERCENT);
        let pressure = housekeeping::pressure(&disks, min_free);
        let backfills = ctx.backfills.drive(cfg, &ctx.leadership, &ctx.metrics, &now(), pressure.as_deref()).await?;
        // A server others run keeps its own log retention unless the spec asks.
        let log_days = ch_spec.system_log_ttl_days.unwrap_or(if ch_spec.managed.is_some() {
            housekeeping::DEFAULT_SYSTEM_LOG_TTL_DAYS
        } else {
            0
        });
        let system_logs = if log_days == 0 {
            "left as the server keeps them (systemLogTtlDays 0)".to_string()
        } else {
            match housekeeping::system_log_ttls(&ch, &topology, log_days).await {
                Ok(logs) => logs.summary(log_days),
                Err(e) => format!("cannot read the system log tables: {e}"),
            }
        };
        // Event properties as columns: added at once, their backfill a background mutation.
        let mut keys: Vec<String> = match &ch_spec.property_columns {
            Some(keys) => keys.clone(),
            None => cairn_common::clickhouse::DEFAULT_PROPERTY_COLUMNS.iter().map(|k| k.to_string()).collect(),
        };
        // And those the queries parse most, from the query log (read every few minutes).
        let usage = ctx.property_usage.refresh(ap, &ch, &keys, ctx.settings.property_usage_interval).await;
        keys.extend(usage.chosen.iter().map(|u| u.key.clone()));
        // Their backfill writes a column into every part: not while a disk is short of space.
        let property_columns = match if pressure.is_some() {
            Err(format!("new property columns wait: {}", pressure.as_deref().unwrap_or("disk pressure")))
        } else {
            cairn_common::clickhouse::ensure_property_columns(&ch, &topology, &keys)
                .await
                .map_err(|e| format!("cannot add property columns: {e}"))
        } {
            Ok(report) => {
                let running = cairn_common::clickhouse::property_backfills_running(&ch, &topology).await.unwrap_or(0);
                let mut text = format!("{} columns", report.added.len() + report.present.len());
                if !report.added.is_empty() {
                    text.push_str(&format!(", added now: {}", report.added.join(", ")));
                }
                if running > 0 {
                    text.push_str(&format!(", {running} backfilling"));
                }
                if !report.refused.is_empty() {
                    text.push_str(&format!(
                        ", refused (letters, digits and $ _ - . : / only): {}",
                        report.refused.join(", ")
                    ));
                }
                text.push_str(&usage.summary());
                (text, report.added)
            }
            Err(e) => (e, Vec::new()),
        };
        let event_ttl = match housekeeping::verify_event_ttl(&ch, cfg.event_ttl_days).await {
            Ok((m, honoured)) => (m, Some(honoured)),
            Err(e) => (format!("cannot verify the events TTL: {e}"), None),
        };
        // The query service's read-only account. Not having it is no reason to stop: query then
        // keeps the platform's account (its statements still run with readonly = 2).
        let query_user = match query_password {
            Some(password) => {
                let user = query_user::user_name(ap);
                match query_user::ensure(cfg, &user, password).await {
                    Ok(()) => Ok(user),
                    Err(e) => Err(e.to_string()),
                }
            }
            None => Err(format!("the generated credentials have no {}", query_user::PASSWORD_KEY)),
        };
        Ok::<_, MigrationError>((
            status,
            backfills,
            query_user,
            (disks, pressure, system_logs, event_ttl, property_columns),
        ))
    };
    match tokio::time::timeout(ctx.settings.dependency_timeout, schema).await {
        Ok(Ok((s, backfills, query_user, (disks, pressure, system_logs, event_ttl, (property_columns, added))))) => {
            if !added.is_empty() {
                publish(
                    ctx,
                    ap,
                    EventType::Normal,
                    "PropertyColumnsAdded",
                    format!(
                        "event properties made columns (older events fill in the background): {}",
                        added.join(", ")
                    ),
                )
                .await;
            }
            let was = previous.clickhouse.as_ref();
            if system_logs.contains("refused")
                && was.and_then(|c| c.system_logs.as_deref()) != Some(system_logs.as_str())
            {
                publish(ctx, ap, EventType::Warning, "SystemLogTtlRefused", system_logs.clone()).await;
            }
            let (event_ttl, honoured) = event_ttl;
            // Once when it stops holding (its sentence names the oldest event's age, which
            // changes daily: compare the verdict, not the text).
            let held_before = was
                .and_then(|c| c.event_ttl.as_deref())
                .is_none_or(|t| t.contains("verified") || t.contains("forever") || t.starts_with("cannot verify"));
            if honoured == Some(false) && held_before {
                publish(ctx, ap, EventType::Warning, "EventTtlNotHonoured", event_ttl.clone()).await;
            }
            if pressure.is_some()
                && !previous.conditions.iter().any(|c| c.type_ == crate::status::DISK_PRESSURE && c.status == "True")
            {
                publish(ctx, ap, EventType::Warning, "DiskPressure", pressure.clone().unwrap_or_default()).await;
            }
            if !s.applied_now.is_empty() {
                publish(
                    ctx,
                    ap,
                    EventType::Normal,
                    "SchemaMigrated",
                    format!("applied ClickHouse migrations {:?}; schema version {}", s.applied_now, s.version),
                )
                .await;
            }
            let mut message = format!("schema version {} in database {}", s.version, cfg.database);
            for b in &backfills {
                message.push_str(&format!(
                    "; backfill of {} (migration {}) {}",
                    b.name,
                    b.migration,
                    b.state.to_lowercase()
                ));
            }
            match &query_user {
                Ok(user) => message.push_str(&format!("; query reads as {user}")),
                Err(e) => {
                    let note = format!("query uses the platform's account: cannot make its read-only account: {e}");
                    // Once when it stops working (or never did), not on every reconcile.
                    if previous.clickhouse.as_ref().is_none_or(|c| c.query_user.is_some()) {
                        publish(ctx, ap, EventType::Warning, "QueryAccountUnavailable", note.clone()).await;
                    }
                    tracing::warn!(error = %e, "cannot make the query service's read-only ClickHouse account");
                    message.push_str(&format!("; {note}"));
                }
            }
            (
                DependencyState::Ready(message),
                Some(ClickHouseStatus {
                    schema_version: s.version,
                    database: cfg.database.clone(),
                    backfills,
                    query_user: query_user.ok(),
                    disk_free: housekeeping::least_free_percent(&disks).map(|p| format!("{p:.0}%")),
                    disks,
                    system_logs: Some(system_logs),
                    event_ttl: Some(event_ttl),
                    property_columns: Some(property_columns),
                }),
                Some(pressure),
            )
        }
        Ok(Err(e)) => {
            let reason = match &e {
                MigrationError::ChecksumMismatch { .. } | MigrationError::DatabaseNewer { .. } => "SchemaConflict",
                MigrationError::Statement { .. } | MigrationError::Cluster { .. } => "MigrationFailed",
                MigrationError::ClickHouse { .. } => "ClickHouseUnreachable",
            };
            (
                DependencyState::Failed { reason: reason.into(), message: e.to_string() },
                previous.clickhouse.clone(),
                None,
            )
        }
        Err(_) => (
            DependencyState::Failed {
                reason: "ClickHouseUnreachable".into(),
                message: format!("no answer within {:?}", ctx.settings.dependency_timeout),
            },
            previous.clickhouse.clone(),
            None,
        ),
    }
}

fn claim_of(ap: &AnalyticsPlatform, uid: &str) -> Claim {
    Claim {
        uid: uid.to_string(),
        platform: platform_key(ap),
        kafka: kafka_bootstrap(ap),
        topic: ap.spec.kafka.topic.name.clone(),
    }
}

/// Step 4: one workload's Deployment, Service, PodDisruptionBudget and autoscaler. Returns the
/// Deployment as applied (with the status it had), if it could be.
async fn apply_workload(
    children: &Children<'_>,
    report: &mut Report,
    ap: &AnalyticsPlatform,
    w: Workload,
    inputs: &PodInputs<'_>,
    lag_replicas: Option<i32>,
) -> Option<Deployment> {
    let name = deployment_name(ap, w);
    let deployment_applied = match report.note(children.get::<Deployment>(&name).await) {
        Some(current) => {
            let plan = replicas_plan(ap, w, current.as_ref(), lag_replicas);
            let handed_over = match plan {
                Replicas::HandOver(n) => report.note(children.hand_over_replicas(&name, n).await).is_some(),
                _ => true,
            };
            match report.built(deployment(ap, w, inputs, plan.applied())) {
                Some(d) if handed_over => report.note(children.apply_checked(&d).await),
                _ => None,
            }
        }
        None => None,
    };
    report.note(put(children, pod_disruption_budget(ap, w)).await);
    match horizontal_pod_autoscaler(ap, w) {
        Some(hpa) => report.note(put(children, hpa).await).map(|_| ()),
        None => report.note(children.delete::<HorizontalPodAutoscaler>(&child_name(ap, w.name())).await).map(|_| ()),
    };
    deployment_applied
}

/// What a Deployment shows of its rollout.
fn observe_deployment(d: Option<&Deployment>) -> WorkloadObservation {
    let Some(d) = d else { return WorkloadObservation::default() };
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let observed = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let stalled = st.conditions.iter().flatten().find_map(|c| {
        (c.type_ == "Progressing" && c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            .then(|| c.message.clone().unwrap_or_else(|| "progress deadline exceeded".into()))
    });
    WorkloadObservation {
        status: WorkloadStatus { ready_replicas: ready, desired_replicas: desired },
        rolled_out: observed && updated >= desired && total <= desired && available >= desired,
        stalled,
    }
}

async fn observe_deployments(
    client: &Client,
    ns: &str,
    ap: &AnalyticsPlatform,
) -> Result<[WorkloadObservation; 4], kube::Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut out: [WorkloadObservation; 4] = Default::default();
    for (i, w) in Workload::ALL.iter().enumerate() {
        let d = api.get_opt(&deployment_name(ap, *w)).await?;
        out[i] = observe_deployment(d.as_ref());
    }
    Ok(out)
}

/// The whole of one reconcile of a platform that is not being deleted.
async fn apply_platform(ap: &AnalyticsPlatform, ctx: &Context) -> Result<Action, Error> {
    let ns = ap.namespace().ok_or(Error::MissingMetadata)?;
    let uid = ap.uid().ok_or(Error::MissingMetadata)?;
    let client = &ctx.client;
    let api: Api<AnalyticsPlatform> = Api::namespaced(client.clone(), &ns);
    let mut previous = ap.status.clone().unwrap_or_default();
    let generation = ap.metadata.generation.unwrap_or(0);
    let children = Children::new(client, &ns, &uid, &ctx.leadership);
    if lag_policy(ap).is_some() {
        // The scale-down window lives in the status: read it as it is now, not as the
        // controller's cache last saw it (a reconcile on a stale copy would forget the
        // recommendations the one before it made, and scale down early).
        if let Some(fresh) = api.get_opt(&ap.name_any()).await? {
            previous.consumer_autoscaling = fresh.status.and_then(|s| s.consumer_autoscaling);
        }
    }

    if ap.spec.paused {
        let observed = Observed {
            generation,
            paused: true,
            workloads: observe_deployments(client, &ns, ap).await?,
            kafka: DependencyState::Unknown,
            clickhouse: DependencyState::Unknown,
            now: now(),
            ..Observed::default()
        };
        let status = AnalyticsPlatformStatus {
            kafka: previous.kafka.clone(),
            clickhouse: previous.clickhouse.clone(),
            managed: previous.managed.clone(),
            backlog: previous.backlog.clone(),
            data_path: previous.data_path.clone(),
            ..Default::default()
        };
        write_status(ctx, ap, &api, &previous, observed, status, None).await?;
        return Ok(Action::requeue(ctx.settings.resync));
    }

    // 1. Identity, configuration, credentials.
    let mut report = Report::default();
    report.note(put(&children, service_account(ap)).await);
    let config = report.built(config_map(ap));
    if let Some(cm) = &config {
        report.note(children.apply(cm).await);
    }
    let mut secrets = read_secrets(client, &ns, ap).await?;
    secrets.generated = report.note(ensure_credentials(ctx, &children, ap, secrets.generated.take()).await);
    let missing_secrets: Vec<String> = referenced_secrets(ap)
        .into_iter()
        .filter(|(name, _)| secrets.named(name).is_none())
        .map(|(name, field)| format!("Secret {name} (named by {field}) does not exist"))
        .collect();

    // 2. Network policies and managed dependencies.
    let peer = OperatorPeer { namespace: ctx.settings.operator_namespace.clone() };
    if let Some(policies) = report.built(network_policies(ap, &peer, &external_ports(ap, &secrets))) {
        let names: Vec<String> = policies.iter().filter_map(|p| p.metadata.name.clone()).collect();
        for p in &policies {
            report.note(children.apply(p).await);
        }
        // Policies the platform no longer has, and those of earlier operator versions.
        let stale = POLICY_PARTS
            .iter()
            .map(|part| child_name(ap, &format!("netpol-{part}")))
            .chain(["workloads", "dependencies"].map(|p| child_name(ap, p)))
            .filter(|n| !names.contains(n));
        for name in stale {
            report.note(children.delete::<NetworkPolicy>(&name).await);
        }
    }
    let mut managed_status = Vec::new();
    let wanted: Vec<&str> = match report.built(managed_dependencies(ap)) {
        Some(deps) => {
            for m in &deps {
                managed_status.push(apply_managed(ctx, &children, &mut report, ap, m).await);
            }
            deps.iter().map(|m| m.component).collect()
        }
        None => MANAGED_COMPONENTS.to_vec(),
    };
    for component in MANAGED_COMPONENTS.iter().filter(|c| !wanted.contains(c)) {
        let name = child_name(ap, component);
        report.note(children.delete::<StatefulSet>(&name).await);
        report.note(children.delete::<Service>(&name).await);
        if *component == "kafka" {
            report.note(children.delete::<Service>(&crate::resources::managed::kafka_brokers_service(ap)).await);
            report.note(children.delete::<PodDisruptionBudget>(&name).await);
        }
    }
    if report.not_leader {
        return Err(Error::NotLeader);
    }

    // 3. Kafka topics and the ClickHouse schema. First the consumer group's lag: the backlog
    // guard decides the topic's retention from it.
    let kafka_cfg = kafka_config(ap, &secrets);
    let lag = read_lag(ctx, ap, &kafka_cfg).await;
    let (guard, backlog_status) = guard_backlog(ctx, ap, &previous, &lag).await;
    let grown = previous.kafka.as_ref().map(|k| k.partitions);
    let mut effective = Effective {
        retention_hours: guard.retention_hours,
        partitions: crate::topic::partitions(&ap.spec.kafka.topic, grown),
    };
    let (kafka, mut kafka_status) = reconcile_kafka(ctx, ap, &kafka_cfg, &previous, effective).await;
    let ch_cfg = clickhouse_config(ap, &secrets);
    let query_password = secret_value(secrets.generated.as_ref(), query_user::PASSWORD_KEY);
    let (clickhouse, clickhouse_status, disk_pressure) =
        reconcile_clickhouse(ctx, ap, &ch_cfg, &claim_of(ap, &uid), query_password.as_deref(), &previous).await;
    let clickhouse_query_user = clickhouse_status.as_ref().and_then(|c| c.query_user.clone());

    // 3c. The consumer's replicas from its lag in Kafka, when it scales by lag; and the
    // partitions, when the replicas cannot grow further without them.
    let scaling = match lag_policy(ap) {
        Some(policy) => {
            let partitions = kafka_status.as_ref().map(|k| k.partitions).unwrap_or(ap.spec.kafka.topic.partitions);
            let (lag_ok, unreadable) = match &lag {
                Ok(l) => (Some(*l), None),
                Err(e) => (None, Some(e.as_str())),
            };
            let (scaling, grow) =
                scale_consumer(ctx, ap, &policy, partitions, &clickhouse, &previous, lag_ok, unreadable).await?;
            if let Some(n) = grow {
                effective.partitions = n;
                let (_, grown) = reconcile_kafka(ctx, ap, &kafka_cfg, &previous, effective).await;
                if let Some(k) = grown.filter(|k| k.partitions > partitions) {
                    let note = format!(
                        "the consumer runs {partitions} replicas on {partitions} partitions and the lag keeps rising: \
                         topic {} grown to {} partitions (maxPartitions {})",
                        k.topic,
                        k.partitions,
                        ap.spec.kafka.topic.max_partitions.unwrap_or(k.partitions)
                    );
                    publish_action(
                        ctx,
                        ap,
                        EventType::Normal,
                        "PartitionsGrown",
                        &format!("GrowPartitionsTo{}", k.partitions),
                        note,
                    )
                    .await;
                    kafka_status = Some(k);
                }
            }
            Some(scaling)
        }
        None => None,
    };

    // 4. The workloads, rolled whenever what their pods read changes.
    let hash = config.as_ref().map(|cm| config_hash(&cm.data.clone().unwrap_or_default(), &secrets.versions(ap)));
    let version = ctx.upgrades.choose(ap, &ctx.settings.default_version, ctx.platforms.state().iter().map(Arc::as_ref));
    let sa = service_account_name(ap);
    let mut workloads: [WorkloadObservation; 4] = Default::default();
    // Every Service before any Deployment: a pod that starts before the Service it calls has a
    // name resolves the bare name outside the cluster (the search domains fail, then the node's
    // resolver answers), and its HTTP client keeps the connection to whatever answered.
    for w in Workload::ALL {
        report.note(put(&children, service(ap, w)).await);
    }
    report.note(put(&children, capture_peers_service(ap)).await);
    if let Some(hash) = &hash {
        let inputs = PodInputs {
            service_account: &sa,
            config_hash: hash,
            version: &version.apply,
            progress_deadline_seconds: i32::try_from(ctx.settings.progress_deadline.as_secs()).unwrap_or(i32::MAX),
            clickhouse_query_user: clickhouse_query_user.as_deref(),
        };
        for (i, w) in Workload::ALL.iter().enumerate() {
            let lag_replicas = scaling.as_ref().map(|s| s.replicas);
            let applied = apply_workload(&children, &mut report, ap, *w, &inputs, lag_replicas).await;
            workloads[i] = observe_deployment(applied.as_ref());
        }
    }
    match ingress(ap) {
        Some(i) => report.note(put(&children, i).await).map(|_| ()),
        None => report.note(children.delete::<Ingress>(&child_name(ap, "ingress")).await).map(|_| ()),
    };
    if report.not_leader {
        return Err(Error::NotLeader);
    }

    // 4b. The heartbeat through the data path.
    let data_path = match ctx.settings.heartbeat {
        Some(interval) => {
            let capture_ready = workloads[0].status.ready_replicas > 0;
            let clickhouse_ready = matches!(clickhouse, DependencyState::Ready(_));
            Some(beat(ctx, ap, interval, &secrets, &ch_cfg, capture_ready, clickhouse_ready, &previous).await)
        }
        None => None,
    };

    // 5. Status.
    for c in &report.conflicts {
        let known = previous.conditions.iter().any(|p| p.message.contains(c.as_str()));
        if !known {
            publish(ctx, ap, EventType::Warning, "OwnershipConflict", c.clone()).await;
        }
    }
    let observed = Observed {
        generation,
        paused: false,
        workloads,
        managed: managed_status.clone(),
        kafka,
        clickhouse,
        conflicts: report.conflicts,
        invalid: report.invalid,
        missing_secrets,
        apply_error: report.apply_error,
        upgrade_waiting: version
            .waiting_for
            .clone()
            .map(|holder| format!("version {} waits until {holder} has finished its upgrade", version.target)),
        consumer_scaling: scaling.as_ref().map(|s| {
            let follows = s.reason != autoscale::Reason::ClickHouseUnhealthy.as_str()
                && s.reason != autoscale::Reason::LagUnknown.as_str();
            (follows, s.reason.clone(), s.message.clone())
        }),
        data_path: data_path.as_ref().map(|(a, _)| (a.healthy, a.reason.to_string(), a.message.clone())),
        backlog: backlog_status.as_ref().map(|b| (b.at_risk, guard.unprotected, b.message.clone())),
        disk_pressure,
        now: now(),
    };
    let lag_scaled = scaling.is_some();
    ctx.metrics.set_data_path(
        &ns,
        &ap.name_any(),
        &crate::metrics::DataPathFigures {
            lag_records: lag.as_ref().ok().map(|l| l.records),
            oldest_age_seconds: lag.as_ref().ok().map(|l| l.oldest_age_seconds.unwrap_or(0)),
            freshness_seconds: data_path.as_ref().and_then(|(a, _)| a.freshness_seconds),
            events_at_risk: backlog_status.as_ref().map(|b| b.at_risk),
            retention_hours: backlog_status.as_ref().map(|b| b.retention_hours),
            disks: clickhouse_status
                .as_ref()
                .map(|c| c.disks.iter().map(|d| (d.name.clone(), d.free_bytes, d.total_bytes)).collect())
                .unwrap_or_default(),
        },
    );
    let status = AnalyticsPlatformStatus {
        kafka: kafka_status,
        clickhouse: clickhouse_status,
        managed: managed_status,
        consumer_autoscaling: scaling,
        freshness_seconds: data_path.as_ref().and_then(|(a, _)| a.freshness_seconds),
        data_path: data_path.map(|(_, d)| d),
        backlog: backlog_status,
        ..Default::default()
    };
    let backfilling = status.clickhouse.as_ref().is_some_and(|c| !c.backfills.is_empty());
    let backlog_at_risk =
        status.backlog.as_ref().is_some_and(|b| b.at_risk || b.retention_hours != ap.spec.kafka.topic.retention_hours);
    let ready = write_status(ctx, ap, &api, &previous, observed, status, Some(&version)).await?;
    let settled = ready && version.waiting_for.is_none() && !backfilling;
    let mut next = if settled { ctx.settings.resync } else { ctx.settings.retry };
    if lag_scaled || backlog_at_risk {
        // The lag is read again at least this often.
        next = next.min(ctx.settings.autoscale);
    }
    if let Some(interval) = ctx.settings.heartbeat {
        next = next.min(interval);
    }
    Ok(Action::requeue(next))
}

/// Writes the status when it changed, publishes an Event when the phase changed, and returns
/// whether the platform is Ready.
async fn write_status(
    ctx: &Context,
    ap: &AnalyticsPlatform,
    api: &Api<AnalyticsPlatform>,
    previous: &AnalyticsPlatformStatus,
    observed: Observed,
    mut status: AnalyticsPlatformStatus,
    version: Option<&VersionChoice>,
) -> Result<bool, Error> {
    let (conditions, phase) = evaluate(&previous.conditions, &observed);
    let (capture, query) = endpoints(ap);
    status.observed_generation = Some(observed.generation);
    status.phase = Some(phase.clone());
    status.conditions = conditions;
    status.workloads = WorkloadsStatus {
        capture: observed.workloads[0].status.clone(),
        consumer: observed.workloads[1].status.clone(),
        query: observed.workloads[2].status.clone(),
        auth: observed.workloads[3].status.clone(),
    };
    status.endpoints = Some(Endpoints { capture, query });
    // The version: what runs once it is rolled out and Ready; the one being applied until then.
    status.version = previous.version.clone();
    status.target_version = previous.target_version.clone();
    if let Some(v) = version {
        // Rolled out: Ready, or degraded only by the data path (a full disk or a stopped
        // consumer is no reason to hold every other platform's upgrade).
        if phase == "Ready" || crate::status::rolled_out(&status.conditions) {
            status.version = Some(v.apply.clone());
        }
        status.target_version = Some(v.apply.clone()).filter(|a| status.version.as_ref() != Some(a));
        if status.version.as_deref() == Some(v.target.as_str()) {
            ctx.upgrades.release(ap);
        }
    }
    if &status != previous {
        if !ctx.leadership.is_leader() {
            return Err(Error::NotLeader);
        }
        // A merge patch keeps what it does not mention: fields the new status no longer has
        // (a finished backfill, a target version reached) must be removed with explicit nulls.
        let patch = merge_patch(
            &serde_json::to_value(previous).map_err(|e| Error::Cleanup(e.to_string()))?,
            &serde_json::to_value(&status).map_err(|e| Error::Cleanup(e.to_string()))?,
        );
        api.patch_status(&ap.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": patch}))).await?;
    }
    if previous.phase.as_deref() != Some(phase.as_str()) {
        let degraded = status.conditions.iter().find(|c| c.type_ == crate::status::DEGRADED);
        match phase.as_str() {
            "Degraded" => {
                let (reason, message) = degraded.map(|c| (c.reason.clone(), c.message.clone())).unwrap_or_default();
                publish(ctx, ap, EventType::Warning, &reason, message).await;
            }
            other => publish(ctx, ap, EventType::Normal, other, format!("phase is now {other}")).await,
        }
    }
    ctx.metrics.set_phase(&ap.namespace().unwrap_or_default(), &ap.name_any(), &phase);
    Ok(phase == "Ready")
}

/// The platforms the operator sees, other than `ap`, that use the same ClickHouse database or the
/// same Kafka topic: `(uses the database, uses the topic, name)`.
fn sharing_platforms(ap: &AnalyticsPlatform, all: &[Arc<AnalyticsPlatform>]) -> Vec<(bool, bool, String)> {
    all.iter()
        .filter(|o| o.uid() != ap.uid() && o.metadata.deletion_timestamp.is_none())
        .filter_map(|o| {
            let db =
                clickhouse_url(o) == clickhouse_url(ap) && o.spec.clickhouse.database == ap.spec.clickhouse.database;
            let topic =
                kafka_bootstrap(o) == kafka_bootstrap(ap) && o.spec.kafka.topic.name == ap.spec.kafka.topic.name;
            (db || topic).then(|| (db, topic, platform_key(o)))
        })
        .collect()
}

/// Deletion. Under Retain only the platform's claims are released. Under Delete the topics of
/// an external Kafka and the database of an external ClickHouse are removed — unless another
/// platform uses them. A cleanup that cannot finish gives up after `cleanup_timeout` (or at
/// once when the namespace is being deleted and the credentials it needs are already gone), with
/// a Warning Event naming what is left, so that deleting a namespace never hangs.
async fn cleanup(ap: &AnalyticsPlatform, ctx: &Context) -> Result<Action, Error> {
    let ns = ap.namespace().ok_or(Error::MissingMetadata)?;
    let uid = ap.uid().ok_or(Error::MissingMetadata)?;
    ctx.upgrades.release(ap);
    let disks: Vec<String> = ap
        .status
        .as_ref()
        .and_then(|s| s.clickhouse.as_ref())
        .map(|c| c.disks.iter().map(|d| d.name.clone()).collect())
        .unwrap_or_default();
    ctx.metrics.forget_platform(&ns, &ap.name_any(), &disks);
    let secrets = read_secrets(&ctx.client, &ns, ap).await.unwrap_or_default();
    let ch = clickhouse_config(ap, &secrets);
    let claim = claim_of(ap, &uid);
    let external_kafka = ap.spec.kafka.managed.is_none();
    let external_ch = ap.spec.clickhouse.managed.is_none();
    // The query service's account goes with the platform whatever the policy (retained data
    // gets a new one when a platform uses it again); best effort and briefly, like the claim.
    if ap.status.as_ref().and_then(|s| s.clickhouse.as_ref()).is_some_and(|c| c.query_user.is_some()) {
        let user = query_user::user_name(ap);
        if !matches!(tokio::time::timeout(Duration::from_secs(5), query_user::drop(&ch, &user)).await, Ok(Ok(()))) {
            tracing::debug!(platform = %ap.name_any(), %user, "could not drop the query service's account");
        }
    }

    if ap.spec.deletion_policy == DeletionPolicy::Retain || !(external_kafka || external_ch) {
        // The data stays; only the claim goes, best effort and briefly (a managed ClickHouse may
        // be going away with the namespace at the same moment).
        let release = tokio::time::timeout(Duration::from_secs(5), claims::release(&ch, &claim));
        if !matches!(release.await, Ok(Ok(()))) {
            tracing::debug!(platform = %ap.name_any(), "could not release the platform's claim");
        }
        return Ok(Action::await_change());
    }

    let work = async {
        let mut done = Vec::new();
        let mut kept = Vec::new();
        {
            let mut db_users: Vec<String> = Vec::new();
            let mut topic_users: Vec<String> = Vec::new();
            for (db, topic, name) in sharing_platforms(ap, &ctx.platforms.state()) {
                if db {
                    db_users.push(name.clone());
                }
                if topic {
                    topic_users.push(name);
                }
            }
            if external_ch {
                for o in claims::other_users(&ch, &uid).await.map_err(|e| Error::Cleanup(e.to_string()))? {
                    if o.kafka == claim.kafka && o.topic == claim.topic {
                        topic_users.push(o.platform.clone());
                    }
                    db_users.push(o.platform);
                }
            }
            db_users.sort();
            db_users.dedup();
            topic_users.sort();
            topic_users.dedup();
            if external_kafka {
                if topic_users.is_empty() {
                    let kafka = kafka_config(ap, &secrets);
                    if !ctx.leadership.is_leader() {
                        return Err(Error::NotLeader);
                    }
                    delete_topics(&kafka, &[kafka.topic.clone(), kafka.dead_letter_topic.clone()])
                        .await
                        .map_err(|e| Error::Cleanup(e.to_string()))?;
                    done.push(format!("deleted topic {}", kafka.topic));
                } else {
                    kept.push(format!("kept topic {} (used by {})", claim.topic, topic_users.join(", ")));
                }
            }
            if external_ch {
                if db_users.is_empty() {
                    let mut server = ch.clone();
                    server.database = "default".into();
                    if !ctx.leadership.is_leader() {
                        return Err(Error::NotLeader);
                    }
                    cairn_common::clickhouse::server_client(&server)
                        .query(&format!("DROP DATABASE IF EXISTS `{}`", ch.database.replace('`', "")))
                        .execute()
                        .await
                        .map_err(|e| Error::Cleanup(e.to_string()))?;
                    done.push(format!("dropped database {}", ch.database));
                } else {
                    claims::release(&ch, &claim).await.map_err(|e| Error::Cleanup(e.to_string()))?;
                    kept.push(format!("kept database {} (used by {})", ch.database, db_users.join(", ")));
                }
            }
        }
        Ok::<_, Error>((done, kept))
    };
    match tokio::time::timeout(ctx.settings.dependency_timeout, work).await {
        Ok(Ok((done, kept))) => {
            if !done.is_empty() || !kept.is_empty() {
                let note = done.into_iter().chain(kept).collect::<Vec<_>>().join("; ");
                publish(ctx, ap, EventType::Normal, "ExternalStateCleaned", note).await;
            }
            Ok(Action::await_change())
        }
        Ok(Err(Error::NotLeader)) => Err(Error::NotLeader),
        outcome => {
            let error = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {:?}", ctx.settings.dependency_timeout),
            };
            if give_up_cleanup(ctx, ap, &ns, &secrets).await {
                let note = format!(
                    "gave up cleaning up external state ({error}); left behind: {}",
                    [
                        external_kafka.then(|| format!("topic {}", ap.spec.kafka.topic.name)),
                        external_ch.then(|| format!("database {}", ap.spec.clickhouse.database)),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
                );
                tracing::warn!(platform = %ap.name_any(), %note, "cleanup abandoned");
                publish(ctx, ap, EventType::Warning, "CleanupAbandoned", note).await;
                Ok(Action::await_change())
            } else {
                Err(Error::Cleanup(error))
            }
        }
    }
}

/// Whether a failing cleanup should stop retrying: past the cleanup timeout, or at once when the
/// namespace is terminating and a Secret the cleanup needs is gone (it cannot come back).
async fn give_up_cleanup(ctx: &Context, ap: &AnalyticsPlatform, ns: &str, secrets: &Secrets) -> bool {
    let since = ap
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0).unsigned_abs())
        .unwrap_or_default();
    if since >= ctx.settings.cleanup_timeout {
        return true;
    }
    let needs_secret = referenced_secrets(ap).iter().any(|(name, _)| secrets.named(name).is_none());
    if !needs_secret {
        return false;
    }
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.client.clone());
    match namespaces.get_opt(ns).await {
        Ok(Some(n)) => n.metadata.deletion_timestamp.is_some(),
        Ok(None) => true,
        // Not allowed to read Namespaces (namespace-scoped install): wait for the timeout.
        Err(_) => false,
    }
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: `new`'s values, with `null` for
/// every key `old` has and `new` lacks, recursively through objects.
pub fn merge_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in n {
                out.insert(k.clone(), o.get(k).map(|ov| merge_patch(ov, v)).unwrap_or_else(|| v.clone()));
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        (_, n) => n.clone(),
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patches_remove_what_is_gone() {
        let old = json!({"phase": "Ready", "targetVersion": "2", "clickhouse": {"schemaVersion": 3, "backfills": [1]}});
        let new = json!({"phase": "Ready", "clickhouse": {"schemaVersion": 3}});
        assert_eq!(
            merge_patch(&old, &new),
            json!({"phase": "Ready", "targetVersion": null, "clickhouse": {"schemaVersion": 3, "backfills": null}})
        );
        assert_eq!(merge_patch(&json!({"a": [1, 2]}), &json!({"a": [3]})), json!({"a": [3]}), "arrays are replaced");
    }
}
