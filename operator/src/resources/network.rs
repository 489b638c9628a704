//! The platform's ServiceAccount and NetworkPolicy.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::{child_meta, child_name};
use crate::crd::AnalyticsPlatform;

pub fn service_account_name(ap: &AnalyticsPlatform) -> String {
    child_name(ap, "cairn")
}

/// The identity the workloads run as. They call no Kubernetes API, so it has no roles and its
/// token is not mounted.
pub fn service_account(ap: &AnalyticsPlatform) -> ServiceAccount {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_meta(ap, service_account_name(ap), "workloads"),
        "automountServiceAccountToken": false
    }))
    .unwrap_or_default()
}

/// Workload pods accept traffic only on their HTTP port; managed dependencies accept traffic
/// only from the platform's own pods.
pub fn network_policies(ap: &AnalyticsPlatform) -> Vec<NetworkPolicy> {
    let instance = ap.metadata.name.clone().unwrap_or_default();
    let workloads = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_meta(ap, child_name(ap, "workloads"), "network"),
        "spec": {
            "podSelector": {"matchExpressions": [
                {"key": "app.kubernetes.io/instance", "operator": "In", "values": [instance]},
                {"key": "app.kubernetes.io/component", "operator": "In", "values": ["capture", "consumer", "query", "auth"]}
            ]},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": 8000}]}]
        }
    });
    let dependencies = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_meta(ap, child_name(ap, "dependencies"), "network"),
        "spec": {
            "podSelector": {"matchExpressions": [
                {"key": "app.kubernetes.io/instance", "operator": "In", "values": [instance]},
                {"key": "app.kubernetes.io/component", "operator": "In", "values": ["kafka", "clickhouse", "postgres"]}
            ]},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": instance}}}]}]
        }
    });
    [workloads, dependencies].into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::platform;

    #[test]
    fn policies_limit_ingress() {
        let ap = platform();
        let p = network_policies(&ap);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].metadata.name.as_deref(), Some("demo-workloads"));
        let port = &p[0].spec.as_ref().unwrap().ingress.as_ref().unwrap()[0].ports.as_ref().unwrap()[0];
        assert_eq!(port.port, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8000)));
        assert_eq!(service_account(&ap).automount_service_account_token, Some(false));
    }
}
