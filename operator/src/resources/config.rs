//! The platform's ConfigMap (everything the workloads read that is not a secret) and the
//! environment variables that reference credential Secrets. Secrets are never copied into the
//! ConfigMap: workloads read them through `secretKeyRef`.

use std::collections::BTreeMap;

use cairn_common::config::catalogue;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::managed::{managed_clickhouse_url, managed_kafka_bootstrap, managed_postgres_url_env};
use super::{build, child_meta, child_name, BuildError};
use crate::crd::{AnalyticsPlatform, DeletionPolicy};

/// The annotation that marks the generated credentials as this platform's (`<namespace>/<name>`),
/// also when the Retain policy left them behind without an owner reference.
pub const CREDENTIALS_OF_ANNOTATION: &str = "cairn.dev/credentials-of";

pub fn config_map_name(ap: &AnalyticsPlatform) -> String {
    child_name(ap, "config")
}

/// The Secret the operator generates for the credentials of managed dependencies.
pub fn generated_secret_name(ap: &AnalyticsPlatform) -> String {
    child_name(ap, "credentials")
}

/// Where the workloads find Kafka.
pub fn kafka_bootstrap(ap: &AnalyticsPlatform) -> String {
    match &ap.spec.kafka.external {
        Some(e) => e.bootstrap_servers.clone(),
        None => managed_kafka_bootstrap(ap),
    }
}

/// Where the workloads find ClickHouse.
pub fn clickhouse_url(ap: &AnalyticsPlatform) -> String {
    match &ap.spec.clickhouse.external {
        Some(e) => e.url.clone(),
        None => managed_clickhouse_url(ap),
    }
}

pub fn dead_letter_topic(ap: &AnalyticsPlatform) -> String {
    format!("{}_dead_letter", ap.spec.kafka.topic.name)
}

pub fn config_map(ap: &AnalyticsPlatform) -> Result<ConfigMap, BuildError> {
    let mut data = json!({
        catalogue::KAFKA_BROKERS.name: kafka_bootstrap(ap),
        catalogue::KAFKA_TOPIC.name: ap.spec.kafka.topic.name,
        catalogue::KAFKA_DEAD_LETTER_TOPIC.name: dead_letter_topic(ap),
        catalogue::CLICKHOUSE_URL.name: clickhouse_url(ap),
        catalogue::CLICKHOUSE_DATABASE.name: ap.spec.clickhouse.database,
        catalogue::EVENT_TTL_DAYS.name: ap.spec.event_ttl_days.to_string(),
        catalogue::LOG_FORMAT.name: "json",
    });
    if let Some(c) = &ap.spec.clickhouse.cluster {
        data[catalogue::CLICKHOUSE_CLUSTER.name] = json!(c);
    }
    if let Some(p) = ap.spec.kafka.external.as_ref().and_then(|e| e.security_protocol.clone()) {
        data[catalogue::KAFKA_SECURITY_PROTOCOL.name] = json!(p);
    }
    let value = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_meta(ap, config_map_name(ap), "config"),
        "data": data,
    });
    build("ConfigMap", value)
}

/// The Secrets the workloads' environment references, other than the generated credentials:
/// `(name, the spec field that names it)`.
pub fn referenced_secrets(ap: &AnalyticsPlatform) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    if let Some(s) = ap.spec.clickhouse.external.as_ref().and_then(|e| e.credentials_secret_ref.clone()) {
        out.push((s, "spec.clickhouse.external.credentialsSecretRef"));
    }
    if let Some(s) = ap.spec.kafka.external.as_ref().and_then(|e| e.sasl_secret_ref.clone()) {
        out.push((s, "spec.kafka.external.saslSecretRef"));
    }
    if let Some(s) = ap.spec.postgres.as_ref().and_then(|p| p.url_secret_ref.clone()) {
        out.push((s, "spec.postgres.urlSecretRef"));
    }
    out
}

/// The hash of what pods read from outside their template: the ConfigMap's data and the
/// `resourceVersion` of each Secret their environment references (a rotated password changes the
/// version; the hash never sees a secret's value).
pub fn config_hash(config: &BTreeMap<String, String>, secret_versions: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in config {
        h.update(b"config\0");
        h.update(k.as_bytes());
        h.update(b"\0");
        h.update(v.as_bytes());
        h.update(b"\0");
    }
    for (name, version) in secret_versions {
        h.update(b"secret\0");
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(version.as_bytes());
        h.update(b"\0");
    }
    hex::encode(&h.finalize()[..16])
}

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}}})
}

