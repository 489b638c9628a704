//! The platform's ConfigMap (everything the workloads read that is not a secret) and the
//! environment variables that reference credential Secrets. Secrets are never copied into the
//! ConfigMap: workloads read them through `secretKeyRef`.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{json, Value};

use super::managed::{managed_clickhouse_url, managed_kafka_bootstrap, managed_postgres_url_env};
use super::{child_meta, child_name};
use crate::crd::AnalyticsPlatform;

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

pub fn config_map(ap: &AnalyticsPlatform) -> ConfigMap {
    let mut data = json!({
        "CAIRN_KAFKA_BROKERS": kafka_bootstrap(ap),
        "CAIRN_KAFKA_TOPIC": ap.spec.kafka.topic.name,
        "CAIRN_KAFKA_DEAD_LETTER_TOPIC": dead_letter_topic(ap),
        "CAIRN_CLICKHOUSE_URL": clickhouse_url(ap),
        "CAIRN_CLICKHOUSE_DATABASE": ap.spec.clickhouse.database,
        "CAIRN_EVENT_TTL_DAYS": ap.spec.event_ttl_days.to_string(),
        "CAIRN_LOG_FORMAT": "json",
    });
    if let Some(p) = ap.spec.kafka.external.as_ref().and_then(|e| e.security_protocol.clone()) {
        data["CAIRN_KAFKA_SECURITY_PROTOCOL"] = json!(p);
    }
    let value = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_meta(ap, config_map_name(ap), "config"),
        "data": data,
    });
    serde_json::from_value(value).unwrap_or_default()
}

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}}})
}

/// Environment variables read from Secrets: ClickHouse and Kafka credentials, the Postgres URL,
/// the token that guards the auth service's internal API.
pub fn env_from_secrets(ap: &AnalyticsPlatform) -> Vec<Value> {
    let mut env = vec![secret_env("CAIRN_INTERNAL_TOKEN", &generated_secret_name(ap), "internal-token", false)];
    match (&ap.spec.clickhouse.external, &ap.spec.clickhouse.managed) {
        (Some(e), _) => {
            if let Some(s) = &e.credentials_secret_ref {
                env.push(secret_env("CAIRN_CLICKHOUSE_USER", s, "username", true));
                env.push(secret_env("CAIRN_CLICKHOUSE_PASSWORD", s, "password", true));
            }
        }
        (None, Some(_)) => {
            env.push(json!({"name": "CAIRN_CLICKHOUSE_USER", "value": "cairn"}));
            env.push(secret_env("CAIRN_CLICKHOUSE_PASSWORD", &generated_secret_name(ap), "clickhouse-password", false));
        }
        (None, None) => {}
    }
    if let Some(s) = ap.spec.kafka.external.as_ref().and_then(|e| e.sasl_secret_ref.as_ref()) {
        env.push(secret_env("CAIRN_KAFKA_SASL_USERNAME", s, "username", false));
        env.push(secret_env("CAIRN_KAFKA_SASL_PASSWORD", s, "password", false));
        env.push(secret_env("CAIRN_KAFKA_SASL_MECHANISM", s, "mechanism", true));
    }
    if let Some(pg) = &ap.spec.postgres {
        match (&pg.url_secret_ref, &pg.managed) {
            (Some(s), _) => env.push(secret_env("CAIRN_POSTGRES_URL", s, "url", false)),
            (None, Some(_)) => env.extend(managed_postgres_url_env(ap)),
            (None, None) => {}
        }
    }
    env
}

/// The generated credentials: random passwords for managed dependencies and the key the auth
/// service signs tokens with. Created once; never overwritten (the controller only creates it).
pub fn generated_secret(ap: &AnalyticsPlatform) -> Secret {
    let random = || format!("{}{}", uuid_hex(), uuid_hex());
    let value = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": child_meta(ap, generated_secret_name(ap), "credentials"),
        "type": "Opaque",
        "stringData": {
            "clickhouse-password": random(),
            "postgres-password": random(),
            "auth-token-key": random(),
            "internal-token": random(),
        }
    });
    serde_json::from_value(value).unwrap_or_default()
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
        let cm = config_map(&ap);
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
        let a = generated_secret(&ap).string_data.unwrap();
        let b = generated_secret(&ap).string_data.unwrap();
        assert_eq!(a["clickhouse-password"].len(), 64);
        assert_ne!(a["clickhouse-password"], b["clickhouse-password"]);
    }
}
