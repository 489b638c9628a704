//! The platform's ServiceAccount and NetworkPolicies.
//!
//! The policies allow exactly the paths the platform uses (docs/OPERATIONS.md draws them):
//!
//! | to            | from (ingress)                                     | port |
//! |---------------|----------------------------------------------------|------|
//! | capture, query| anywhere (the Ingress controller, kubelet probes)  | 8000, admin 9000 |
//! | consumer      | anywhere (metrics, probes)                         | 8000 |
//! | auth          | capture and query of the same platform; admin from anywhere | 8000; 9000 |
//! | kafka         | capture, consumer, query; the operator             | 9092 |
//! | clickhouse    | consumer, query; the operator                      | 8123 |
//! | postgres      | consumer, query, auth                              | 5432 |
//!
//! and, for egress, each workload reaches DNS and only the dependencies it uses: capture → Kafka,
//! auth; consumer → Kafka, ClickHouse, PostgreSQL; query → Kafka, ClickHouse, PostgreSQL, auth; auth → PostgreSQL.
//! A managed dependency is reached by its pods' labels; an external one by its ports, at any
//! address (its address may be a name that resolves anywhere). With `spec.tracing`, every
//! workload also reaches the trace collector's port, at any address.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};

use super::{build, child_meta, child_name, BuildError, Workload};
use crate::crd::AnalyticsPlatform;

pub fn service_account_name(ap: &AnalyticsPlatform) -> String {
    child_name(ap, "cairn")
}

/// The identity the workloads run as. They call no Kubernetes API, so it has no roles and its
/// token is not mounted.
pub fn service_account(ap: &AnalyticsPlatform) -> Result<ServiceAccount, BuildError> {
    build(
        "ServiceAccount",
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": child_meta(ap, service_account_name(ap), "workloads"),
            "automountServiceAccountToken": false
        }),
    )
}

/// Where the operator runs, so that the policies of managed dependencies let it in (topic
/// administration, migrations). `None` when it is not known (the operator runs outside the
/// cluster): then only the platform's pods are let in.
#[derive(Debug, Clone, Default)]
pub struct OperatorPeer {
    pub namespace: Option<String>,
}

/// The ports an external dependency is reached on, from its addresses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExternalPorts {
    pub kafka: Vec<i32>,
    pub clickhouse: Vec<i32>,
    pub postgres: Vec<i32>,
}

/// The ports in a comma-separated `host:port` list (Kafka's bootstrap servers).
pub fn bootstrap_ports(servers: &str) -> Vec<i32> {
    let mut ports: Vec<i32> =
        servers.split(',').filter_map(|s| s.trim().rsplit_once(':').and_then(|(_, p)| p.parse().ok())).collect();
    if ports.is_empty() {
        ports.push(9092);
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The port of a URL (`http://h:8123`, `postgres://u:p@h:5432/db`), or the scheme's default.
pub fn url_port(url: &str) -> Option<i32> {
    let (scheme, rest) = url.split_once("://")?;
    explicit_port(rest).or(match scheme {
        "http" => Some(8123),
        "https" => Some(8443),
        "postgres" | "postgresql" => Some(5432),
        _ => None,
    })
}

/// The port of an OTLP/HTTP endpoint (`http://host[:port]/…`): its own, else http's 80.
pub fn otlp_port(url: &str) -> i32 {
    url.split_once("://").and_then(|(_, rest)| explicit_port(rest)).unwrap_or(80)
}

/// The port a URL names after its scheme (`[user@]host:port/…`, IPv6 hosts in brackets).
fn explicit_port(rest: &str) -> Option<i32> {
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    if host_port.starts_with('[') {
        host_port.rsplit_once("]:").and_then(|(_, p)| p.parse().ok())
    } else {
        host_port.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
    }
}

fn instance(ap: &AnalyticsPlatform) -> String {
    ap.metadata.name.clone().unwrap_or_default()
}

/// Pods of this platform with one of these components.
fn pods(ap: &AnalyticsPlatform, components: &[&str]) -> Value {
    json!({"podSelector": {"matchExpressions": [
        {"key": "app.kubernetes.io/instance", "operator": "In", "values": [instance(ap)]},
        {"key": "app.kubernetes.io/component", "operator": "In", "values": components}
    ]}})
}

fn tcp(ports: &[i32]) -> Value {
    Value::Array(ports.iter().map(|p| json!({"protocol": "TCP", "port": p})).collect())
}

fn policy(ap: &AnalyticsPlatform, part: &str, component: &str, spec: Value) -> Result<NetworkPolicy, BuildError> {
    build(
        "NetworkPolicy",
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": child_meta(ap, child_name(ap, &format!("netpol-{part}")), "network"),
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/instance": instance(ap), "app.kubernetes.io/component": component}},
                "policyTypes": spec["policyTypes"].clone(),
                "ingress": spec["ingress"].clone(),
                "egress": spec["egress"].clone(),
            }
        }),
    )
}

