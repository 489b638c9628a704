//! The whole platform on a kind cluster, the way a user runs it: Cairn's images loaded with `kind
//! load image-archive`, `helm install` of the operator chart, `kubectl apply` of an
//! AnalyticsPlatform in managed mode (Kafka, ClickHouse and PostgreSQL run by the operator),
//! events sent by the web SDK (Chromium) and the Python SDK to the Ingress, and trends read back
//! through the same Ingress; the platform's NetworkPolicies probed from a pod outside it. Then the
//! day-2 operations: scaling the consumer and the topic's partitions, a consumer pod deleted while
//! events flow, a rolling image update while events flow, and deleting the platform.
//!
//! `stack/kind.sh start` creates the cluster (with Docker where it runs, else with podman and a
//! node image assembled here; Traefik is the Ingress controller) and the test deletes it
//! afterwards, unless CAIRN_E2E_KEEP_CLUSTER is set. CAIRN_E2E_CLUSTER=skip makes the test pass
//! without doing anything (say why you set it).
//!
//! Timings (cluster up, platform Ready, first event visible) are printed; when a step fails,
//! every pod's logs and kind's node logs are kept in .stack/test/kubernetes-logs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cairn_e2e::{call_with, repo_root, test_stack_dir, tools_dir, wait_until};
use serde_json::{json, Value};

const NAMESPACE: &str = "cairn-e2e";
const PLATFORM: &str = "e2e";
const HOST: &str = "cairn.e2e.test";

