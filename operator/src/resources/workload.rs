//! A workload's Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler.
//!
//! Pods run as non-root with a read-only root filesystem, no privilege escalation and no
//! capabilities, and are probed on `/healthz` (liveness) and `/readyz` (readiness).

use cairn_common::config::{catalogue, Setting};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};

use super::config::{config_map_name, env_from_secrets};
use super::{build, child_meta, child_name, selector_labels, to_json, BuildError, Workload};
use crate::children::operator_owns_replicas;
use crate::crd::AnalyticsPlatform;

/// The pod-template annotation that carries the hash of everything the pods read from outside
/// their template (the ConfigMap's data, the versions of the Secrets their env references): a
/// change to any of it changes the template, and the Deployment rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "cairn.dev/config-hash";

/// Replicas when the spec gives none.
pub const DEFAULT_REPLICAS: i32 = 2;
/// The port `/metrics`, `/healthz` and `/readyz` are served on (the workload's only port).
pub const HTTP_PORT_NAME: &str = "http";
/// The port of every workload's Service (the pods listen on [`Workload::port`]).
pub const SERVICE_PORT: i32 = 80;
/// The port `/metrics`, `/healthz` and `/readyz` are served on, apart from the API (capture,
/// query and auth; the consumer serves nothing else and keeps them on its one port).
pub const ADMIN_PORT: i32 = 9000;
pub const ADMIN_PORT_NAME: &str = "admin";

/// Whether a workload serves its admin endpoints on [`ADMIN_PORT`].
pub fn has_admin_port(w: Workload) -> bool {
    !matches!(w, Workload::Consumer)
}

pub fn deployment_name(ap: &AnalyticsPlatform, w: Workload) -> String {
    child_name(ap, w.name())
}

/// What the operator does with a Deployment's `replicas` in this reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    /// Apply this count (the operator owns the field).
    Set(i32),
    /// Autoscaling was just turned on: hand the current count over (see
    /// [`crate::children::Children::hand_over_replicas`]), then leave the field out.
    HandOver(i32),
    /// The autoscaler owns the count: leave the field out.
    Leave,
}

impl Replicas {
    pub fn applied(self) -> Option<i32> {
        match self {
            Replicas::Set(n) => Some(n),
            Replicas::HandOver(_) | Replicas::Leave => None,
        }
    }
}

/// The Kafka consumer group of the platform's consumer.
pub fn consumer_group(ap: &AnalyticsPlatform) -> String {
    format!("cairn-{}", ap.metadata.name.as_deref().unwrap_or("platform"))
}

/// The consumer's scaling by lag, when its autoscaling names a target lag per replica.
pub fn lag_policy(ap: &AnalyticsPlatform) -> Option<crate::autoscale::Policy> {
    let a = ap.spec.consumer.autoscaling.as_ref()?;
    Some(crate::autoscale::Policy {
        min_replicas: a.min_replicas,
        max_replicas: a.max_replicas,
        target_lag_per_replica: a.target_lag_per_replica?,
        scale_down_window: std::time::Duration::from_secs(
            a.scale_down_stabilization_seconds.unwrap_or(300).max(0).unsigned_abs(),
        ),
    })
}

/// The replicas plan for a workload, given its Deployment as it is now (if any).
///
/// - Autoscaling on: a new Deployment starts at `minReplicas`; an existing one keeps its count,
///   handed over to the autoscaler without passing through the API server's default of 1.
/// - Autoscaling off: the spec's `replicas`; without one, the count the Deployment has now (so
///   turning autoscaling off keeps what the autoscaler chose), or [`DEFAULT_REPLICAS`] for a new one.
///
/// The consumer scaled by its lag ([`lag_policy`]) gets `lag_replicas`, what the operator decided
/// (the operator owns the count; no autoscaler does).
pub fn replicas_plan(
    ap: &AnalyticsPlatform,
    w: Workload,
    current: Option<&Deployment>,
    lag_replicas: Option<i32>,
) -> Replicas {
    let spec = w.spec(ap);
    let current_count = current.and_then(|d| d.spec.as_ref()?.replicas);
    if let (Workload::Consumer, Some(policy)) = (w, lag_policy(ap)) {
        return Replicas::Set(lag_replicas.or(current_count).unwrap_or(policy.min_replicas));
    }
    match &spec.autoscaling {
        Some(a) => match current {
            None => Replicas::Set(a.min_replicas),
            Some(d) if operator_owns_replicas(&d.metadata) => {
                Replicas::HandOver(current_count.unwrap_or(a.min_replicas))
            }
            Some(_) => Replicas::Leave,
        },
        None => Replicas::Set(spec.replicas.or(current_count).unwrap_or(DEFAULT_REPLICAS)),
    }
}

