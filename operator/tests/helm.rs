//! The Helm chart: lint and template clean in both scopes, and `helm install` into the real
//! control plane gives a running operator Deployment with its RBAC.

use std::process::Command;
use std::time::Duration;

use cairn_e2e::{repo_root, unique, wait_until, TestKube};
use serde::Deserialize;
use serde_json::Value;

fn helm(kube: &TestKube, args: &[&str]) -> String {
    let bin = kube.tools_bin().unwrap().join("helm");
    let out = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kube.kubeconfig())
        .args(args)
        .env("HELM_CACHE_HOME", repo_root().join(".stack/test/helm/cache"))
        .env("HELM_CONFIG_HOME", repo_root().join(".stack/test/helm/config"))
        .env("HELM_DATA_HOME", repo_root().join(".stack/test/helm/data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The objects of `helm template`'s output.
fn objects(rendered: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(rendered)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|o| !o.is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The ConfigMap that Grafana's dashboard sidecar loads (label `grafana_dashboard: "1"`).
fn dashboard_config_map(objects: &[Value]) -> Option<&Value> {
    of_kind(objects, "ConfigMap").into_iter().find(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
}

/// The alerts of the chart's PrometheusRule (docs/OPERATIONS.md, "Monitoring").
const ALERTS: [&str; 11] = [
    "CairnConsumerLagOldestAge",
    "CairnDataPathStale",
    "CairnDataPathNoHeartbeat",
    "CairnClickHouseDiskLow",
    "CairnEventsAtRisk",
    "CairnDeadLetters",
    "CairnDeadLettersDropped",
    "CairnCaptureErrors",
    "CairnPlatformDegraded",
    "CairnOperatorReconcileErrors",
    "CairnOperatorDown",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_lints_templates_and_installs() {
    let kube = TestKube::shared().unwrap();
    let chart = repo_root().join("charts/cairn-operator").display().to_string();
    let lint = helm(&kube, &["lint", "--strict", &chart]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    helm(&kube, &["lint", "--strict", &chart, "--set", "namespaceScoped=true"]);

    let cluster = helm(&kube, &["template", "cairn", &chart, "--namespace", "cairn-system", "--include-crds"]);
    assert!(cluster.contains("kind: ClusterRole\n"), "{cluster}");
    assert!(cluster.contains("kind: CustomResourceDefinition"));
    assert!(cluster.contains("readOnlyRootFilesystem: true"));
    let scoped = helm(&kube, &["template", "cairn", &chart, "--namespace", "team-a", "--set", "namespaceScoped=true"]);
    assert!(!scoped.contains("kind: ClusterRole\n") && scoped.contains("kind: Role\n"));
    assert!(scoped.contains("WATCH_NAMESPACE"));

    // Monitoring: the Prometheus Operator's objects render where the cluster serves their kinds
    // (`auto`; `--api-versions` stands for such a cluster), or when forced by their values; the
    // Grafana dashboard's ConfigMap renders by default.
    let all_on = "monitoring.prometheusRule.enabled=true,monitoring.podMonitor.enabled=true,\
                  monitoring.serviceMonitor.enabled=true,monitoring.grafanaDashboard.enabled=true";
    let all_off = all_on.replace("=true", "=false");
    let dashboard_file =
        std::fs::read_to_string(repo_root().join("charts/cairn-operator/dashboards/cairn-platform.json")).unwrap();
    for (scope, ns) in [("false", "cairn-system"), ("true", "team-a")] {
        let scope_set = format!("namespaceScoped={scope}");
        helm(&kube, &["lint", "--strict", &chart, "--set", &scope_set, "--set", all_on]);
        let template = |extra: &[&str]| {
            let mut args = vec!["template", "cairn", chart.as_str(), "--namespace", ns, "--set", scope_set.as_str()];
            args.extend_from_slice(extra);
            objects(&helm(&kube, &args))
        };
        let crds = ["--api-versions", "monitoring.coreos.com/v1"];
        let without = template(&[]);
        let with = template(&crds);
        let forced_on = template(&["--set", all_on]);
        let mut off = crds.to_vec();
        off.extend(["--set", all_off.as_str()]);
        let forced_off = template(&off);
        for kind in ["PrometheusRule", "PodMonitor", "ServiceMonitor"] {
            assert_eq!(of_kind(&with, kind).len(), 1, "{kind} where the cluster serves it ({scope_set})");
            assert!(of_kind(&without, kind).is_empty(), "no {kind} where the cluster does not serve it ({scope_set})");
            assert_eq!(of_kind(&forced_on, kind).len(), 1, "{kind} forced on ({scope_set})");
            assert!(of_kind(&forced_off, kind).is_empty(), "{kind} forced off ({scope_set})");
        }
        assert!(dashboard_config_map(&forced_off).is_none(), "the dashboard forced off");

        let rule = of_kind(&with, "PrometheusRule")[0];
        assert_eq!(rule["metadata"]["namespace"], ns);
        let groups = rule["spec"]["groups"].as_array().unwrap();
        let group_names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(group_names, ["cairn-platform", "cairn-operator"]);
        let rules: Vec<&Value> = groups.iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
        for name in ALERTS {
            assert!(rules.iter().any(|r| r["alert"] == name), "{name} in {rule}");
        }
        for r in &rules {
            let name = r["alert"].as_str().unwrap();
            assert!(!r["expr"].as_str().unwrap().trim().is_empty(), "{name}");
            assert!(["warning", "critical"].contains(&r["labels"]["severity"].as_str().unwrap()), "{name}");
            assert!(r["annotations"]["summary"].as_str().is_some_and(|s| !s.is_empty()), "{name}");
            assert!(r["annotations"]["description"].as_str().unwrap().contains("docs/OPERATIONS.md"), "{name}");
            let runbook = r["annotations"]["runbook_url"].as_str().unwrap();
            assert!(runbook.ends_with(&format!("OPERATIONS.md#{}", name.to_lowercase())), "{name}: {runbook}");
        }

        let pods = of_kind(&with, "PodMonitor")[0];
        let selector = &pods["spec"]["namespaceSelector"];
        if scope == "true" {
            assert_eq!(selector["matchNames"], serde_json::json!([ns]), "only the release namespace");
        } else {
            assert_eq!(selector["any"], true, "every namespace");
        }
        let ports: Vec<&str> = pods["spec"]["podMetricsEndpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["port"].as_str().unwrap())
            .collect();
        assert_eq!(ports, ["admin", "http"], "capture, query, auth on admin; the consumer on http");
        let operator = of_kind(&with, "ServiceMonitor")[0];
        assert_eq!(operator["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"], "cairn");
        assert_eq!(operator["spec"]["endpoints"][0]["port"], "http");
        assert_eq!(operator["spec"]["endpoints"][0]["honorLabels"], true, "keeps the platforms' namespace label");

        // The dashboard: by default, with or without the CRDs; the chart's JSON file, as it is.
        for rendered in [&without, &with] {
            let map = dashboard_config_map(rendered).expect("the dashboard ConfigMap");
            let json = map["data"]["cairn-platform.json"].as_str().unwrap();
            assert_eq!(json.trim_end(), dashboard_file.trim_end());
            let dashboard: Value = serde_json::from_str(json).expect("the dashboard is JSON");
            assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 38);
            let variables = dashboard["templating"]["list"].as_array().unwrap();
            assert!(variables.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource"));
            let platform = variables.iter().find(|v| v["name"] == "platform").expect("a platform variable");
            assert!(platform["definition"].as_str().unwrap().starts_with("label_values("));
            let panels = dashboard["panels"].as_array().unwrap();
            assert!(panels.iter().filter(|p| p["type"] != "row").count() >= 10);
            for p in panels.iter().filter(|p| p["type"] != "row") {
                assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
                assert!(p["targets"].as_array().is_some_and(|t| !t.is_empty()), "{}", p["title"]);
            }
        }
    }

    let ns = unique("helm").replace('_', "-");
    helm(
        &kube,
        &["install", "cairn-operator", &chart, "--namespace", &ns, "--create-namespace", "--wait", "--timeout", "120s"],
    );
    let deployment = kube
        .kubectl(&["-n", &ns, "get", "deployment", "cairn-operator", "-o", "jsonpath={.status.readyReplicas}"])
        .unwrap();
    assert_eq!(deployment, "1");
    kube.kubectl(&["get", "crd", "analyticsplatforms.cairn.dev"]).unwrap();
    let can = kube
        .kubectl(&[
            "auth",
            "can-i",
            "patch",
            "analyticsplatforms.cairn.dev/status",
            "--as",
            &format!("system:serviceaccount:{ns}:cairn-operator"),
            "-n",
            "default",
        ])
        .unwrap();
    assert_eq!(can.trim(), "yes");
    let cannot = kube.kubectl(&[
        "auth",
        "can-i",
        "delete",
        "nodes",
        "--as",
        &format!("system:serviceaccount:{ns}:cairn-operator"),
    ]);
    assert!(cannot.is_err() || cannot.unwrap().trim() == "no", "RBAC stays narrow");
    // Least privilege on Secrets: what a platform names can be read, its credentials created; no
    // Secret can be listed, watched or deleted, in any namespace or cluster-wide.
    let sa = format!("system:serviceaccount:{ns}:cairn-operator");
    let can_i = |verb: &str, scope: &[&str]| {
        let mut args = vec!["auth", "can-i", verb, "secrets", "--as", sa.as_str()];
        args.extend_from_slice(scope);
        match kube.kubectl(&args) {
            Ok(out) => out.trim() == "yes",
            Err(_) => false,
        }
    };
    for verb in ["list", "watch", "delete", "deletecollection"] {
        assert!(!can_i(verb, &["--all-namespaces"]), "{verb} secrets cluster-wide");
        assert!(!can_i(verb, &["-n", "default"]), "{verb} secrets in a namespace");
    }
    assert!(can_i("get", &["-n", "default"]));
    assert!(can_i("create", &["-n", "default"]));
    helm(&kube, &["uninstall", "cairn-operator", "--namespace", &ns, "--wait"]);
    wait_until("the operator Deployment to be gone", Duration::from_secs(60), || async {
        kube.kubectl(&["-n", &ns, "get", "deployment", "cairn-operator"]).is_err()
    })
    .await
    .unwrap();
}