/// Runs a command; stdout on success, an error with everything it printed otherwise.
fn run(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("{what}: could not start"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{what} failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(stdout)
}

fn script(name: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(repo_root().join("stack").join(name));
    c
}

/// The kind cluster under test (`stack/kind.sh`) and how to reach it.
struct Cluster {
    kubeconfig: PathBuf,
    bin: PathBuf,
    /// ip:port where the Ingress controller listens.
    ingress: String,
    ingress_class: Option<String>,
    helm_home: PathBuf,
    /// An image with sh and nc on the cluster, when its NetworkPolicies are enforced: the test
    /// then probes the platform's policies from a pod outside it.
    probe_image: Option<String>,
}

impl Cluster {
    fn up() -> Result<Self> {
        let helm_home = test_stack_dir().join("helm-e2e");
        run("stack/kind.sh start", script("kind.sh").arg("start"))?;
        let env = kind_env()?;
        let get = |k: &str| env.get(k).cloned().ok_or_else(|| anyhow!("stack/kind.sh env printed no {k}"));
        let path = get("PATH")?;
        Ok(Self {
            kubeconfig: PathBuf::from(get("KUBECONFIG")?),
            bin: PathBuf::from(path.split(':').next().unwrap_or_default()),
            ingress: get("CAIRN_KIND_INGRESS")?,
            ingress_class: env.get("CAIRN_KIND_INGRESS_CLASS").cloned(),
            helm_home,
            probe_image: env
                .get("CAIRN_KIND_PROBE_IMAGE")
                .filter(|_| env.get("CAIRN_KIND_NETWORK_POLICY").map(String::as_str) == Some("1"))
                .cloned(),
        })
    }

    fn tool(&self, name: &str) -> PathBuf {
        let p = self.bin.join(name);
        if p.exists() {
            p
        } else {
            PathBuf::from(name)
        }
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(
            &format!("kubectl {}", args.join(" ")),
            Command::new(self.tool("kubectl")).arg("--kubeconfig").arg(&self.kubeconfig).args(args),
        )
    }

    fn apply(&self, manifest: &Value) -> Result<String> {
        let mut child = Command::new(self.tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?.write_all(manifest.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn helm(&self, args: &[&str]) -> Result<String> {
        run(
            &format!("helm {}", args.join(" ")),
            Command::new(self.tool("helm"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args)
                .env("HELM_CACHE_HOME", self.helm_home.join("cache"))
                .env("HELM_CONFIG_HOME", self.helm_home.join("config"))
                .env("HELM_DATA_HOME", self.helm_home.join("data")),
        )
    }

    fn load(&self, archives: &[PathBuf]) -> Result<()> {
        run("stack/kind.sh load", script("kind.sh").arg("load").args(archives))?;
        Ok(())
    }

    fn platform(&self) -> Result<Value> {
        Ok(serde_json::from_str(&self.kubectl(&[
            "-n",
            NAMESPACE,
            "get",
            "analyticsplatform",
            PLATFORM,
            "-o",
            "json",
        ])?)?)
    }

    fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let mut a = args.to_vec();
        let p = format!("jsonpath={path}");
        a.extend(["-o", &p]);
        self.kubectl(&a).unwrap_or_default()
    }

    /// Every pod's logs (and the node's, on the local node) into `dir`.
    fn keep_logs(&self, dir: &Path) {
        let _ = std::fs::create_dir_all(dir);
        if let Ok(pods) = self.kubectl(&[
            "get",
            "pods",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
        ]) {
            for pod in pods.lines().filter(|l| !l.is_empty()) {
                let (ns, name) = pod.split_once('/').unwrap_or(("default", pod));
                let text = self
                    .kubectl(&["-n", ns, "logs", name, "--all-containers", "--prefix", "--tail", "2000"])
                    .unwrap_or_else(|e| e.to_string());
                let _ = std::fs::write(dir.join(format!("{ns}_{name}.log")), text);
            }
        }
        let describe = self
            .kubectl(&["get", "all,analyticsplatforms,ingress,events", "-A", "-o", "wide"])
            .unwrap_or_else(|e| e.to_string());
        let _ = std::fs::write(dir.join("cluster.txt"), describe);
        let _ = run("kind export logs", script("kind.sh").args(["kind", "export", "logs"]).arg(dir.join("kind")));
        eprintln!("logs kept in {}", dir.display());
    }
}

/// `stack/kind.sh env`'s `export K=V` lines.
/// From a pod in another namespace, which of the platform's Services accept a TCP connection.
async fn probe_from_outside(cluster: &Cluster, image: &str) -> Result<BTreeMap<String, bool>> {
    let ns = "cairn-e2e-outside";
    let targets =
        [("capture", 80), ("query", 80), ("auth", 80), ("kafka", 9092), ("clickhouse", 8123), ("postgres", 5432)];
    let script: String = targets
        .iter()
        .map(|(name, port)| {
            format!(
                "if nc -w 3 {PLATFORM}-{name}.{NAMESPACE}.svc.cluster.local {port} </dev/null >/dev/null 2>&1; \
                 then echo '{name} open'; else echo '{name} closed'; fi; "
            )
        })
        .collect::<String>()
        + "echo probes-done; sleep 3600";
    cluster.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))?;
    cluster.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probe", "namespace": ns},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65534},
            "containers": [{"name": "probe", "image": image, "imagePullPolicy": "Never",
                            "command": ["/bin/sh", "-c", script], "resources": {"limits": {"memory": "32Mi"}}}]
        }
    }))?;
    let mut out = String::new();
    wait_until("the probes from outside", Duration::from_secs(120), || {
        let logs = cluster.kubectl(&["-n", ns, "logs", "probe"]).unwrap_or_default();
        let done = logs.contains("probes-done");
        out = logs;
        async move { done }
    })
    .await?;
    let _ = cluster.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    Ok(out.lines().filter_map(|l| l.split_once(' ')).map(|(name, state)| (name.to_string(), state == "open")).collect())
}