/// What a Deployment needs beyond the spec: facts the controller gathered.
#[derive(Debug, Clone)]
pub struct PodInputs<'a> {
    pub service_account: &'a str,
    /// See [`CONFIG_HASH_ANNOTATION`].
    pub config_hash: &'a str,
    /// The Cairn version whose images run (unless the workload's spec names an image).
    pub version: &'a str,
    /// Seconds without progress after which a rollout counts as failed (`ProgressDeadlineExceeded`).
    pub progress_deadline_seconds: i32,
    /// The query service's read-only ClickHouse account, once the operator has made it.
    pub clickhouse_query_user: Option<&'a str>,
}

/// Cairn's image of `version` for a workload.
pub fn image_for(w: Workload, version: &str) -> String {
    format!("ghcr.io/cairn-analytics/cairn-{}:{version}", w.name())
}

/// Whether `w` reads the variable `name` (per the settings catalogue; the helper that Kubernetes
/// substitutes into `CAIRN_POSTGRES_URL` goes wherever that URL goes).
fn reads(w: Workload, name: &str) -> bool {
    let name = if name == super::managed::POSTGRES_PASSWORD_HELPER { catalogue::POSTGRES_URL.name } else { name };
    catalogue::ALL.iter().any(|s| s.name == name && s.readers.contains(&w.service()))
}

/// The setting that says where a workload listens.
fn listen_setting(w: Workload) -> &'static Setting {
    match w {
        Workload::Capture => &catalogue::CAPTURE_ADDR,
        Workload::Consumer => &catalogue::CONSUMER_ADDR,
        Workload::Query => &catalogue::QUERY_ADDR,
        Workload::Auth => &catalogue::AUTH_ADDR,
    }
}

