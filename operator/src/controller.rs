//! The reconciler: one AnalyticsPlatform → its children (server-side apply under one field
//! manager, owned by the platform), its Kafka topics, its ClickHouse schema, and an honest status.
//!
//! Triggers: a spec change (the generation predicate ignores the operator's own status writes),
//! a change to any owned child (so a child edited or deleted by hand is put back), and a periodic
//! resync. An idle platform costs one reconcile per resync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::clickhouse::{apply_event_ttl, client as clickhouse_client, migrate};
use cairn_common::config::{ClickHouseConfig, KafkaConfig};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{predicates, reflector, watcher, PredicateConfig, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::crd::{
    AnalyticsPlatform, AnalyticsPlatformStatus, ClickHouseStatus, DeletionPolicy, Endpoints, KafkaStatus,
    WorkloadStatus, WorkloadsStatus, FIELD_MANAGER, FINALIZER,
};
use crate::metrics::OperatorMetrics;
use crate::resources::config::{clickhouse_url, config_map, dead_letter_topic, generated_secret, kafka_bootstrap};
use crate::resources::ingress::{endpoints, ingress};
use crate::resources::managed::managed_dependencies;
use crate::resources::network::{network_policies, service_account, service_account_name};
use crate::resources::workload::{
    deployment, deployment_name, horizontal_pod_autoscaler, pod_disruption_budget, service,
};
use crate::resources::{child_name, Workload};
use crate::status::{evaluate, DependencyState, Observed};
use crate::topic::{delete_topics, reconcile_topics};

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("the AnalyticsPlatform has no namespace")]
    MissingNamespace,
    #[error("cannot clean up external state: {0}")]
    Cleanup(String),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingNamespace => "missing_namespace",
            Error::Cleanup(_) => "cleanup",
        }
    }
}

/// How often settled platforms are looked at again, and how soon unsettled ones are.
#[derive(Debug, Clone)]
pub struct Settings {
    pub resync: Duration,
    pub retry: Duration,
    /// Watch one namespace only (namespace-scoped installation), or all.
    pub namespace: Option<String>,
    /// Timeout of each call to Kafka or ClickHouse.
    pub dependency_timeout: Duration,
}

pub struct Context {
    pub client: Client,
    pub metrics: Arc<OperatorMetrics>,
    pub recorder: Recorder,
    pub settings: Settings,
}

/// Runs the controller until `stop`.
pub async fn run(
    client: Client,
    metrics: Arc<OperatorMetrics>,
    settings: Settings,
    identity: String,
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
    let ctx = Arc::new(Context { client: client.clone(), metrics, recorder, settings });

    let (reader, writer) = reflector::store();
    let stream = watcher(platforms, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());

    // Children trigger a reconcile of their owner when they change or disappear, but not when a
    // watch restarts and lists them again unchanged (the resource-version predicate): an idle
    // platform then costs nothing but its periodic resync.
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
        .owns_stream(changes(owned::<Secret>(&client, &ns), children.clone()))
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
    tracing::warn!(platform = %ap.name_any(), %error, "reconcile error; retrying");
    ctx.metrics.count_error(error.metric_label());
    Action::requeue(ctx.settings.retry)
}

async fn reconcile(ap: Arc<AnalyticsPlatform>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&ap, &ctx).await;
    ctx.metrics.observe(started.elapsed(), result.is_ok());
    result
}

/// Server-side apply under the operator's field manager, taking ownership of conflicting fields
/// (so hand edits of managed fields are put back).
async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj)).await
}

/// Deletes a child that the spec no longer asks for (absent already is fine).
async fn delete_if_present<K>(client: &Client, ns: &str, name: &str) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn read_secret(client: &Client, ns: &str, name: &str) -> Result<Option<Secret>, kube::Error> {
    Api::<Secret>::namespaced(client.clone(), ns).get_opt(name).await
}