fn kind_env() -> Result<BTreeMap<String, String>> {
    let text = run("stack/kind.sh env", script("kind.sh").arg("env"))?;
    Ok(text
        .lines()
        .flat_map(|l| {
            l.split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .filter(|w| *w != "export")
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|w| {
            w.split_once('=').map(|(k, v)| (k.to_string(), v.trim_matches('"').trim_matches('\'').replace("$PATH", "")))
        })
        .collect())
}

fn image_ref(name: &str) -> Result<String> {
    Ok(run("stack/images.sh ref", script("images.sh").args(["ref", name]))?.trim().to_string())
}

/// Prints and keeps the run's timings.
struct Timings {
    start: Instant,
    lines: Vec<String>,
}

impl Timings {
    fn mark(&mut self, what: &str, since: Instant) {
        let line = format!("{what}: {:.1} s", since.elapsed().as_secs_f64());
        // Straight to stderr, past the test harness's capture: the figures show in every run.
        let _ = writeln!(std::io::stderr(), "⏱ {line}");
        self.lines.push(line);
    }
}

/// The platform's public endpoints, through the Ingress.
struct Endpoints {
    base: String,
    ingress: String,
}

impl Endpoints {
    /// A request to the Ingress with the platform's Host header.
    async fn call(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<&Value>) -> Result<(u16, Value)> {
        let http = reqwest::Client::builder().resolve(HOST, self.ingress.parse()?).build()?;
        call_with(&http, method, &format!("{}{path}", self.base), bearer, body).await
    }

    /// The event's count over the last day, from the query API.
    async fn count(&self, token: &str, project: i64, event: &str) -> Result<u64> {
        let (status, v) = self
            .call(
                "POST",
                &format!("/api/v1/projects/{project}/query/trends"),
                Some(token),
                Some(&json!({"series": [{"event": event}], "date_from": "-1d", "interval": "day"})),
            )
            .await?;
        if status != 200 {
            bail!("trends answered {status}: {v}");
        }
        Ok(v["results"][0]["total"].as_f64().unwrap_or(0.0) as u64)
    }
}

/// Sends events with an SDK through the Ingress (e2e/kubernetes/send-*.{mjs,py}).
fn send_with_sdk(sdk: &str, ep: &Endpoints, key: &str, event: &str, n: usize) -> Result<String> {
    let dir = repo_root().join("e2e/kubernetes");
    let mut cmd = match sdk {
        "web" => {
            let mut c = Command::new("node");
            c.arg(dir.join("send-web.mjs"));
            c
        }
        _ => {
            let mut c = Command::new(tools_dir().join("sdk-venv/bin/python"));
            c.arg(dir.join("send_python.py")).env("PYTHONPATH", repo_root().join("sdks/python/src"));
            c
        }
    };
    cmd.env("CAIRN_CAPTURE_URL", &ep.base)
        .env("CAIRN_INGRESS_ADDR", &ep.ingress)
        .env("CAIRN_API_KEY", key)
        .env("CAIRN_EVENT", event)
        .env("CAIRN_EVENTS", n.to_string());
    run(&format!("{sdk} SDK"), &mut cmd)
}

/// Sends single events over HTTP through the Ingress until stopped, counting those capture
/// acknowledged (200) and those it refused; a refused event is retried, as an SDK would, so every
/// acknowledged event must arrive.
fn steady_sender(
    ep: &Endpoints,
    key: String,
    event: String,
) -> (Arc<AtomicBool>, Arc<AtomicU64>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let (s, a) = (stop.clone(), acked.clone());
    let base = ep.base.clone();
    let ingress = ep.ingress.clone();
    let handle = tokio::spawn(async move {
        let Ok(addr) = ingress.parse() else { return 0 };
        let Ok(http) = reqwest::Client::builder().resolve(HOST, addr).timeout(Duration::from_secs(10)).build() else {
            return 0;
        };
        let mut retries = 0u64;
        let mut i = 0u64;
        while !s.load(Ordering::Relaxed) {
            let body = json!({"api_key": key, "event": event, "distinct_id": format!("steady-{}", i % 17), "properties": {"i": i}});
            match http.post(format!("{base}/capture")).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    a.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                _ => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        retries
    });
    (stop, acked, handle)
}

async fn wait_count(
    ep: &Endpoints,
    token: &str,
    project: i64,
    event: &str,
    want: u64,
    timeout: Duration,
) -> Result<()> {
    let last = AtomicU64::new(0);
    let r = wait_until(&format!("{want} {event} events in the query API"), timeout, || async {
        let n = ep.count(token, project, event).await.unwrap_or(0);
        last.store(n, Ordering::Relaxed);
        n >= want
    })
    .await;
    let got = ep.count(token, project, event).await.unwrap_or(last.load(Ordering::Relaxed));
    r.map_err(|e| anyhow!("{e} (last count {got})"))?;
    if got != want {
        bail!("{event}: {got} events visible, {want} sent (duplicates?)");
    }
    Ok(())
}

fn platform_manifest(
    refs: &BTreeMap<&str, String>,
    class: Option<&str>,
    consumer_replicas: i32,
    partitions: i32,
    capture_image: &str,
) -> Value {
    let small = json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}});
    let mut ingress = json!({"host": HOST});
    if let Some(c) = class {
        ingress["className"] = json!(c);
    }
    json!({
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "AnalyticsPlatform",
        "metadata": {"name": PLATFORM, "namespace": NAMESPACE},
        "spec": {
            "deletionPolicy": "Delete",
            "capture": {"replicas": 1, "image": capture_image, "resources": small},
            "consumer": {"replicas": consumer_replicas, "resources": small},
            "query": {"replicas": 1, "resources": small},
            "auth": {"replicas": 1, "resources": small},
            "kafka": {"managed": {"image": refs["kafka"], "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}},
                      "topic": {"partitions": partitions}},
            // The node's disk is this machine's, shared with the builds (often under 15 % free).
            "clickhouse": {"managed": {"image": refs["clickhouse"], "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "3Gi"}}},
                           "minFreeDiskPercent": 1},
            "postgres": {"managed": {"image": refs["postgres"], "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}}},
            "ingress": ingress
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_runs_on_a_kind_cluster() {
    if std::env::var("CAIRN_E2E_CLUSTER").as_deref() == Ok("skip") {
        eprintln!("CAIRN_E2E_CLUSTER=skip: the Kubernetes end-to-end test does not run");
        return;
    }
    let mut t = Timings { start: Instant::now(), lines: Vec::new() };

    // The SDKs' tools (Chromium, npm packages, the Python environment) and the web SDK's bundle.
    run("stack/sdks.sh install", script("sdks.sh").args(["install", "chromium", "web", "python"])).unwrap();
    run(
        "web SDK build",
        Command::new("npm").args(["run", "build", "--silent"]).current_dir(repo_root().join("sdks/web")),
    )
    .unwrap();

    let t0 = Instant::now();
    // The debug build's binaries, which `make test` has built already (CAIRN_IMAGES_PROFILE=release
    // tests release images instead, after a release build).
    let profile = std::env::var("CAIRN_IMAGES_PROFILE").unwrap_or_else(|_| "dev".to_string());
    run("stack/images.sh build", script("images.sh").arg("build").env("CAIRN_IMAGES_PROFILE", &profile)).unwrap();
    t.mark(&format!("images built ({profile} binaries)"), t0);

    let t0 = Instant::now();
    let cluster = Cluster::up().unwrap();
    t.mark("cluster up", t0);

    let result = scenario(&cluster, &mut t).await;
    if let Err(e) = &result {
        eprintln!("✗ {e:#}");
        cluster.keep_logs(&test_stack_dir().join("kubernetes-logs"));
    }
    // Best effort: leave no platform behind for the next run (the cluster itself is deleted below).
    let _ = cluster.kubectl(&["delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false"]);
    if std::env::var("CAIRN_E2E_KEEP_CLUSTER").is_err() {
        let stop = run("stack/kind.sh stop", script("kind.sh").arg("stop"));
        if let Err(e) = stop {
            eprintln!("{e}");
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "timings:\n  {}\n  total: {:.1} s",
        t.lines.join("\n  "),
        t.start.elapsed().as_secs_f64()
    );
    result.unwrap();
}

async fn scenario(cluster: &Cluster, t: &mut Timings) -> Result<()> {
    let names = ["capture", "consumer", "query", "auth", "operator", "kafka", "postgres", "clickhouse"];
    let mut refs = BTreeMap::new();
    let mut archives = Vec::new();
    for n in names {
        refs.insert(n, image_ref(n)?);
        archives.push(PathBuf::from(run("stack/images.sh archive", script("images.sh").args(["archive", n]))?.trim()));
    }
    let t0 = Instant::now();
    cluster.load(&archives)?;
    t.mark("images imported into the node", t0);

    // helm install: the CRD is established and the operator Ready.
    let t0 = Instant::now();
    let chart = repo_root().join("charts/cairn-operator").display().to_string();
    let operator = &refs["operator"];
    let (repo, tag) = operator.rsplit_once(':').ok_or_else(|| anyhow!("bad image {operator}"))?;
    let _ = cluster.helm(&["uninstall", "cairn-operator", "--namespace", "cairn-system", "--wait"]);
    cluster.helm(&[
        "install",
        "cairn-operator",
        &chart,
        "--namespace",
        "cairn-system",
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
        "--set",
        &format!("image.repository={repo}"),
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        "image.pullPolicy=Never",
    ])?;
    cluster.kubectl(&["wait", "--for=condition=Established", "crd/analyticsplatforms.cairn.dev", "--timeout=60s"])?;
    let ready =
        cluster.jsonpath(&["-n", "cairn-system", "get", "deployment", "cairn-operator"], "{.status.readyReplicas}");
    if ready != "1" {
        bail!("the operator Deployment has {ready:?} ready replicas");
    }
    t.mark("helm install → operator Ready", t0);

    // kubectl apply the platform: every workload Running and Ready, status Ready.
    let t0 = Instant::now();
    cluster.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))?;
    let class = cluster.ingress_class.as_deref();
    cluster.apply(&platform_manifest(&refs, class, 1, 4, &refs["capture"]))?;
    wait_until("the platform to be Ready", Duration::from_secs(600), || async {
        cluster
            .platform()
            .map(|p| {
                p["status"]["phase"] == "Ready" && p["status"]["observedGeneration"] == p["metadata"]["generation"]
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| anyhow!("{e}: {}", cluster.platform().map(|p| p["status"].to_string()).unwrap_or_default()))?;
    for w in ["capture", "consumer", "query", "auth"] {
        let ready = cluster
            .jsonpath(&["-n", NAMESPACE, "get", "deployment", &format!("{PLATFORM}-{w}")], "{.status.readyReplicas}");
        if ready != "1" {
            bail!("{w}: {ready:?} ready replicas");
        }
    }
    for d in ["kafka", "clickhouse", "postgres"] {
        let ready = cluster
            .jsonpath(&["-n", NAMESPACE, "get", "statefulset", &format!("{PLATFORM}-{d}")], "{.status.readyReplicas}");
        if ready != "1" {
            bail!("managed {d}: {ready:?} ready replicas");
        }
    }
    // Query reads ClickHouse as its own read-only account (every analysis below goes through it).
    let account = format!("cairn_query.{NAMESPACE}.{PLATFORM}");
    let status_user =
        cluster.jsonpath(&["-n", NAMESPACE, "get", "analyticsplatform", PLATFORM], "{.status.clickhouse.queryUser}");
    let env_user = cluster.jsonpath(
        &["-n", NAMESPACE, "get", "deployment", &format!("{PLATFORM}-query")],
        "{.spec.template.spec.containers[0].env[?(@.name==\"CAIRN_CLICKHOUSE_USER\")].value}",
    );
    if status_user != account || env_user != account {
        bail!("query's ClickHouse account: status says {status_user:?}, the Deployment {env_user:?}, want {account:?}");
    }
    t.mark("kubectl apply → platform Ready", t0);

    // Through the Ingress: sign up, then both SDKs send, then the query API counts them.
    let ep = Endpoints {
        base: format!("http://{HOST}:{}", cluster.ingress.rsplit(':').next().unwrap_or("80")),
        ingress: cluster.ingress.clone(),
    };
    // The controller programs routes a moment after the Ingress and the endpoints exist: until
    // then Traefik itself answers 404. The dashboard at / answering 200 means query is routed;
    // capture's paths are routed once /batch stops falling through to query's 404.
    wait_until("the Ingress to route to the platform", Duration::from_secs(90), || async {
        let query = ep.call("GET", "/", None, None).await.map(|(status, _)| status == 200).unwrap_or(false);
        let capture =
            ep.call("POST", "/batch", None, Some(&json!({}))).await.map(|(status, _)| status != 404).unwrap_or(false);
        query && capture
    })
    .await?;
    let (status, body) = ep
        .call(
            "POST",
            "/api/v1/signup",
            None,
            Some(&json!({"email": "e2e@cairn.test", "password": "correct horse battery staple 42"})),
        )
        .await?;
    if status != 201 {
        bail!("signup through the ingress answered {status}: {body}");
    }
    let token = body["access_token"].as_str().ok_or_else(|| anyhow!("no token: {body}"))?.to_string();
    let project = body["project"]["id"].as_i64().ok_or_else(|| anyhow!("no project: {body}"))?;
    let key = body["write_key"]["key"].as_str().ok_or_else(|| anyhow!("no write key: {body}"))?.to_string();

    let t0 = Instant::now();
    println!("{}", send_with_sdk("python", &ep, &key, "e2e_python", 30)?.trim());
    wait_count(&ep, &token, project, "e2e_python", 30, Duration::from_secs(120)).await?;
    t.mark("first events (Python SDK) visible through the query API", t0);
    let t0 = Instant::now();
    println!("{}", send_with_sdk("web", &ep, &key, "e2e_web", 25)?.trim());
    wait_count(&ep, &token, project, "e2e_web", 25, Duration::from_secs(120)).await?;
    t.mark("web SDK events (Chromium) visible", t0);

    // The platform's NetworkPolicies, enforced on the node (kube-router): everything above
    // crossed only allowed paths; from a pod outside the platform, capture and query answer, and
    // auth (its internal API) and the managed dependencies do not.
    if let Some(image) = &cluster.probe_image {
        let t0 = Instant::now();
        let reached = probe_from_outside(cluster, image).await?;
        let expect = [
            ("capture", true),
            ("query", true),
            ("auth", false),
            ("kafka", false),
            ("clickhouse", false),
            ("postgres", false),
        ];
        for (target, open) in expect {
            if reached.get(target) != Some(&open) {
                bail!(
                    "network policy: {target} reachable={:?} from outside, expected {open} ({reached:?})",
                    reached.get(target)
                );
            }
        }
        t.mark("network policies enforced (probed from outside)", t0);
    }

    // Scale: consumer 1 → 2, partitions 4 → 6; reflected in the Deployment and in Kafka.
    let t0 = Instant::now();
    cluster.apply(&platform_manifest(&refs, class, 2, 6, &refs["capture"]))?;
    wait_until("the consumer to have 2 ready replicas", Duration::from_secs(180), || async {
        cluster.jsonpath(
            &["-n", NAMESPACE, "get", "deployment", &format!("{PLATFORM}-consumer")],
            "{.status.readyReplicas}",
        ) == "2"
    })
    .await?;
    let topic = cluster.platform()?["spec"]["kafka"]["topic"]["name"].as_str().unwrap_or("cairn_events").to_string();
    wait_until("the topic to have 6 partitions in Kafka", Duration::from_secs(120), || async {
        cluster
            .kubectl(&[
                "-n",
                NAMESPACE,
                "exec",
                &format!("{PLATFORM}-kafka-0"),
                "--",
                "java",
                "-cp",
                "/opt/kafka/libs/*",
                "org.apache.kafka.tools.TopicCommand",
                "--bootstrap-server",
                "localhost:9092",
                "--describe",
                "--topic",
                &topic,
            ])
            .map(|out| out.contains("PartitionCount: 6"))
            .unwrap_or(false)
    })
    .await?;
    t.mark("consumer 1→2 and partitions 4→6 applied", t0);

    // A consumer pod deleted while events flow: nothing acknowledged is lost.
    let t0 = Instant::now();
    let (stop, acked, sender) = steady_sender(&ep, key.clone(), "e2e_steady".into());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = cluster.jsonpath(
        &["-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=consumer"],
        "{.items[0].metadata.name}",
    );
    cluster.kubectl(&["-n", NAMESPACE, "delete", "pod", &pod, "--wait=false"])?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let retries = sender.await?;
    let sent = acked.load(Ordering::Relaxed);
    println!("steady sender: {sent} events acknowledged ({retries} refused and retried) while consumer pod {pod} was deleted");
    wait_count(&ep, &token, project, "e2e_steady", sent, Duration::from_secs(180)).await?;
    t.mark("consumer pod deleted mid-stream: every event arrived", t0);

    // A new capture image: a rolling update, and every event sent during it arrives.
    let t0 = Instant::now();
    let rollout =
        PathBuf::from(run("stack/images.sh tag", script("images.sh").args(["tag", "capture", "e2e-rollout"]))?.trim());
    cluster.load(&[rollout])?;
    let new_image = format!("{}:e2e-rollout", refs["capture"].rsplit_once(':').map(|(r, _)| r).unwrap_or_default());
    let (stop, acked, sender) = steady_sender(&ep, key.clone(), "e2e_rollout".into());
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.apply(&platform_manifest(&refs, class, 2, 6, &new_image))?;
    cluster.kubectl(&[
        "-n",
        NAMESPACE,
        "rollout",
        "status",
        &format!("deployment/{PLATFORM}-capture"),
        "--timeout=180s",
    ])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let retries = sender.await?;
    let sent = acked.load(Ordering::Relaxed);
    let image = cluster.jsonpath(
        &["-n", NAMESPACE, "get", "deployment", &format!("{PLATFORM}-capture")],
        "{.spec.template.spec.containers[0].image}",
    );
    if image != new_image {
        bail!("capture runs {image}, not {new_image}");
    }
    println!("rolling update: {sent} events acknowledged during it ({retries} refused and retried)");
    wait_count(&ep, &token, project, "e2e_rollout", sent, Duration::from_secs(180)).await?;
    t.mark("rolling update of capture with every event delivered", t0);

    // The heartbeat: healthy at rest; with the consumers at 0 (every Deployment still Ready) the
    // platform says events are not arriving within 3 minutes; healthy again once they return.
    let t0 = Instant::now();
    let data_path = |cluster: &Cluster| {
        let status = cluster.platform().map(|p| p["status"].clone()).unwrap_or_default();
        let healthy = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "DataPathHealthy"))
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        (healthy, status["freshnessSeconds"].as_i64(), status["phase"].as_str().unwrap_or_default().to_string())
    };
    wait_until("DataPathHealthy=True", Duration::from_secs(180), || async { data_path(cluster).0 == "True" }).await?;
    let (_, at_rest, _) = data_path(cluster);
    println!("heartbeat freshness at rest: {at_rest:?} s");
    t.mark("the heartbeat reached ClickHouse", t0);

    // The heartbeat's figures: freshness and latency (sent → stored in ClickHouse) sampled for
    // 90 s at rest here, and later for 90 s under a load of 1,000-event batches.
    // One sample: the freshness, and the newest heartbeat (its send time and latency).
    let sample = |cluster: &Cluster| {
        let status = cluster.platform().map(|p| p["status"].clone()).unwrap_or_default();
        let dp = &status["dataPath"];
        let newest = dp["lastArrivedTime"].as_str().zip(dp["latencyMs"].as_i64()).map(|(t, l)| (t.to_string(), l));
        (status["freshnessSeconds"].as_i64(), newest)
    };
    type Sample = (Option<i64>, Option<(String, i64)>);
    async fn observe(cluster: &Cluster, sample: &dyn Fn(&Cluster) -> Sample) -> (Vec<i64>, Vec<i64>) {
        let (mut fresh, mut heartbeats) = (Vec::new(), BTreeMap::new());
        let end = Instant::now() + Duration::from_secs(90);
        while Instant::now() < end {
            let (f, newest) = sample(cluster);
            fresh.extend(f);
            if let Some((sent, latency)) = newest {
                heartbeats.insert(sent, latency);
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        fresh.sort_unstable();
        let mut latency: Vec<i64> = heartbeats.into_values().collect();
        latency.sort_unstable();
        (fresh, latency)
    }
    let figures = |(f, l): &(Vec<i64>, Vec<i64>)| {
        format!(
            "freshness median {:?} s, max {:?} s; latency of the {} heartbeats seen: {l:?} ms",
            f.get(f.len() / 2),
            f.last(),
            l.len()
        )
    };
    let t0 = Instant::now();
    let rest = observe(cluster, &sample).await;
    println!("heartbeat at rest: {}", figures(&rest));
    if rest.1.len() < 2 {
        bail!("only {} heartbeats arrived in 90 s at rest (one every 30 s expected)", rest.1.len());
    }
    t.mark("heartbeat figures at rest", t0);
    let t0 = Instant::now();
    cluster.apply(&platform_manifest(&refs, class, 0, 6, &new_image))?;
    wait_until("DataPathHealthy=False with the consumers at 0", Duration::from_secs(180), || async {
        data_path(cluster).0 == "False"
    })
    .await?;
    let (_, stale, phase) = data_path(cluster);
    println!(
        "consumers at 0: DataPathHealthy=False after {:.0} s, freshness {stale:?} s, phase {phase}",
        t0.elapsed().as_secs_f64()
    );
    if phase != "Degraded" || stale.is_none_or(|f| f < 120) {
        bail!("with the consumers at 0 the platform is {phase} with freshness {stale:?}");
    }
    t.mark("consumers at 0: the data path reported unhealthy", t0);

    // A surge while nobody consumes: 60,000 events through the Ingress. Then the consumer scales
    // by its lag (10,000 per replica, at most 6 = the partitions): the operator scales it out,
    // the real consumers drain the backlog, and the data path is healthy again.
    let t0 = Instant::now();
    let surge = 60_000usize;
    let http =
        reqwest::Client::builder().resolve(HOST, ep.ingress.parse()?).timeout(Duration::from_secs(60)).build()?;
    for b in 0..surge / 1_000 {
        let batch: Vec<Value> = (0..1_000)
            .map(|i| json!({"event": "e2e_surge", "distinct_id": format!("surge-{}", (b * 1_000 + i) % 997), "properties": {"i": b * 1_000 + i}}))
            .collect();
        let body = json!({"api_key": key, "batch": batch});
        let r = http.post(format!("{}/batch", ep.base)).json(&body).send().await?;
        if !r.status().is_success() {
            bail!("the surge's batch {b} was refused: {}", r.status());
        }
    }
    t.mark("60,000 events captured while no consumer runs", t0);
    let t0 = Instant::now();
    let mut scaled = platform_manifest(&refs, class, 1, 6, &new_image);
    scaled["spec"]["consumer"] = json!({
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 6, "targetLagPerReplica": 10000}
    });
    cluster.apply(&scaled)?;
    let lag = |cluster: &Cluster| {
        cluster.platform().ok().and_then(|p| p["status"]["consumerAutoscaling"]["lagRecords"].as_i64())
    };
    wait_until("6 ready consumers for the surge", Duration::from_secs(180), || async {
        cluster.jsonpath(
            &["-n", NAMESPACE, "get", "deployment", &format!("{PLATFORM}-consumer")],
            "{.status.readyReplicas}",
        ) == "6"
    })
    .await?;
    let scaled_out = t0.elapsed();
    wait_until("the surge drained (lag 0)", Duration::from_secs(300), || async { lag(cluster) == Some(0) }).await?;
    let drained = t0.elapsed();
    println!(
        "lag surge of {surge} events: consumers 0 → 6 ready after {:.0} s, backlog drained (lag 0 in status) after {:.0} s",
        scaled_out.as_secs_f64(),
        drained.as_secs_f64()
    );
    t.mark("lag surge: consumers scaled out by the operator and the backlog drained", t0);
    wait_count(&ep, &token, project, "e2e_surge", surge as u64, Duration::from_secs(180)).await?;
    let t0 = Instant::now();
    wait_until("DataPathHealthy=True again", Duration::from_secs(180), || async {
        let (healthy, _, phase) = data_path(cluster);
        healthy == "True" && phase == "Ready"
    })
    .await?;
    println!("consumers back: healthy and Ready, freshness {:?} s", data_path(cluster).1);
    t.mark("consumers back: the data path healthy again", t0);

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let loaded = Arc::new(AtomicU64::new(0));
    let mut loaders = Vec::new();
    for w in 0..2u64 {
        let (stop, loaded, http, base, key) =
            (stop.clone(), loaded.clone(), http.clone(), ep.base.clone(), key.clone());
        loaders.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Value> = (0..1_000u64)
                    .map(|i| json!({"event": "e2e_load", "distinct_id": format!("load-{w}-{}", (n + i) % 991), "properties": {"i": n + i}}))
                    .collect();
                match http.post(format!("{base}/batch")).json(&json!({"api_key": key, "batch": batch})).send().await {
                    Ok(r) if r.status().is_success() => {
                        loaded.fetch_add(1_000, Ordering::Relaxed);
                        n += 1_000;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }));
    }
    let load = observe(cluster, &sample).await;
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.await?;
    }
    let sent = loaded.load(Ordering::Relaxed);
    println!(
        "heartbeat under load ({sent} events in 90 s, {:.0}/s through the Ingress): {}",
        sent as f64 / 90.0,
        figures(&load)
    );
    wait_count(&ep, &token, project, "e2e_load", sent, Duration::from_secs(300)).await?;
    t.mark("heartbeat figures under load; every loaded event arrived", t0);

    // Delete the platform: children gone. Its finalizer's cleanup has nothing outside the
    // cluster's garbage collection to remove (every dependency is managed), so deleting never
    // waits on a broker that is being deleted too.
    let t0 = Instant::now();
    let finalizers = cluster.platform()?["metadata"]["finalizers"].clone();
    if finalizers != json!(["cairn.dev/cleanup"]) {
        bail!("the platform's finalizers are {finalizers}");
    }
    cluster.kubectl(&["-n", NAMESPACE, "delete", "analyticsplatform", PLATFORM, "--timeout=300s"])?;
    wait_until("the platform's children to be gone", Duration::from_secs(300), || async {
        cluster
            .kubectl(&[
                "-n",
                NAMESPACE,
                "get",
                "deployments,statefulsets,services,ingresses,configmaps",
                "-l",
                &format!("app.kubernetes.io/instance={PLATFORM}"),
                "-o",
                "name",
            ])
            .map(|s| s.trim().is_empty())
            .unwrap_or(false)
    })
    .await?;
    if cluster.kubectl(&["-n", NAMESPACE, "get", "analyticsplatform", PLATFORM]).is_ok() {
        bail!("the platform is still there after kubectl delete returned");
    }
    t.mark("platform deleted, children gone", t0);
    Ok(())
}
