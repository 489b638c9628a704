//! The Helm chart: lint and template clean in both scopes, and `helm install` into the real
//! control plane gives a running operator Deployment with its RBAC.

use std::process::Command;
use std::time::Duration;

use cairn_e2e::{repo_root, unique, wait_until, TestKube};

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