/// The environment a workload's container gets, in order: the variables every Cairn service
/// reads (from the platform's ConfigMap and credential Secrets), the workload's own, then the
/// spec's `env` (last, so it can override).
fn env(ap: &AnalyticsPlatform, w: Workload, inputs: &PodInputs<'_>) -> Result<Vec<Value>, BuildError> {
    let mut env = vec![json!({"name": listen_setting(w).name, "value": format!("0.0.0.0:{}", w.port())})];
    if has_admin_port(w) {
        // Metrics and readiness (with its dependency details) off the API port, which the
        // Ingress reaches.
        env.push(json!({"name": catalogue::ADMIN_ADDR.name, "value": format!("0.0.0.0:{ADMIN_PORT}")}));
    }
    match w {
        Workload::Capture => {
            // The topic is managed by the operator, not created by the workloads.
            env.push(json!({"name": catalogue::KAFKA_CREATE_TOPICS.name, "value": "false"}));
            // The replicas share each key's rate: they count themselves through this name.
            env.push(json!({"name": catalogue::CAPTURE_PEERS.name, "value": super::managed::service_host(ap, "capture-peers")}));
            // The operator's heartbeat through the data path (heartbeat.rs).
            env.push(json!({"name": catalogue::CAPTURE_HEARTBEAT_KEY.name, "valueFrom": {"secretKeyRef": {
                "name": super::config::generated_secret_name(ap), "key": crate::heartbeat::KEY}}}));
        }
        Workload::Consumer => {
            env.push(json!({"name": catalogue::KAFKA_CREATE_TOPICS.name, "value": "false"}));
            // The operator applies migrations before rolling workloads out.
            env.push(json!({"name": catalogue::CONSUMER_MIGRATE.name, "value": "false"}));
            env.push(json!({"name": catalogue::CONSUMER_GROUP.name, "value": consumer_group(ap)}));
            // Persons are decided in PostgreSQL: without it, every distinct id is its own person.
            env.push(
                json!({"name": catalogue::CONSUMER_PERSONS.name, "value": ap.spec.postgres.is_some().to_string()}),
            );
        }
        // Scheduled event exports close their windows by the consumer group's progress.
        Workload::Query => {
            env.push(json!({"name": catalogue::CONSUMER_GROUP.name, "value": consumer_group(ap)}));
        }
        Workload::Auth => {
            env.push(json!({"name": catalogue::AUTH_TOKEN_SECRET.name, "valueFrom": {"secretKeyRef": {"name": super::config::generated_secret_name(ap), "key": "auth-token-key"}}}));
        }
    }
    if matches!(w, Workload::Capture | Workload::Query) {
        // Capture resolves write keys, query authenticates callers, through auth's Service.
        // Through auth's Service, whose port is SERVICE_PORT (the pod's is Workload::port).
        env.push(json!({"name": catalogue::AUTH_URL.name, "value": format!("http://{}:{SERVICE_PORT}", super::child_name(ap, "auth"))}));
    }
    match (w, inputs.clickhouse_query_user) {
        (Workload::Query, Some(user)) => {
            // Query reads ClickHouse through its own read-only account (query_user.rs).
            env.extend(env_from_secrets(ap).into_iter().filter(|e| {
                !e["name"]
                    .as_str()
                    .is_some_and(|n| n == catalogue::CLICKHOUSE_USER.name || n == catalogue::CLICKHOUSE_PASSWORD.name)
            }));
            env.push(json!({"name": catalogue::CLICKHOUSE_USER.name, "value": user}));
            env.push(json!({"name": catalogue::CLICKHOUSE_PASSWORD.name, "valueFrom": {"secretKeyRef": {
                "name": super::config::generated_secret_name(ap), "key": crate::query_user::PASSWORD_KEY}}}));
        }
        _ => env.extend(env_from_secrets(ap)),
    }
    if let Some(t) = &ap.spec.tracing {
        env.push(json!({"name": catalogue::OTEL_EXPORTER_OTLP_ENDPOINT.name, "value": t.otlp_endpoint}));
        if let Some(ratio) = t.sample_ratio {
            env.push(json!({"name": catalogue::OTEL_TRACES_SAMPLER_ARG.name, "value": ratio.to_string()}));
        }
    }
    // Least privilege: a pod gets only the credentials its service reads (capture never sees
    // ClickHouse's or PostgreSQL's, auth never Kafka's).
    env.retain(|e| e["name"].as_str().is_some_and(|name| reads(w, name)));
    for e in &w.spec(ap).env {
        env.push(to_json("Deployment", &deployment_name(ap, w), e)?);
    }
    Ok(env)
}

pub fn deployment(
    ap: &AnalyticsPlatform,
    w: Workload,
    inputs: &PodInputs<'_>,
    replicas: Option<i32>,
) -> Result<Deployment, BuildError> {
    let spec = w.spec(ap);
    let name = deployment_name(ap, w);
    let image = spec.image.clone().unwrap_or_else(|| image_for(w, inputs.version));
    let resources = match &spec.resources {
        Some(r) => to_json("Deployment", &name, r)?,
        None => json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}),
    };
    let probe_port = if has_admin_port(w) { ADMIN_PORT_NAME } else { HTTP_PORT_NAME };
    let probe = |path: &str, period: i32, failure: i32| json!({"httpGet": {"path": path, "port": probe_port}, "periodSeconds": period, "failureThreshold": failure, "timeoutSeconds": 2});
    let mut ports = vec![json!({"name": HTTP_PORT_NAME, "containerPort": w.port(), "protocol": "TCP"})];
    if has_admin_port(w) {
        ports.push(json!({"name": ADMIN_PORT_NAME, "containerPort": ADMIN_PORT, "protocol": "TCP"}));
    }
    let mut deployment_spec = json!({
        "selector": {"matchLabels": selector_labels(ap, w.name())},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "progressDeadlineSeconds": inputs.progress_deadline_seconds,
        "template": {
            "metadata": {
                "labels": super::labels(ap, w.name()),
                "annotations": {CONFIG_HASH_ANNOTATION: inputs.config_hash}
            },
            "spec": {
                "serviceAccountName": inputs.service_account,
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 30,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": w.name(),
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "ports": ports,
                    "envFrom": [{"configMapRef": {"name": config_map_name(ap)}}],
                    "env": env(ap, w, inputs)?,
                    "resources": resources,
                    "livenessProbe": probe("/healthz", 10, 3),
                    "readinessProbe": probe("/readyz", 5, 2),
                    "startupProbe": probe("/healthz", 2, 30),
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true,
                        "runAsNonRoot": true,
                        "capabilities": {"drop": ["ALL"]}
                    }
                }]
            }
        }
    });
    if let Some(r) = replicas {
        deployment_spec["replicas"] = json!(r);
    }
    let value = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_meta(ap, name, w.name()),
        "spec": deployment_spec,
    });
    build("Deployment", value)
}

