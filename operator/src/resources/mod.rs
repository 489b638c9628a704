//! Builders of the objects an AnalyticsPlatform owns. Pure functions of the platform (and what the
//! operator knows about its dependencies): the controller applies what they return with
//! server-side apply, so that the builders alone define the desired state.

pub mod config;
pub mod ingress;
pub mod managed;
pub mod network;
pub mod workload;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use thiserror::Error;

use crate::crd::AnalyticsPlatform;

/// A child object the builders could not make: a bug, or a spec value the API server's schema let
/// through but that does not fit the child (an env var or resources block of the wrong shape). It
/// is reported in status as `InvalidSpec`; never turned into an empty object, which server-side
/// apply would take as "remove every field".
#[derive(Debug, Error)]
pub enum BuildError {
    #[error("cannot build {kind} {name}: {source}")]
    Invalid {
        kind: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot build {kind} {name}: {reason}")]
    Unbuildable { kind: &'static str, name: String, reason: String },
}

/// A typed object from its JSON form.
pub fn build<K: DeserializeOwned>(kind: &'static str, value: Value) -> Result<K, BuildError> {
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?").to_string();
    serde_json::from_value(value).map_err(|source| BuildError::Invalid { kind, name, source })
}

/// A spec value (env var, resources) as JSON, for embedding in a child.
pub fn to_json<T: serde::Serialize>(kind: &'static str, name: &str, value: &T) -> Result<Value, BuildError> {
    serde_json::to_value(value).map_err(|source| BuildError::Invalid { kind, name: name.to_string(), source })
}

/// The Cairn version this operator runs by default (its own): platforms without `spec.version`
/// are moved to it one at a time (see `rollout.rs`).
pub const OPERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The four Cairn workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    Capture,
    Consumer,
    Query,
    Auth,
}

impl Workload {
    pub const ALL: [Workload; 4] = [Workload::Capture, Workload::Consumer, Workload::Query, Workload::Auth];

    /// The service, as the settings catalogue names its readers.
    pub fn service(self) -> cairn_common::config::Service {
        use cairn_common::config::Service;
        match self {
            Workload::Capture => Service::Capture,
            Workload::Consumer => Service::Consumer,
            Workload::Query => Service::Query,
            Workload::Auth => Service::Auth,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Workload::Capture => "capture",
            Workload::Consumer => "consumer",
            Workload::Query => "query",
            Workload::Auth => "auth",
        }
    }

    /// The port the workload serves HTTP on (the consumer: only its metrics and probes).
    pub fn port(self) -> i32 {
        8000
    }

    pub fn spec(self, ap: &AnalyticsPlatform) -> &crate::crd::WorkloadSpec {
        match self {
            Workload::Capture => &ap.spec.capture,
            Workload::Consumer => &ap.spec.consumer,
            Workload::Query => &ap.spec.query,
            Workload::Auth => &ap.spec.auth,
        }
    }
}

/// The name of a child object: `<platform>-<part>`.
pub fn child_name(ap: &AnalyticsPlatform, part: &str) -> String {
    format!("{}-{}", ap.name_any(), part)
}

/// Labels every child carries; `component` names the part it belongs to.
pub fn labels(ap: &AnalyticsPlatform, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "cairn".to_string()),
        ("app.kubernetes.io/instance".to_string(), ap.name_any()),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), "cairn-operator".to_string()),
        ("app.kubernetes.io/part-of".to_string(), "cairn".to_string()),
    ])
}

/// The labels that select a component's pods (a subset of [`labels`] that never changes).
pub fn selector_labels(ap: &AnalyticsPlatform, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_string(), ap.name_any()),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
    ])
}

/// The owner reference that makes the platform the controller of a child, so that Kubernetes
/// garbage-collects the child with the platform.
pub fn owner_reference(ap: &AnalyticsPlatform) -> Option<OwnerReference> {
    ap.controller_owner_ref(&())
}

/// Metadata of a child: name, namespace, labels and the owner reference.
pub fn child_meta(ap: &AnalyticsPlatform, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ap.namespace(),
        labels: Some(labels(ap, component)),
        owner_references: owner_reference(ap).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::crd::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A platform with external Kafka and ClickHouse, as the tests and docs use.
    pub fn platform() -> AnalyticsPlatform {
        AnalyticsPlatform {
            metadata: ObjectMeta {
                name: Some("demo".into()),
                namespace: Some("analytics".into()),
                uid: Some("11111111-2222-3333-4444-555555555555".into()),
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: AnalyticsPlatformSpec {
                kafka: KafkaSpec {
                    external: Some(ExternalKafka { bootstrap_servers: "kafka:9092".into(), ..Default::default() }),
                    ..Default::default()
                },
                clickhouse: ClickHouseSpec {
                    external: Some(ExternalClickHouse {
                        url: "http://clickhouse:8123".into(),
                        credentials_secret_ref: Some("ch-creds".into()),
                    }),
                    database: "cairn".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
            status: None,
        }
    }
}