/// A dependency as an egress rule: its pods when managed, its ports anywhere when external.
fn dependency_egress(ap: &AnalyticsPlatform, component: &str, managed: bool, port: i32, external: &[i32]) -> Value {
    if managed {
        json!({"to": [pods(ap, &[component])], "ports": tcp(&[port])})
    } else {
        anywhere_on(external)
    }
}

/// An egress rule to these ports at any address (a name may resolve anywhere).
fn anywhere_on(ports: &[i32]) -> Value {
    json!({
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}, {"namespaceSelector": {}}],
        "ports": tcp(ports)
    })
}

/// The names of the policies, for deleting those a platform no longer has.
pub const POLICY_PARTS: [&str; 7] = ["capture", "consumer", "query", "auth", "kafka", "clickhouse", "postgres"];

/// Every NetworkPolicy of the platform.
pub fn network_policies(
    ap: &AnalyticsPlatform,
    operator: &OperatorPeer,
    external: &ExternalPorts,
) -> Result<Vec<NetworkPolicy>, BuildError> {
    let port = Workload::Capture.port();
    let kafka_managed = ap.spec.kafka.managed.is_some();
    let ch_managed = ap.spec.clickhouse.managed.is_some();
    let pg = ap.spec.postgres.as_ref();
    let pg_managed = pg.is_some_and(|p| p.managed.is_some());
    // DNS: port 53 anywhere, and the cluster's DNS pods (`k8s-app: kube-dns` by convention) on
    // whatever port their Service forwards to (CoreDNS often listens on an unprivileged port).
    let dns = json!({"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]});
    let cluster_dns =
        json!({"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]});
    let kafka = dependency_egress(ap, "kafka", kafka_managed, 9092, &external.kafka);
    let clickhouse = dependency_egress(ap, "clickhouse", ch_managed, 8123, &external.clickhouse);
    let postgres = pg.map(|_| dependency_egress(ap, "postgres", pg_managed, 5432, &external.postgres));
    let auth = json!({"to": [pods(ap, &["auth"])], "ports": tcp(&[port])});
    // The trace collector, by its port at any address (like an external dependency).
    let collector = ap.spec.tracing.as_ref().map(|t| anywhere_on(&[otlp_port(&t.otlp_endpoint)]));
    let admin = super::workload::ADMIN_PORT;
    // The API port from anywhere; the admin port (metrics, probes) from anywhere too: scrapers
    // live in other namespaces, and the kubelet probes from the node.
    let anyone = json!([{"ports": tcp(&[port, admin])}]);

    let mut out = Vec::new();
    let workload = |w: Workload, ingress: Value, egress: Vec<Value>| {
        let mut rules = vec![dns.clone(), cluster_dns.clone()];
        rules.extend(egress);
        rules.extend(collector.clone());
        policy(
            ap,
            w.name(),
            w.name(),
            json!({"policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": rules}),
        )
    };
    out.push(workload(Workload::Capture, anyone.clone(), vec![kafka.clone(), auth.clone()])?);
    // The consumer's persons pipeline decides identity events in PostgreSQL.
    let mut consumer_egress = vec![kafka.clone(), clickhouse.clone()];
    consumer_egress.extend(postgres.clone());
    out.push(workload(Workload::Consumer, anyone.clone(), consumer_egress)?);
    // Query produces event updates and deletions to the events topic.
    let mut query_egress = vec![kafka, clickhouse];
    query_egress.extend(postgres.clone());
    query_egress.push(auth);
    out.push(workload(Workload::Query, anyone, query_egress)?);
    out.push(workload(
        Workload::Auth,
        json!([{"from": [pods(ap, &["capture", "query"])], "ports": tcp(&[port])}, {"ports": tcp(&[admin])}]),
        postgres.into_iter().collect(),
    )?);

    // Managed dependencies: ingress only, from the workloads that use them (and the operator).
    let operator_peer = operator.namespace.as_ref().map(|ns| {
        json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "cairn-operator"}}
        })
    });
    let dependency = |component: &str, users: &[&str], port: i32, operator_too: bool| {
        let mut from = vec![pods(ap, users)];
        if operator_too {
            from.extend(operator_peer.clone());
        }
        policy(
            ap,
            component,
            component,
            json!({"policyTypes": ["Ingress"], "ingress": [{"from": from, "ports": tcp(&[port])}], "egress": null}),
        )
    };
    if kafka_managed {
        let mut kafka = dependency("kafka", &["capture", "consumer", "query"], 9092, true)?;
        if crate::resources::managed::managed_kafka_brokers(ap) > 1 {
            // A quorum's brokers replicate (9092) and elect their controllers (9093) among themselves.
            let peers = build("NetworkPolicy", json!({"from": [pods(ap, &["kafka"])], "ports": tcp(&[9092, 9093])}))?;
            if let Some(ingress) = kafka.spec.as_mut().and_then(|s| s.ingress.as_mut()) {
                ingress.push(peers);
            }
        }
        out.push(kafka);
    }
    if ch_managed {
        out.push(dependency("clickhouse", &["consumer", "query"], 8123, true)?);
    }
    if pg_managed {
        out.push(dependency("postgres", &["consumer", "query", "auth"], 5432, false)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ManagedService;
    use crate::resources::fixtures::platform;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn find<'a>(p: &'a [NetworkPolicy], part: &str) -> &'a NetworkPolicy {
        p.iter().find(|p| p.metadata.name.as_deref() == Some(&format!("demo-netpol-{part}"))).unwrap()
    }

    #[test]
    fn auth_is_reached_only_from_capture_and_query() {
        let ap = platform();
        let ext = ExternalPorts { kafka: vec![9092], clickhouse: vec![8123], postgres: vec![] };
        let p = network_policies(&ap, &OperatorPeer::default(), &ext).unwrap();
        assert_eq!(p.len(), 4, "external dependencies: one policy per workload");
        let auth = find(&p, "auth").spec.clone().unwrap();
        let from = serde_json::to_value(&auth.ingress.unwrap()[0].from).unwrap();
        assert_eq!(from[0]["podSelector"]["matchExpressions"][1]["values"], json!(["capture", "query"]));
        let capture = find(&p, "capture").spec.clone().unwrap();
        let ingress = capture.ingress.clone().unwrap();
        assert_eq!(ingress[0].ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(8000)));
        assert_eq!(capture.policy_types, Some(vec!["Ingress".into(), "Egress".into()]));
        let egress = serde_json::to_value(capture.egress.unwrap()).unwrap();
        assert_eq!(egress[0]["ports"][0]["port"], 53, "DNS first");
        assert_eq!(egress[1]["to"][0]["podSelector"]["matchLabels"]["k8s-app"], "kube-dns");
        assert_eq!(egress[2]["ports"][0]["port"], 9092, "external Kafka by port");
        assert_eq!(egress[3]["ports"][0]["port"], 8000, "auth");
        assert_eq!(service_account(&ap).unwrap().automount_service_account_token, Some(false));
    }

    #[test]
    fn with_tracing_every_workload_reaches_the_collector_port() {
        let mut ap = platform();
        ap.spec.tracing = Some(crate::crd::TracingSpec {
            otlp_endpoint: "http://otel-collector.observability:4318".into(),
            sample_ratio: None,
        });
        let ext = ExternalPorts { kafka: vec![9092], clickhouse: vec![8123], postgres: vec![] };
        let p = network_policies(&ap, &OperatorPeer::default(), &ext).unwrap();
        for part in ["capture", "consumer", "query", "auth"] {
            let egress = serde_json::to_value(find(&p, part).spec.clone().unwrap().egress.unwrap()).unwrap();
            let last = egress.as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["ports"], json!([{"protocol": "TCP", "port": 4318}]), "{part}");
        }
        assert_eq!(otlp_port("http://collector/"), 80);
        assert_eq!(otlp_port("http://[fd00::1]:55681/otlp"), 55681);
    }

    #[test]
    fn managed_dependencies_admit_their_users_and_the_operator() {
        let mut ap = platform();
        ap.spec.kafka.external = None;
        ap.spec.kafka.managed = Some(ManagedService::default());
        let op = OperatorPeer { namespace: Some("cairn-system".into()) };
        let p = network_policies(&ap, &op, &ExternalPorts::default()).unwrap();
        let kafka = serde_json::to_value(find(&p, "kafka").spec.clone().unwrap()).unwrap();
        assert_eq!(kafka["policyTypes"], json!(["Ingress"]));
        let from = &kafka["ingress"][0]["from"];
        assert_eq!(from[0]["podSelector"]["matchExpressions"][1]["values"], json!(["capture", "consumer", "query"]));
        assert_eq!(from[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "cairn-system");
        let consumer = serde_json::to_value(find(&p, "consumer").spec.clone().unwrap()).unwrap();
        assert_eq!(consumer["egress"][2]["to"][0]["podSelector"]["matchExpressions"][1]["values"], json!(["kafka"]));
    }

    #[test]
    fn ports_of_addresses() {
        assert_eq!(bootstrap_ports("a:9092, b:9093,c:9092"), vec![9092, 9093]);
        assert_eq!(bootstrap_ports("kafka"), vec![9092]);
        assert_eq!(url_port("http://clickhouse:8123"), Some(8123));
        assert_eq!(url_port("https://ch.example.com"), Some(8443));
        assert_eq!(url_port("postgres://u:p@db:6432/cairn?sslmode=require"), Some(6432));
        assert_eq!(url_port("postgres://db/cairn"), Some(5432));
        assert_eq!(url_port("http://[::1]:9000/"), Some(9000));
        assert_eq!(url_port("nonsense"), None);
    }
}