pub fn service(ap: &AnalyticsPlatform, w: Workload) -> Result<Service, BuildError> {
    let value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_meta(ap, child_name(ap, w.name()), w.name()),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(ap, w.name()),
            "ports": service_ports(w)
        }
    });
    build("Service", value)
}

/// The name of capture's headless Service, which resolves to every ready capture pod.
pub fn capture_peers_name(ap: &AnalyticsPlatform) -> String {
    child_name(ap, "capture-peers")
}

/// A headless Service over the capture pods: each replica counts the addresses its name resolves
/// to (the ready replicas) and charges every event that many times, so that a key's rate limit
/// holds for the platform, not for each replica (`CAIRN_CAPTURE_PEERS`).
pub fn capture_peers_service(ap: &AnalyticsPlatform) -> Result<Service, BuildError> {
    let value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_meta(ap, capture_peers_name(ap), Workload::Capture.name()),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(ap, Workload::Capture.name()),
            "ports": [{"name": HTTP_PORT_NAME, "port": Workload::Capture.port(), "targetPort": HTTP_PORT_NAME, "protocol": "TCP"}]
        }
    });
    build("Service", value)
}

fn service_ports(w: Workload) -> Value {
    let mut ports =
        vec![json!({"name": HTTP_PORT_NAME, "port": SERVICE_PORT, "targetPort": HTTP_PORT_NAME, "protocol": "TCP"})];
    if has_admin_port(w) {
        // For scrapers (a ServiceMonitor); the Ingress routes to `http` only.
        ports.push(
            json!({"name": ADMIN_PORT_NAME, "port": ADMIN_PORT, "targetPort": ADMIN_PORT_NAME, "protocol": "TCP"}),
        );
    }
    Value::Array(ports)
}

/// Keeps at least one pod through voluntary disruptions (node drains) when there are several.
pub fn pod_disruption_budget(ap: &AnalyticsPlatform, w: Workload) -> Result<PodDisruptionBudget, BuildError> {
    let value = json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_meta(ap, child_name(ap, w.name()), w.name()),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(ap, w.name())}}
    });
    build("PodDisruptionBudget", value)
}

