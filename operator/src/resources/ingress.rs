//! The Ingress that exposes capture (ingestion paths) and query (`/api`, which forwards auth's
//! public routes to the auth service, and `/`, the dashboard) on the spec's host. Auth's
//! `/internal` API is never exposed.

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;

use super::{build, child_meta, child_name, BuildError, Workload};
use crate::crd::AnalyticsPlatform;

/// Paths routed to capture: Cairn's and PostHog's ingestion routes, as capture serves them.
pub use cairn_common::event::CAPTURE_ROUTES as CAPTURE_PATHS;

pub fn ingress(ap: &AnalyticsPlatform) -> Option<Result<Ingress, BuildError>> {
    let spec = ap.spec.ingress.as_ref()?;
    let backend = |w: Workload| json!({"service": {"name": child_name(ap, w.name()), "port": {"name": "http"}}});
    let mut paths: Vec<_> = CAPTURE_PATHS
        .iter()
        .map(|p| json!({"path": p, "pathType": "Prefix", "backend": backend(Workload::Capture)}))
        .collect();
    paths.push(json!({"path": "/api", "pathType": "Prefix", "backend": backend(Workload::Query)}));
    // Everything else is the dashboard, which query serves (the longest matching prefix wins, so
    // the ingestion paths and /api keep their backends).
    paths.push(json!({"path": "/", "pathType": "Prefix", "backend": backend(Workload::Query)}));
    let mut meta = child_meta(ap, child_name(ap, "ingress"), "ingress");
    if !spec.annotations.is_empty() {
        meta.annotations = Some(spec.annotations.clone());
    }
    let mut ing = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": {"rules": [{"host": spec.host, "http": {"paths": paths}}]}
    });
    if let Some(class) = &spec.class_name {
        ing["spec"]["ingressClassName"] = json!(class);
    }
    if let Some(tls) = &spec.tls_secret_name {
        ing["spec"]["tls"] = json!([{"hosts": [spec.host], "secretName": tls}]);
    }
    Some(build("Ingress", ing))
}

/// The capture and query URLs clients use.
pub fn endpoints(ap: &AnalyticsPlatform) -> (String, String) {
    match &ap.spec.ingress {
        Some(i) => {
            let scheme = if i.tls_secret_name.is_some() { "https" } else { "http" };
            (format!("{scheme}://{}", i.host), format!("{scheme}://{}/api", i.host))
        }
        None => {
            let ns = ap.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            (
                format!("http://{}.{ns}.svc", child_name(ap, "capture")),
                format!("http://{}.{ns}.svc/api", child_name(ap, "query")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::IngressSpec;
    use crate::resources::fixtures::platform;

    #[test]
    fn routes_ingestion_to_capture_and_api_to_query() {
        let mut ap = platform();
        assert!(ingress(&ap).is_none());
        assert_eq!(endpoints(&ap).0, "http://demo-capture.analytics.svc");
        ap.spec.ingress = Some(IngressSpec {
            host: "cairn.example.com".into(),
            class_name: Some("nginx".into()),
            tls_secret_name: Some("tls".into()),
            ..Default::default()
        });
        let i = ingress(&ap).unwrap().unwrap();
        let spec = i.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let rules = spec.rules.unwrap();
        let paths = &rules[0].http.as_ref().unwrap().paths;
        assert_eq!(paths[0].backend.service.as_ref().unwrap().name, "demo-capture");
        let last = paths.last().unwrap();
        assert_eq!(
            (last.path.as_deref(), last.backend.service.as_ref().unwrap().name.as_str()),
            (Some("/"), "demo-query")
        );
        assert!(paths.iter().any(|p| p.path.as_deref() == Some("/api")));
        assert_eq!(endpoints(&ap), ("https://cairn.example.com".into(), "https://cairn.example.com/api".into()));
    }
}