/// Environment variables read from Secrets: ClickHouse and Kafka credentials, the Postgres URL,
/// the token that guards the auth service's internal API.
pub fn env_from_secrets(ap: &AnalyticsPlatform) -> Vec<Value> {
    let mut env = vec![secret_env(catalogue::INTERNAL_TOKEN.name, &generated_secret_name(ap), "internal-token", false)];
    match (&ap.spec.clickhouse.external, &ap.spec.clickhouse.managed) {
        (Some(e), _) => {
            if let Some(s) = &e.credentials_secret_ref {
                env.push(secret_env(catalogue::CLICKHOUSE_USER.name, s, "username", true));
                env.push(secret_env(catalogue::CLICKHOUSE_PASSWORD.name, s, "password", true));
            }
        }
        (None, Some(_)) => {
            env.push(json!({"name": catalogue::CLICKHOUSE_USER.name, "value": "cairn"}));
            env.push(secret_env(
                catalogue::CLICKHOUSE_PASSWORD.name,
                &generated_secret_name(ap),
                "clickhouse-password",
                false,
            ));
        }
        (None, None) => {}
    }
    if let Some(s) = ap.spec.kafka.external.as_ref().and_then(|e| e.sasl_secret_ref.as_ref()) {
        env.push(secret_env(catalogue::KAFKA_SASL_USERNAME.name, s, "username", false));
        env.push(secret_env(catalogue::KAFKA_SASL_PASSWORD.name, s, "password", false));
        env.push(secret_env(catalogue::KAFKA_SASL_MECHANISM.name, s, "mechanism", true));
    }
    if let Some(pg) = &ap.spec.postgres {
        match (&pg.url_secret_ref, &pg.managed) {
            (Some(s), _) => env.push(secret_env(catalogue::POSTGRES_URL.name, s, "url", false)),
            (None, Some(_)) => env.extend(managed_postgres_url_env(ap)),
            (None, None) => {}
        }
    }
    env
}

/// `<namespace>/<name>` of a platform, as [`CREDENTIALS_OF_ANNOTATION`] holds it.
pub fn platform_key(ap: &AnalyticsPlatform) -> String {
    format!(
        "{}/{}",
        ap.metadata.namespace.as_deref().unwrap_or_default(),
        ap.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The generated credentials' metadata: owned by the platform (deleted with it) under the Delete
/// policy; without an owner under Retain, so that a platform of the same name created again finds
/// the passwords its retained volumes were initialised with.
pub fn credentials_meta(ap: &AnalyticsPlatform) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    let mut meta = child_meta(ap, generated_secret_name(ap), "credentials");
    if ap.spec.deletion_policy == DeletionPolicy::Retain {
        meta.owner_references = Some(Vec::new());
    }
    meta.annotations = Some(BTreeMap::from([(CREDENTIALS_OF_ANNOTATION.to_string(), platform_key(ap))]));
    meta
}

/// The generated credentials: random passwords for managed dependencies and the key the auth
/// service signs tokens with. Created once; never overwritten (the controller only creates it).
pub fn generated_secret(ap: &AnalyticsPlatform) -> Result<Secret, BuildError> {
    let random = || format!("{}{}", uuid_hex(), uuid_hex());
    let value = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": credentials_meta(ap),
        "type": "Opaque",
        "stringData": {
            "clickhouse-password": random(),
            (crate::query_user::PASSWORD_KEY): random(),
            "postgres-password": random(),
            "auth-token-key": random(),
            "internal-token": random(),
            (crate::heartbeat::KEY): format!("cairn_hb_{}", random()),
        }
    });
    build("Secret", value)
}

fn uuid_hex() -> String {
    // UUIDv4 is 122 bits from the OS's random source.
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::platform;

    #[test]
    fn config_map_holds_no_secret() {
        let ap = platform();
        let cm = config_map(&ap).unwrap();
        let data = cm.data.unwrap();
        assert_eq!(data["CAIRN_KAFKA_BROKERS"], "kafka:9092");
        assert_eq!(data["CAIRN_KAFKA_DEAD_LETTER_TOPIC"], "cairn_events_dead_letter");
        assert_eq!(data["CAIRN_CLICKHOUSE_URL"], "http://clickhouse:8123");
        assert!(data.keys().all(|k| !k.contains("PASSWORD")));
        let env = env_from_secrets(&ap);
        assert_eq!(env[1]["valueFrom"]["secretKeyRef"]["name"], "ch-creds");
    }

    #[test]
    fn generated_secret_is_random() {
        let ap = platform();
        let a = generated_secret(&ap).unwrap().string_data.unwrap();
        let b = generated_secret(&ap).unwrap().string_data.unwrap();
        assert_eq!(a["clickhouse-password"].len(), 64);
        assert_ne!(a["clickhouse-password"], b["clickhouse-password"]);
    }

    #[test]
    fn credentials_outlive_a_retained_platform() {
        let mut ap = platform();
        let retained = generated_secret(&ap).unwrap();
        assert_eq!(retained.metadata.owner_references, Some(vec![]), "Retain: no owner, not garbage-collected");
        assert_eq!(retained.metadata.annotations.unwrap()[CREDENTIALS_OF_ANNOTATION], "analytics/demo");
        ap.spec.deletion_policy = DeletionPolicy::Delete;
        assert_eq!(generated_secret(&ap).unwrap().metadata.owner_references.unwrap().len(), 1);
    }

    #[test]
    fn the_config_hash_follows_config_and_secret_versions() {
        let ap = platform();
        let data = config_map(&ap).unwrap().data.unwrap();
        let secrets = BTreeMap::from([("ch-creds".to_string(), "100".to_string())]);
        let base = config_hash(&data, &secrets);
        assert_eq!(base, config_hash(&data, &secrets), "stable");
        let mut moved = ap.clone();
        moved.spec.kafka.external.as_mut().unwrap().bootstrap_servers = "kafka-2:9092".into();
        assert_ne!(base, config_hash(&config_map(&moved).unwrap().data.unwrap(), &secrets));
        let rotated = BTreeMap::from([("ch-creds".to_string(), "101".to_string())]);
        assert_ne!(base, config_hash(&data, &rotated), "a rotated Secret rolls the pods");
        assert_eq!(
            referenced_secrets(&ap),
            vec![("ch-creds".to_string(), "spec.clickhouse.external.credentialsSecretRef")]
        );
    }
}