/// The CPU autoscaler of a workload whose spec asks for one. Not for the consumer scaled by its
/// lag: the operator sets its replicas itself ([`lag_policy`]).
pub fn horizontal_pod_autoscaler(
    ap: &AnalyticsPlatform,
    w: Workload,
) -> Option<Result<HorizontalPodAutoscaler, BuildError>> {
    let a = w.spec(ap).autoscaling.as_ref()?;
    if w == Workload::Consumer && lag_policy(ap).is_some() {
        return None;
    }
    let metrics = vec![json!({
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization.unwrap_or(70)}}
    })];
    let value = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_meta(ap, child_name(ap, w.name()), w.name()),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name(ap, w)},
            "minReplicas": a.min_replicas,
            "maxReplicas": a.max_replicas,
            "metrics": metrics
        }
    });
    Some(build("HorizontalPodAutoscaler", value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AutoscalingSpec;
    use crate::resources::fixtures::platform;

    const INPUTS: PodInputs<'static> = PodInputs {
        service_account: "demo-cairn",
        config_hash: "abc",
        version: "0.1.0",
        progress_deadline_seconds: 600,
        clickhouse_query_user: None,
    };

    fn env_of(d: &Deployment) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].env.clone().unwrap()
    }

    #[test]
    fn query_reads_clickhouse_through_its_read_only_account_once_it_exists() {
        let ap = platform();
        let user = "cairn_query.ns.demo";
        let inputs = PodInputs { clickhouse_query_user: Some(user), ..INPUTS };
        let query = env_of(&deployment(&ap, Workload::Query, &inputs, Some(1)).unwrap());
        let named = |env: &[k8s_openapi::api::core::v1::EnvVar], n: &str| {
            env.iter().filter(|e| e.name == n).cloned().collect::<Vec<_>>()
        };
        let users = named(&query, "CAIRN_CLICKHOUSE_USER");
        assert_eq!(users.len(), 1, "one entry per name (server-side apply keys env by name): {query:?}");
        assert_eq!(users[0].value.as_deref(), Some(user));
        let passwords = named(&query, "CAIRN_CLICKHOUSE_PASSWORD");
        assert_eq!(passwords.len(), 1);
        let key = passwords[0].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((key.name.as_str(), key.key.as_str()), ("demo-credentials", crate::query_user::PASSWORD_KEY));
        // The other workloads keep the platform's account; so does query before the account exists.
        for (w, i) in [(Workload::Consumer, &inputs), (Workload::Query, &INPUTS)] {
            let env = env_of(&deployment(&ap, w, i, Some(1)).unwrap());
            assert!(
                named(&env, "CAIRN_CLICKHOUSE_USER").iter().all(|e| e.value.as_deref() != Some(user)),
                "{w:?}: {env:?}"
            );
        }
    }

    /// The names the operator renders are the catalogue's, and each pod gets only what its service
    /// reads: the names cannot drift from what the services read, and no pod holds another's
    /// credentials.
    #[test]
    fn rendered_env_is_declared_and_read_by_its_pod() {
        use crate::crd::{ExternalKafka, ManagedService, PostgresSpec};
        let mut external = platform();
        external.spec.kafka.external = Some(ExternalKafka {
            bootstrap_servers: "kafka:9093".into(),
            security_protocol: Some("sasl_ssl".into()),
            sasl_secret_ref: Some("kafka-creds".into()),
        });
        external.spec.postgres = Some(PostgresSpec { url_secret_ref: Some("pg".into()), ..Default::default() });
        let mut managed = platform();
        managed.spec.clickhouse.external = None;
        managed.spec.clickhouse.managed = Some(ManagedService::default());
        managed.spec.postgres = Some(PostgresSpec { managed: Some(ManagedService::default()), ..Default::default() });
        managed.spec.tracing = Some(crate::crd::TracingSpec {
            otlp_endpoint: "http://otel-collector.observability:4318".into(),
            sample_ratio: Some(0.1),
        });
        let query_user = PodInputs { clickhouse_query_user: Some("cairn_query"), ..INPUTS };
        for ap in [&external, &managed] {
            let cm = super::super::config::config_map(ap).unwrap();
            for key in cm.data.unwrap().keys() {
                assert!(catalogue::ALL.iter().any(|s| s.name == key), "the ConfigMap sets undeclared {key}");
            }
            for inputs in [&INPUTS, &query_user] {
                for w in Workload::ALL {
                    let d = deployment(ap, w, inputs, Some(1)).unwrap();
                    let env = d.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
                    for e in &env {
                        assert!(reads(w, &e.name), "{w:?} gets {} (declared and read by it?)", e.name);
                    }
                    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
                    match w {
                        Workload::Capture | Workload::Auth => {
                            assert!(!names.iter().any(|n| n.starts_with("CAIRN_CLICKHOUSE_")), "{w:?}: {names:?}")
                        }
                        Workload::Consumer => assert!(names.contains(&"CAIRN_CLICKHOUSE_PASSWORD"), "{names:?}"),
                        Workload::Query => assert!(names.contains(&"CAIRN_POSTGRES_URL"), "{names:?}"),
                    }
                    let value = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
                    if ap.spec.tracing.is_some() {
                        assert_eq!(
                            value("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
                            Some("http://otel-collector.observability:4318")
                        );
                        assert_eq!(value("OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("0.1"));
                    } else {
                        assert!(!names.iter().any(|n| n.starts_with("OTEL_")), "{w:?}: {names:?}");
                    }
                    if w == Workload::Capture {
                        assert!(!names.contains(&"CAIRN_POSTGRES_URL"), "{w:?}: {names:?}");
                    }
                    if w == Workload::Consumer {
                        // The persons pipeline: PostgreSQL's URL exactly when the platform has one.
                        let persons = ap.spec.postgres.is_some();
                        assert_eq!(names.contains(&"CAIRN_POSTGRES_URL"), persons, "{names:?}");
                        assert_eq!(value("CAIRN_CONSUMER_PERSONS").as_deref(), Some(persons.to_string().as_str()));
                    }
                    if ap.spec.kafka.external.as_ref().and_then(|k| k.sasl_secret_ref.as_ref()).is_some() {
                        let sasl = names.contains(&"CAIRN_KAFKA_SASL_PASSWORD");
                        // Query produces event updates and deletions: it is a Kafka client too.
                        assert_eq!(
                            sasl,
                            matches!(w, Workload::Capture | Workload::Consumer | Workload::Query),
                            "{w:?}: {names:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn deployment_is_secure_probed_owned_and_configured() {
        let ap = platform();
        let d = deployment(&ap, Workload::Capture, &INPUTS, Some(DEFAULT_REPLICAS)).unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some("demo-capture"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("analytics"));
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "AnalyticsPlatform");
        assert_eq!(owner.controller, Some(true));
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(DEFAULT_REPLICAS));
        assert_eq!(spec.progress_deadline_seconds, Some(600));
        let annotations = spec.template.metadata.as_ref().unwrap().annotations.clone().unwrap();
        assert_eq!(annotations[CONFIG_HASH_ANNOTATION], "abc");
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("demo-cairn"));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/cairn-analytics/cairn-capture:0.1.0"));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));
        assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
        let env = c.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "CAIRN_CAPTURE_ADDR" && e.value.as_deref() == Some("0.0.0.0:8000")));
        assert!(env.iter().any(|e| e.name == "CAIRN_ADMIN_ADDR" && e.value.as_deref() == Some("0.0.0.0:9000")));
        let probe_port = &c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().port;
        assert_eq!(probe_port, &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("admin".into()));
        assert!(
            env.iter().any(|e| e.name == "CAIRN_AUTH_URL" && e.value.as_deref() == Some("http://demo-auth:80")),
            "{env:?}"
        );
        assert!(
            env.iter().any(|e| e.name == "CAIRN_INTERNAL_TOKEN" && e.value.is_none() && e.value_from.is_some()),
            "secrets come from the Secret"
        );
        assert!(
            !env.iter().any(|e| e.name.starts_with("CAIRN_CLICKHOUSE_")),
            "capture never holds ClickHouse's credentials"
        );
        let consumer = deployment(&ap, Workload::Consumer, &INPUTS, Some(DEFAULT_REPLICAS)).unwrap();
        let consumer_env = consumer.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
        assert!(
            consumer_env.iter().any(|e| e.name == "CAIRN_CLICKHOUSE_PASSWORD" && e.value_from.is_some()),
            "credentials come from the Secret, not the ConfigMap"
        );
        assert_eq!(c.env_from.as_ref().unwrap()[0].config_map_ref.as_ref().unwrap().name, "demo-config");
    }

    #[test]
    fn spec_env_image_and_replicas_are_honoured() {
        let mut ap = platform();
        ap.spec.consumer.image = Some("registry.local/consumer:dev".into());
        ap.spec.consumer.replicas = Some(0);
        ap.spec.consumer.env =
            vec![serde_json::from_value(json!({"name": "CAIRN_CONSUMER_BATCH_MAX_EVENTS", "value": "500"})).unwrap()];
        assert_eq!(replicas_plan(&ap, Workload::Consumer, None, None), Replicas::Set(0));
        let d = deployment(&ap, Workload::Consumer, &INPUTS, Some(0)).unwrap();
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(0));
        let c = &spec.template.spec.unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.local/consumer:dev"));
        let env = c.env.as_ref().unwrap();
        assert_eq!(env.last().unwrap().name, "CAIRN_CONSUMER_BATCH_MAX_EVENTS");
        assert!(env.iter().any(|e| e.name == "CAIRN_CONSUMER_MIGRATE" && e.value.as_deref() == Some("false")));
    }

    #[test]
    fn autoscaling_leaves_replicas_to_the_hpa_or_the_lag() {
        let mut ap = platform();
        assert!(horizontal_pod_autoscaler(&ap, Workload::Consumer).is_none());
        ap.spec.consumer.autoscaling = Some(AutoscalingSpec {
            min_replicas: 2,
            max_replicas: 8,
            target_cpu_utilization: None,
            target_lag_per_replica: None,
            scale_down_stabilization_seconds: None,
        });
        let d = deployment(&ap, Workload::Consumer, &INPUTS, None).unwrap();
        assert_eq!(d.spec.unwrap().replicas, None);
        let hpa = horizontal_pod_autoscaler(&ap, Workload::Consumer).unwrap().unwrap();
        let spec = hpa.spec.unwrap();
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 8));
        assert_eq!(spec.metrics.unwrap().len(), 1, "CPU");
        assert_eq!(spec.scale_target_ref.name, "demo-consumer");

        // By lag: the operator sets the count itself, no autoscaler.
        if let Some(a) = ap.spec.consumer.autoscaling.as_mut() {
            a.target_lag_per_replica = Some(10_000);
        }
        assert!(horizontal_pod_autoscaler(&ap, Workload::Consumer).is_none());
        assert_eq!(replicas_plan(&ap, Workload::Consumer, None, Some(5)), Replicas::Set(5));
        let three = deployment(&ap_with_replicas(3), Workload::Consumer, &INPUTS, Some(3)).unwrap();
        assert_eq!(replicas_plan(&ap, Workload::Consumer, Some(&three), None), Replicas::Set(3), "held");
        assert_eq!(replicas_plan(&ap, Workload::Consumer, None, None), Replicas::Set(2), "min to start");
        assert_eq!(lag_policy(&ap).map(|p| p.scale_down_window.as_secs()), Some(300));
    }

    #[test]
    fn service_and_pdb_select_the_workload_pods() {
        let ap = platform();
        let s = service(&ap, Workload::Query).unwrap();
        let sel = s.spec.unwrap().selector.unwrap();
        assert_eq!(sel["app.kubernetes.io/component"], "query");
        let pdb = pod_disruption_budget(&ap, Workload::Query).unwrap();
        assert_eq!(pdb.spec.unwrap().selector.unwrap().match_labels.unwrap(), sel);
    }

    #[test]
    fn capture_counts_its_replicas_through_a_headless_service() {
        let ap = platform();
        let s = capture_peers_service(&ap).unwrap();
        let spec = s.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.selector.unwrap(), service(&ap, Workload::Capture).unwrap().spec.unwrap().selector.unwrap());
        let d = deployment(&ap, Workload::Capture, &INPUTS, None).unwrap();
        let env = d.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap_or_default();
        let peers = env.iter().find(|e| e.name == "CAIRN_CAPTURE_PEERS").and_then(|e| e.value.clone());
        let ns = ap.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        assert_eq!(peers, s.metadata.name.map(|n| format!("{n}.{ns}.svc")));
        let d = deployment(&ap, Workload::Query, &INPUTS, None).unwrap();
        let env = d.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap_or_default();
        assert!(env.iter().all(|e| e.name != "CAIRN_CAPTURE_PEERS"), "capture's alone");
    }

    #[test]
    fn replicas_are_handed_over_and_kept() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        let mut ap = platform();
        let running = |n: i32, ours: bool| {
            let mut d = deployment(&ap_with_replicas(n), Workload::Capture, &INPUTS, Some(n)).unwrap();
            if ours {
                d.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
                    manager: Some(crate::crd::FIELD_MANAGER.into()),
                    operation: Some("Apply".into()),
                    fields_v1: Some(FieldsV1(json!({"f:spec": {"f:replicas": {}}}))),
                    ..Default::default()
                }]);
            }
            d
        };
        assert_eq!(replicas_plan(&ap, Workload::Capture, None, None), Replicas::Set(DEFAULT_REPLICAS));
        ap.spec.capture.autoscaling = Some(AutoscalingSpec {
            min_replicas: 1,
            max_replicas: 5,
            target_cpu_utilization: None,
            target_lag_per_replica: None,
            scale_down_stabilization_seconds: None,
        });
        assert_eq!(
            replicas_plan(&ap, Workload::Capture, None, None),
            Replicas::Set(1),
            "a new Deployment starts at min"
        );
        assert_eq!(
            replicas_plan(&ap, Workload::Capture, Some(&running(3, true)), None),
            Replicas::HandOver(3),
            "turning autoscaling on keeps the 3 running replicas"
        );
        assert_eq!(replicas_plan(&ap, Workload::Capture, Some(&running(4, false)), None), Replicas::Leave);
        ap.spec.capture.autoscaling = None;
        assert_eq!(
            replicas_plan(&ap, Workload::Capture, Some(&running(4, false)), None),
            Replicas::Set(4),
            "turning it off keeps the autoscaler's count"
        );
        ap.spec.capture.replicas = Some(2);
        assert_eq!(replicas_plan(&ap, Workload::Capture, Some(&running(4, false)), None), Replicas::Set(2));
    }

    fn ap_with_replicas(n: i32) -> AnalyticsPlatform {
        let mut ap = platform();
        ap.spec.capture.replicas = Some(n);
        ap
    }
}