fn secret_value(secret: &Option<Secret>, key: &str) -> Option<String> {
    secret
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// How the operator itself reaches the platform's Kafka.
async fn kafka_config(ap: &AnalyticsPlatform, client: &Client, ns: &str) -> Result<KafkaConfig, kube::Error> {
    let mut cfg = KafkaConfig {
        brokers: kafka_bootstrap(ap),
        topic: ap.spec.kafka.topic.name.clone(),
        dead_letter_topic: dead_letter_topic(ap),
        security_protocol: None,
        sasl_mechanism: None,
        sasl_username: None,
        sasl_password: None,
        ssl_ca_location: None,
    };
    if let Some(e) = &ap.spec.kafka.external {
        cfg.security_protocol = e.security_protocol.clone();
        if let Some(name) = &e.sasl_secret_ref {
            let s = read_secret(client, ns, name).await?;
            cfg.sasl_username = secret_value(&s, "username");
            cfg.sasl_password = secret_value(&s, "password");
            cfg.sasl_mechanism = secret_value(&s, "mechanism").or(Some("SCRAM-SHA-512".into()));
        }
    }
    Ok(cfg)
}

/// How the operator itself reaches the platform's ClickHouse.
async fn clickhouse_config(ap: &AnalyticsPlatform, client: &Client, ns: &str) -> Result<ClickHouseConfig, kube::Error> {
    let (user, password) = match (&ap.spec.clickhouse.external, &ap.spec.clickhouse.managed) {
        (Some(e), _) => match &e.credentials_secret_ref {
            Some(name) => {
                let s = read_secret(client, ns, name).await?;
                (secret_value(&s, "username").unwrap_or_else(|| "default".into()), secret_value(&s, "password"))
            }
            None => ("default".into(), None),
        },
        _ => {
            let s = read_secret(client, ns, &crate::resources::config::generated_secret_name(ap)).await?;
            ("cairn".into(), secret_value(&s, "clickhouse-password"))
        }
    };
    Ok(ClickHouseConfig {
        url: clickhouse_url(ap),
        database: ap.spec.clickhouse.database.clone(),
        user,
        password,
        lz4: false,
        event_ttl_days: ap.spec.event_ttl_days,
    })
}

async fn set_finalizer(api: &Api<AnalyticsPlatform>, ap: &AnalyticsPlatform, present: bool) -> Result<(), kube::Error> {
    let mut finalizers: Vec<String> = ap.finalizers().iter().filter(|f| f.as_str() != FINALIZER).cloned().collect();
    if present {
        finalizers.push(FINALIZER.to_string());
    }
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": ap.resource_version()}});
    api.patch(&ap.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

async fn publish(ctx: &Context, ap: &AnalyticsPlatform, type_: EventType, reason: &str, note: String) {
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &ap.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish an event");
    }
}

/// Whether deleting the platform leaves state outside the cluster's garbage collection to
/// delete: the Delete policy and an external Kafka or ClickHouse. A managed dependency is a child
/// of the platform, deleted with it (its volumes as the policy says, see `managed.rs`); its
/// topic or database needs no cleaning, and often could not be cleaned anyway: deleting a
/// namespace deletes the broker's pod at the same time as the platform.
fn has_external_state_to_delete(ap: &AnalyticsPlatform) -> bool {
    ap.spec.deletion_policy == DeletionPolicy::Delete
        && (ap.spec.kafka.managed.is_none() || ap.spec.clickhouse.managed.is_none())
}

/// Deletion: with the Delete policy, remove the topics of an external Kafka and the database of
/// an external ClickHouse, then let go.
async fn cleanup(ap: &AnalyticsPlatform, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let api: Api<AnalyticsPlatform> = Api::namespaced(ctx.client.clone(), ns);
    if !ap.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if ap.spec.deletion_policy == DeletionPolicy::Delete {
        let mut deleted = Vec::new();
        if ap.spec.kafka.managed.is_none() {
            let kafka = kafka_config(ap, &ctx.client, ns).await?;
            tokio::time::timeout(
                ctx.settings.dependency_timeout,
                delete_topics(&kafka, &[kafka.topic.clone(), kafka.dead_letter_topic.clone()]),
            )
            .await
            .map_err(|_| Error::Cleanup("Kafka did not answer in time".into()))?
            .map_err(|e| Error::Cleanup(e.to_string()))?;
            deleted.push(format!("topic {}", kafka.topic));
        }
        if ap.spec.clickhouse.managed.is_none() {
            let mut ch = clickhouse_config(ap, &ctx.client, ns).await?;
            let database = std::mem::replace(&mut ch.database, "default".into());
            let drop = cairn_common::clickhouse::server_client(&ch)
                .query(&format!("DROP DATABASE IF EXISTS `{}`", database.replace('`', "")))
                .execute();
            tokio::time::timeout(ctx.settings.dependency_timeout, drop)
                .await
                .map_err(|_| Error::Cleanup("ClickHouse did not answer in time".into()))?
                .map_err(|e| Error::Cleanup(e.to_string()))?;
            deleted.push(format!("database {database}"));
        }
        if !deleted.is_empty() {
            publish(ctx, ap, EventType::Normal, "ExternalStateDeleted", format!("deleted {}", deleted.join(" and ")))
                .await;
        }
    }
    set_finalizer(&api, ap, false).await?;
    Ok(Action::await_change())
}

async fn reconcile_inner(ap: &AnalyticsPlatform, ctx: &Context) -> Result<Action, Error> {
    let ns = ap.namespace().ok_or(Error::MissingNamespace)?;
    let client = &ctx.client;
    let api: Api<AnalyticsPlatform> = Api::namespaced(client.clone(), &ns);

    if ap.metadata.deletion_timestamp.is_some() {
        return cleanup(ap, ctx, &ns).await;
    }
    // A finalizer only where external state needs cleaning.
    let wants_finalizer = has_external_state_to_delete(ap) && !ap.spec.paused;
    let has_finalizer = ap.finalizers().iter().any(|f| f == FINALIZER);
    if wants_finalizer != has_finalizer && !(ap.spec.paused && has_finalizer) {
        set_finalizer(&api, ap, wants_finalizer).await?;
    }

    let previous = ap.status.clone().unwrap_or_default();
    let generation = ap.metadata.generation.unwrap_or(0);

    if ap.spec.paused {
        let workloads = observe_workloads(client, &ns, ap).await?;
        let observed = Observed {
            generation,
            paused: true,
            workloads: workloads.0,
            rolled_out: workloads.1,
            kafka: DependencyState::Unknown("paused".into()),
            clickhouse: DependencyState::Unknown("paused".into()),
            apply_error: None,
            now: now(),
        };
        write_status(ctx, ap, &api, &previous, observed, previous.kafka.clone(), previous.clickhouse.clone()).await?;
        return Ok(Action::requeue(ctx.settings.resync));
    }

    // 1. What everything else needs: identity, configuration, credentials, managed dependencies.
    let mut apply_error: Option<String> = None;
    let mut note = |r: Result<(), kube::Error>, what: &str| {
        if let Err(e) = r {
            tracing::warn!(error = %e, what, "apply failed");
            apply_error.get_or_insert_with(|| format!("{what}: {e}"));
        }
    };
    note(apply(client, &ns, &service_account(ap)).await.map(|_| ()), "ServiceAccount");
    note(apply(client, &ns, &config_map(ap)).await.map(|_| ()), "ConfigMap");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    match secrets
        .create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &generated_secret(ap))
        .await
    {
        Ok(_) => {
            publish(
                ctx,
                ap,
                EventType::Normal,
                "CredentialsGenerated",
                "generated credentials for managed dependencies".into(),
            )
            .await
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => note(Err(e), "Secret"),
    }
    for policy in network_policies(ap) {
        note(apply(client, &ns, &policy).await.map(|_| ()), "NetworkPolicy");
    }
    let managed = managed_dependencies(ap);
    let managed_names: Vec<String> = managed.iter().filter_map(|(s, _)| s.metadata.name.clone()).collect();
    for (sts, svc) in &managed {
        note(apply(client, &ns, sts).await.map(|_| ()), "StatefulSet");
        note(apply(client, &ns, svc).await.map(|_| ()), "Service");
    }
    for component in ["kafka", "clickhouse", "postgres"] {
        let name = child_name(ap, component);
        if !managed_names.contains(&name) {
            note(delete_if_present::<StatefulSet>(client, &ns, &name).await, "StatefulSet");
            note(delete_if_present::<Service>(client, &ns, &name).await, "Service");
        }
    }

    // 2. Kafka topics and the ClickHouse schema.
    let kafka_cfg = kafka_config(ap, client, &ns).await?;
    let kafka = match tokio::time::timeout(
        ctx.settings.dependency_timeout,
        reconcile_topics(&kafka_cfg, &ap.spec.kafka.topic, &kafka_cfg.dead_letter_topic),
    )
    .await
    {
        Ok(Ok(partitions)) => {
            if let Some(before) = previous.kafka.as_ref().map(|k| k.partitions) {
                if before != partitions {
                    publish(
                        ctx,
                        ap,
                        EventType::Normal,
                        "PartitionsChanged",
                        format!("topic {} now has {partitions} partitions (was {before})", kafka_cfg.topic),
                    )
                    .await;
                }
            }
            (
                DependencyState::Ready(format!("topic {} has {partitions} partitions", kafka_cfg.topic)),
                Some(KafkaStatus { topic: kafka_cfg.topic.clone(), partitions }),
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
    };

    let ch_cfg = clickhouse_config(ap, client, &ns).await?;
    let schema = async {
        let status = migrate(&ch_cfg).await?;
        apply_event_ttl(&clickhouse_client(&ch_cfg), ch_cfg.event_ttl_days).await?;
        Ok::<_, cairn_common::clickhouse::MigrationError>(status)
    };
    let clickhouse = match tokio::time::timeout(ctx.settings.dependency_timeout, schema).await {
        Ok(Ok(s)) => {
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
            (
                DependencyState::Ready(format!("schema version {} in database {}", s.version, ch_cfg.database)),
                Some(ClickHouseStatus { schema_version: s.version, database: ch_cfg.database.clone() }),
            )
        }
        Ok(Err(e)) => {
            let reason = match &e {
                cairn_common::clickhouse::MigrationError::ChecksumMismatch { .. }
                | cairn_common::clickhouse::MigrationError::DatabaseNewer { .. } => "SchemaConflict",
                cairn_common::clickhouse::MigrationError::Statement { .. } => "MigrationFailed",
                cairn_common::clickhouse::MigrationError::ClickHouse { .. } => "ClickHouseUnreachable",
            };
            (DependencyState::Failed { reason: reason.into(), message: e.to_string() }, previous.clickhouse.clone())
        }
        Err(_) => (
            DependencyState::Failed {
                reason: "ClickHouseUnreachable".into(),
                message: format!("no answer within {:?}", ctx.settings.dependency_timeout),
            },
            previous.clickhouse.clone(),
        ),
    };

    // 3. The workloads and how they are reached.
    let sa = service_account_name(ap);
    for w in Workload::ALL {
        note(apply(client, &ns, &deployment(ap, w, &sa)).await.map(|_| ()), "Deployment");
        note(apply(client, &ns, &service(ap, w)).await.map(|_| ()), "Service");
        note(apply(client, &ns, &pod_disruption_budget(ap, w)).await.map(|_| ()), "PodDisruptionBudget");
        match horizontal_pod_autoscaler(ap, w) {
            Some(hpa) => note(apply(client, &ns, &hpa).await.map(|_| ()), "HorizontalPodAutoscaler"),
            None => note(
                delete_if_present::<HorizontalPodAutoscaler>(client, &ns, &child_name(ap, w.name())).await,
                "HorizontalPodAutoscaler",
            ),
        }
    }
    match ingress(ap) {
        Some(i) => note(apply(client, &ns, &i).await.map(|_| ()), "Ingress"),
        None => note(delete_if_present::<Ingress>(client, &ns, &child_name(ap, "ingress")).await, "Ingress"),
    }

    // 4. What is running, and the status that says so.
    let (workloads, rolled_out) = observe_workloads(client, &ns, ap).await?;
    let observed = Observed {
        generation,
        paused: false,
        workloads,
        rolled_out,
        kafka: kafka.0,
        clickhouse: clickhouse.0,
        apply_error,
        now: now(),
    };
    let ready = write_status(ctx, ap, &api, &previous, observed, kafka.1, clickhouse.1).await?;
    Ok(Action::requeue(if ready { ctx.settings.resync } else { ctx.settings.retry }))
}

async fn observe_workloads(
    client: &Client,
    ns: &str,
    ap: &AnalyticsPlatform,
) -> Result<(WorkloadsStatus, [bool; 4]), Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut statuses = WorkloadsStatus::default();
    let mut rolled = [false; 4];
    for (i, w) in Workload::ALL.iter().enumerate() {
        let d = api.get_opt(&deployment_name(ap, *w)).await?;
        let (status, done) = match &d {
            Some(d) => {
                let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let st = d.status.clone().unwrap_or_default();
                let ready = st.ready_replicas.unwrap_or(0);
                let updated = st.updated_replicas.unwrap_or(0);
                let total = st.replicas.unwrap_or(0);
                let observed = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
                (
                    WorkloadStatus { ready_replicas: ready, desired_replicas: desired },
                    observed && updated >= desired && total <= desired,
                )
            }
            None => (WorkloadStatus::default(), false),
        };
        rolled[i] = done;
        match w {
            Workload::Capture => statuses.capture = status,
            Workload::Consumer => statuses.consumer = status,
            Workload::Query => statuses.query = status,
            Workload::Auth => statuses.auth = status,
        }
    }
    Ok((statuses, rolled))
}

/// Writes the status when it changed, publishes an Event when the phase changed, and returns
/// whether the platform is Ready.
async fn write_status(
    ctx: &Context,
    ap: &AnalyticsPlatform,
    api: &Api<AnalyticsPlatform>,
    previous: &AnalyticsPlatformStatus,
    observed: Observed,
    kafka: Option<KafkaStatus>,
    clickhouse: Option<ClickHouseStatus>,
) -> Result<bool, Error> {
    let (conditions, phase) = evaluate(&previous.conditions, &observed);
    let (capture, query) = endpoints(ap);
    let status = AnalyticsPlatformStatus {
        observed_generation: Some(observed.generation),
        phase: Some(phase.clone()),
        conditions,
        workloads: observed.workloads,
        kafka,
        clickhouse,
        endpoints: Some(Endpoints { capture, query }),
    };
    if &status != previous {
        api.patch_status(&ap.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
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
    ctx.metrics.set_phase(&ap.name_any(), &phase);
    Ok(phase == "Ready")
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
