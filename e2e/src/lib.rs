//! Test harness for Cairn's integration and end-to-end tests.
//!
//! Everything here is real: Kafka brokers and ClickHouse servers are started through the same
//! stack scripts that `make up` uses (`stack/kafka.sh`, `stack/clickhouse.sh`), and Cairn's
//! services are its own binaries, started as processes and stopped with real signals.
//!
//! - [`TestKafka::shared`] / [`TestClickHouse::shared`]: one broker and one server for the whole
//!   test run (on ports of their own, beside any `make up` stack), started on first use. Tests
//!   isolate themselves with a topic, consumer group and database of their own.
//! - [`TestKafka::dedicated`] / [`TestClickHouse::dedicated`]: a private instance for a test that
//!   stops and starts it; removed when dropped.
//! - [`TestPostgres::shared`]: one PostgreSQL cluster; each test creates a database of its own.
//! - [`Service`]: a running Cairn service (`cairn-capture`, `cairn-consumer`, `cairn-auth`,
//!   `cairn-query`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The directory of the binaries built alongside the tests (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CAIRN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // A test executable lives in target/<profile>/deps/, a binary in target/<profile>/.
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

/// Where test instances keep their state.
pub fn test_stack_dir() -> PathBuf {
    std::env::var("CAIRN_TEST_STACK_DIR").map(PathBuf::from).unwrap_or_else(|_| repo_root().join(".stack/test"))
}

/// Where the stack scripts install tools (`CAIRN_TOOLS_DIR`, as in stack/lib.sh).
pub fn tools_dir() -> PathBuf {
    std::env::var("CAIRN_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|_| repo_root().join(".stack/tools"))
}

/// A port that is free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A name unique to this test process and call, for topics, databases and groups.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::new_v4().simple().to_string().get(..6).unwrap_or("x")
    )
}

fn run_script(script: &str, action: &str, env: &[(&str, String)]) -> Result<()> {
    let out = Command::new("bash")
        .arg(repo_root().join("stack").join(script))
        .arg(action)
        .env("CAIRN_STACK_DIR", test_stack_dir())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running stack/{script} {action}"))?;
    if !out.status.success() {
        bail!("stack/{script} {action} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The test run's S3-compatible object store (`stack/s3proxy.sh`, port 28900): objects are files
/// under `dir/data/<bucket>/<key>`.
pub struct TestS3 {
    pub port: u16,
    pub dir: PathBuf,
}

impl TestS3 {
    pub const IDENTITY: &'static str = "cairn-test";
    pub const SECRET: &'static str = "cairn-test-secret";

    /// The shared instance, started if it is not running.
    pub fn shared() -> Result<Self> {
        let s = Self { port: 28900, dir: test_stack_dir().join("s3proxy") };
        run_script(
            "s3proxy.sh",
            "start",
            &[("S3PROXY_INSTANCE_DIR", s.dir.display().to_string()), ("S3PROXY_PORT", s.port.to_string())],
        )?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Makes a bucket (a directory of the store).
    pub fn bucket(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir.join("data").join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// A Kafka broker started by `stack/kafka.sh`.
pub struct TestKafka {
    pub port: u16,
    pub controller_port: u16,
    pub dir: PathBuf,
    dedicated: bool,
    /// The settings of a quorum member ([`TestKafkaQuorum`]); empty for a single node.
    quorum_env: Vec<(&'static str, String)>,
}

impl TestKafka {
    /// The test run's shared broker (port 29092), started if it is not running.
    pub fn shared() -> Result<Self> {
        let k = Self {
            port: 29092,
            controller_port: 29093,
            dir: test_stack_dir().join("kafka"),
            dedicated: false,
            quorum_env: Vec::new(),
        };
        k.start()?;
        Ok(k)
    }

    /// A private broker on free ports, stopped and removed when dropped.
    pub fn dedicated(name: &str) -> Result<Self> {
        let k = Self {
            port: free_port(),
            controller_port: free_port(),
            dir: test_stack_dir().join(unique(&format!("kafka_{name}"))),
            dedicated: true,
            quorum_env: Vec::new(),
        };
        k.start()?;
        Ok(k)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn env(&self, extra: Option<(&'static str, String)>) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("KAFKA_INSTANCE_DIR", self.dir.display().to_string()),
            ("CAIRN_KAFKA_PORT", self.port.to_string()),
            ("CAIRN_KAFKA_CONTROLLER_PORT", self.controller_port.to_string()),
        ];
        env.extend(self.quorum_env.iter().cloned());
        env.extend(extra);
        env
    }

    pub fn start(&self) -> Result<()> {
        run_script("kafka.sh", "start", &self.env(None))
    }

    /// Stops the broker gracefully.
    pub fn stop(&self) -> Result<()> {
        run_script("kafka.sh", "stop", &self.env(None))
    }

    /// Kills the broker with SIGKILL.
    pub fn kill(&self) -> Result<()> {
        run_script("kafka.sh", "stop", &self.env(Some(("KAFKA_STOP_SIGNAL", "KILL".into()))))
    }
}

impl Drop for TestKafka {
    fn drop(&mut self) {
        if self.dedicated {
            let _ = self.kill();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A Kafka cluster of `n` combined broker-controllers (KRaft, a static voter set) on free ports:
/// Kafka's own topics and new topics get a replication factor of `min(n, 3)` and
/// `min.insync.replicas` one less; each broker is in a rack of its own (`rack-<id>`). Stopped and
/// removed when dropped.
pub struct TestKafkaQuorum {
    pub nodes: Vec<TestKafka>,
    base: PathBuf,
}

impl Drop for TestKafkaQuorum {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

impl TestKafkaQuorum {
    pub fn dedicated(name: &str, n: usize) -> Result<Self> {
        use base64::Engine;
        let cluster_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let base = test_stack_dir().join(unique(&format!("kafka_quorum_{name}")));
        let nodes: Vec<TestKafka> = ports
            .iter()
            .enumerate()
            .map(|(i, (port, controller_port))| TestKafka {
                port: *port,
                controller_port: *controller_port,
                dir: base.join(format!("node{}", i + 1)),
                dedicated: true,
                quorum_env: vec![
                    ("KAFKA_NODE_ID", (i + 1).to_string()),
                    ("KAFKA_QUORUM_VOTERS", voters.clone()),
                    ("KAFKA_CLUSTER_ID", cluster_id.clone()),
                    ("KAFKA_REPLICATION", n.min(3).to_string()),
                    ("KAFKA_RACK", format!("rack-{}", i + 1)),
                    // A killed broker's partitions move to the others within ~3 s (Kafka's default
                    // is 9 s), and three brokers share this machine's memory.
                    ("KAFKA_SESSION_TIMEOUT_MS", "3000".into()),
                    ("KAFKA_HEAP", "-Xmx768m -Xms768m".into()),
                ],
            })
            .collect();
        let q = Self { nodes, base };
        // Started together: a node's broker waits for a quorum of controllers.
        std::thread::scope(|s| {
            let started: Vec<_> = q.nodes.iter().map(|k| s.spawn(|| k.start())).collect();
            started.into_iter().try_for_each(|h| h.join().map_err(|_| anyhow!("starting a broker panicked"))?)
        })?;
        q.wait_for_brokers(n, Duration::from_secs(90))?;
        Ok(q)
    }

    /// Every broker's address, as clients bootstrap from.
    pub fn brokers(&self) -> String {
        self.nodes.iter().map(TestKafka::brokers).collect::<Vec<_>>().join(",")
    }

    /// Waits until the cluster's metadata lists `n` brokers.
    pub fn wait_for_brokers(&self, n: usize, timeout: Duration) -> Result<()> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let client: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", self.brokers()).create()?;
        let deadline = Instant::now() + timeout;
        loop {
            let seen = client.fetch_metadata(None, Duration::from_secs(5)).map(|m| m.brokers().len()).unwrap_or(0);
            if seen >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{seen} of {n} brokers in the cluster's metadata after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// For each partition of `topic`: (replicas, in-sync replicas).
    pub fn replicas(&self, topic: &str) -> Result<Vec<(usize, usize)>> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let client: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", self.brokers()).create()?;
        let md = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| anyhow!("no topic {topic}"))?;
        Ok(t.partitions().iter().map(|p| (p.replicas().len(), p.isr().len())).collect())
    }
}

/// A ClickHouse HTTP interface started by `stack/clickhouse.sh`.
pub struct TestClickHouse {
    pub port: u16,
    pub dir: PathBuf,
    dedicated: bool,
}

impl TestClickHouse {
    /// The test run's shared server (port 28123), started if it is not running.
    pub fn shared() -> Result<Self> {
        let c = Self { port: 28123, dir: test_stack_dir().join("clickhouse"), dedicated: false };
        c.start()?;
        Ok(c)
    }

    /// A private server on a free port, stopped and removed when dropped.
    pub fn dedicated(name: &str) -> Result<Self> {
        let c = Self {
            port: free_port(),
            dir: test_stack_dir().join(unique(&format!("clickhouse_{name}"))),
            dedicated: true,
        };
        c.start()?;
        Ok(c)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How Cairn's code reaches `database` on this server (the default account, no compression).
    pub fn config(&self, database: &str) -> cairn_common::config::ClickHouseConfig {
        cairn_common::config::ClickHouseConfig {
            url: self.url(),
            database: database.to_string(),
            user: "default".into(),
            password: None,
            lz4: false,
            event_ttl_days: 0,
            cluster: None,
        }
    }

    fn env(&self, signal: Option<&str>) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("CLICKHOUSE_INSTANCE_DIR", self.dir.display().to_string()),
            ("CAIRN_CLICKHOUSE_PORT", self.port.to_string()),
        ];
        if let Some(s) = signal {
            env.push(("CLICKHOUSE_STOP_SIGNAL", s.to_string()));
        }
        env
    }

    pub fn start(&self) -> Result<()> {
        run_script("clickhouse.sh", "start", &self.env(None))
    }

    pub fn stop(&self) -> Result<()> {
        run_script("clickhouse.sh", "stop", &self.env(None))
    }

    pub fn kill(&self) -> Result<()> {
        run_script("clickhouse.sh", "stop", &self.env(Some("KILL")))
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the server's process: `STOP` freezes it with its
    /// sockets open, so connections are accepted by the kernel and never answered.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = std::fs::read_to_string(self.dir.join("chserver.pid")).context("the ClickHouse pid file")?;
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.trim()).status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", pid.trim());
        Ok(())
    }

    /// A client for one database of this server.
    pub fn db(&self, database: &str) -> ChQuery {
        ChQuery { url: self.url(), database: database.to_string(), http: reqwest::Client::new() }
    }
}

impl Drop for TestClickHouse {
    fn drop(&mut self) {
        if self.dedicated {
            let _ = self.kill();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The test run's PostgreSQL cluster (port 25432), started by `stack/postgres.sh` on first use.
/// Tests isolate themselves with a database of their own ([`TestPostgres::fresh_database`]).
pub struct TestPostgres {
    pub port: u16,
    pub dir: PathBuf,
}

impl TestPostgres {
    pub fn shared() -> Result<Self> {
        let p = Self { port: 25432, dir: test_stack_dir().join("postgres") };
        run_script("postgres.sh", "start", &p.env())?;
        Ok(p)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("POSTGRES_INSTANCE_DIR", self.dir.display().to_string()), ("CAIRN_PG_PORT", self.port.to_string())]
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database with a unique name and returns its URL.
    pub async fn fresh_database(&self, prefix: &str) -> Result<String> {
        use sqlx::Connection;
        let name = unique(prefix).to_ascii_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres")).await.context("connecting to postgres")?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await?;
        conn.close().await?;
        Ok(self.url(&name))
    }
}

/// Plain SQL over ClickHouse's HTTP interface, for assertions.
#[derive(Clone)]
pub struct ChQuery {
    pub url: String,
    pub database: String,
    http: reqwest::Client,
}

impl ChQuery {
    /// Inserts `rows` (JSON objects) into `table` with `FORMAT JSONEachRow`.
    pub async fn insert_json(&self, table: &str, rows: &[Value]) -> Result<()> {
        let mut body = String::new();
        for r in rows {
            body.push_str(&r.to_string());
            body.push('\n');
        }
        let resp = self
            .http
            .post(&self.url)
            .query(&[
                ("database", self.database.as_str()),
                ("query", &format!("INSERT INTO {table} FORMAT JSONEachRow")),
            ])
            .body(body)
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            bail!("ClickHouse answered {status}: {}", resp.text().await?);
        }
        Ok(())
    }

    /// Runs `sql` and returns its rows (JSONEachRow).
    pub async fn rows(&self, sql: &str) -> Result<Vec<Value>> {
        let resp = self
            .http
            .post(&self.url)
            .query(&[("database", self.database.as_str()), ("default_format", "JSONEachRow")])
            .body(sql.to_string())
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("ClickHouse answered {status}: {text}");
        }
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| Ok(serde_json::from_str(l)?)).collect()
    }

    /// The first column of the first row, as a u64 (for `SELECT count() ...`).
    pub async fn scalar(&self, sql: &str) -> Result<u64> {
        let rows = self.rows(sql).await?;
        let v = rows
            .first()
            .and_then(|r| r.as_object())
            .and_then(|o| o.values().next())
            .ok_or_else(|| anyhow!("no rows from {sql}"))?;
        match v {
            Value::Number(n) => n.as_u64().ok_or_else(|| anyhow!("not a u64: {n}")),
            Value::String(s) => Ok(s.parse()?),
            other => bail!("not a number: {other}"),
        }
    }
}

/// Waits until every acknowledged uuid (`acked`) is in ClickHouse's `events`, then asserts each
/// is there exactly once as queries see it (FINAL) and nothing else is — except the events of
/// requests that were refused (`refused`): a 503 means "not known to be durable", and some of
/// its events may have been stored. Returns the rows stored before merging, copies included.
pub async fn assert_exactly_once_allowing(
    db: &ChQuery,
    acked: &std::collections::HashSet<uuid::Uuid>,
    refused: &std::collections::HashSet<uuid::Uuid>,
    timeout: Duration,
) -> u64 {
    use std::collections::HashSet;
    let want = acked.len() as u64;
    let waited = wait_until("every acknowledged event in ClickHouse", timeout, || {
        let db = db.clone();
        async move { db.scalar("SELECT uniqExact(uuid) FROM events").await.unwrap_or(0) >= want }
    })
    .await;
    let stored = db.rows("SELECT toString(uuid) AS u FROM events FINAL").await.expect("reading the stored events");
    let stored: Vec<uuid::Uuid> =
        stored.iter().map(|r| r["u"].as_str().and_then(|u| uuid::Uuid::parse_str(u).ok()).expect("a uuid")).collect();
    let stored_set: HashSet<uuid::Uuid> = stored.iter().copied().collect();
    let missing = acked.difference(&stored_set).count();
    if let Err(e) = waited {
        panic!("{e}: {missing} of {want} acknowledged events missing");
    }
    assert_eq!(missing, 0, "acknowledged events missing");
    assert_eq!(stored.len(), stored_set.len(), "duplicates visible to queries (reading with FINAL)");
    let unexpected = stored_set.iter().filter(|u| !acked.contains(u) && !refused.contains(u)).count();
    assert_eq!(unexpected, 0, "rows that no request sent");
    db.scalar("SELECT count() FROM events").await.expect("counting the stored rows")
}

/// Polls `check` every 200 ms until it returns true, or fails after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A running Cairn service binary.
pub struct Service {
    pub name: &'static str,
    pub addr: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// Starts `cairn-<name>` with `env`, listening on a free port, and waits for `/healthz`.
    pub async fn start(name: &'static str, env: &HashMap<String, String>) -> Result<Self> {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let addr_var = format!("CAIRN_{}_ADDR", name.to_ascii_uppercase());
        let logs = test_stack_dir().join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{}.log", unique(name)));
        let file = std::fs::File::create(&log)?;
        let bin = bin_dir().join(format!("cairn-{name}"));
        let child = Command::new(&bin)
            // Defaults a test's `env` may override.
            .env("CAIRN_LOG_FORMAT", "text")
            .env("CAIRN_LOG", "info,cairn_consumer=debug,rdkafka=warn")
            .envs(env)
            .env(&addr_var, &addr)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {} (build it with cargo build --workspace)", bin.display()))?;
        let s = Self { name, addr, log, child: Some(child) };
        let http = reqwest::Client::new();
        let url = format!("http://{}/healthz", s.addr);
        wait_until(&format!("{name} /healthz"), Duration::from_secs(30), || {
            let http = http.clone();
            let url = url.clone();
            async move { http.get(&url).send().await.map(|r| r.status().is_success()).unwrap_or(false) }
        })
        .await
        .with_context(|| s.log_tail())?;
        Ok(s)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::new();
        let url = self.url("/readyz");
        wait_until(&format!("{} /readyz", self.name), timeout, || {
            let http = http.clone();
            let url = url.clone();
            async move { http.get(&url).send().await.map(|r| r.status().is_success()).unwrap_or(false) }
        })
        .await
        .with_context(|| self.log_tail())
    }

    /// The value of a Prometheus sample (`name{labels}` as printed), summed over matching lines.
    pub async fn metric(&self, prefix: &str) -> Result<f64> {
        let text = reqwest::get(self.url("/metrics")).await?.text().await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit; returns whether it exited cleanly.
    pub fn terminate(&mut self, timeout: Duration) -> Result<bool> {
        let Some(mut c) = self.child.take() else { return Ok(false) };
        // SAFETY: sending a signal to a child process we own.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("{} did not exit within {timeout:?} of SIGTERM\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the service's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} log ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The environment of a capture and consumer pair on one topic, group and database.
pub struct Pipeline {
    pub topic: String,
    pub database: String,
    pub group: String,
    pub env: HashMap<String, String>,
}

impl Pipeline {
    pub fn new(kafka: &TestKafka, clickhouse: &TestClickHouse, keys: &str) -> Self {
        Self::on_brokers(&kafka.brokers(), clickhouse, keys)
    }

    /// Like [`Pipeline::new`], on the brokers at `brokers` (a [`TestKafkaQuorum`]'s).
    pub fn on_brokers(brokers: &str, clickhouse: &TestClickHouse, keys: &str) -> Self {
        let topic = unique("events");
        let database = unique("e2e");
        let group = unique("group");
        let mut env = HashMap::new();
        env.insert("CAIRN_KAFKA_BROKERS".into(), brokers.to_string());
        env.insert("CAIRN_KAFKA_TOPIC".into(), topic.clone());
        env.insert("CAIRN_KAFKA_DEAD_LETTER_TOPIC".into(), format!("{topic}_dlq"));
        env.insert("CAIRN_KAFKA_TOPIC_PARTITIONS".into(), "4".into());
        env.insert("CAIRN_CLICKHOUSE_URL".into(), clickhouse.url());
        env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), database.clone());
        env.insert("CAIRN_CONSUMER_GROUP".into(), group.clone());
        env.insert("CAIRN_CAPTURE_API_KEYS".into(), keys.to_string());
        env.insert("CAIRN_CONSUMER_BATCH_MAX_AGE_MS".into(), "200".into());
        env.insert("CAIRN_CONSUMER_SESSION_TIMEOUT_MS".into(), "6000".into());
        env.insert("CAIRN_CONSUMER_RETRY_MAX_MS".into(), "1000".into());
        // Persons need PostgreSQL: tests that want them say where ([`Pipeline::persons`]).
        env.insert("CAIRN_CONSUMER_PERSONS".into(), "false".into());
        Self { topic, database, group, env }
    }

    /// Runs the consumer's persons pipeline against the PostgreSQL database at `url` (whose
    /// schema the caller applies, as auth and query do in a deployment).
    pub fn persons(&mut self, url: &str) -> &mut Self {
        self.set("CAIRN_CONSUMER_PERSONS", "true").set("CAIRN_POSTGRES_URL", url)
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.env.insert(key.to_string(), value.into());
        self
    }

    pub async fn capture(&self) -> Result<Service> {
        let s = Service::start("capture", &self.env).await?;
        s.wait_ready(Duration::from_secs(60)).await?;
        Ok(s)
    }

    pub async fn consumer(&self) -> Result<Service> {
        let s = Service::start("consumer", &self.env).await?;
        s.wait_ready(Duration::from_secs(60)).await?;
        Ok(s)
    }
}

/// Gzips bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// The high watermark (records ever written) of each partition of a topic.
pub fn topic_record_count(brokers: &str, topic: &str) -> Result<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", unique("probe")).create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let t = md.topics().first().ok_or_else(|| anyhow!("no metadata for {topic}"))?;
    let mut total = 0;
    for p in t.partitions() {
        let (low, high) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        total += high - low;
    }
    Ok(total)
}

/// A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kwok with one
/// fake node) started by `stack/kube.sh`.
pub struct TestKube {
    pub dir: PathBuf,
    external_kubeconfig: Option<PathBuf>,
}

impl TestKube {
    /// The test run's shared control plane (API server on 26443), started if it is not running;
    /// or, when `CAIRN_TEST_KUBECONFIG` names one, that cluster (a kind cluster, say).
    pub fn shared() -> Result<Self> {
        if let Ok(kc) = std::env::var("CAIRN_TEST_KUBECONFIG") {
            return Ok(Self { dir: PathBuf::new(), external_kubeconfig: Some(PathBuf::from(kc)) });
        }
        let k = Self { dir: test_stack_dir().join("kube"), external_kubeconfig: None };
        run_script("kube.sh", "start", &k.env())?;
        Ok(k)
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KUBE_INSTANCE_DIR", self.dir.display().to_string()),
            ("CAIRN_KUBE_ETCD_PORT", "22379".into()),
            ("CAIRN_KUBE_ETCD_PEER_PORT", "22380".into()),
            ("CAIRN_KUBE_APISERVER_PORT", "26443".into()),
            ("CAIRN_KUBE_KCM_PORT", "26257".into()),
            ("CAIRN_KUBE_SCHEDULER_PORT", "26259".into()),
            ("CAIRN_KUBE_KWOK_PORT", "26258".into()),
        ]
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.external_kubeconfig.clone().unwrap_or_else(|| self.dir.join("kubeconfig"))
    }

    /// The directory of kubectl and helm as `stack/kube.sh install` built them.
    pub fn tools_bin(&self) -> Result<PathBuf> {
        let out = Command::new("bash")
            .arg(repo_root().join("stack/kube.sh"))
            .arg("env")
            .env("CAIRN_STACK_DIR", test_stack_dir())
            .envs(self.env())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let path = text
            .lines()
            .find_map(|l| l.strip_prefix("PATH=").or_else(|| l.strip_prefix("export PATH=")))
            .ok_or_else(|| anyhow!("stack/kube.sh env printed no PATH"))?;
        let first = path.trim_matches('"').split(':').next().unwrap_or_default();
        Ok(PathBuf::from(first))
    }

    /// Runs kubectl against this control plane; returns stdout, or the error with stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let bin = self.tools_bin().map(|d| d.join("kubectl")).unwrap_or_else(|_| PathBuf::from("kubectl"));
        let bin = if bin.exists() { bin } else { PathBuf::from("kubectl") };
        let out = Command::new(bin).arg("--kubeconfig").arg(self.kubeconfig()).args(args).output()?;
        if !out.status.success() {
            bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A JSON HTTP call: the status and the body (`Value::Null` when empty or not JSON).
pub async fn call(method: &str, url: &str, bearer: Option<&str>, body: Option<&Value>) -> Result<(u16, Value)> {
    call_with(&reqwest::Client::new(), method, url, bearer, body).await
}

/// [`call`] with a client of the caller's (a resolver override for an Ingress host, say).
pub async fn call_with(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut req = http.request(method, url).timeout(Duration::from_secs(60));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A user signed up through the auth service: their tokens, organisation, first project and
/// its write key.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub user_id: i64,
    pub organization_id: i64,
    pub project_id: i64,
    pub write_key: String,
}

/// Signs a new user up at `auth` (a running `cairn-auth`).
pub async fn sign_up(auth: &Service, email: &str) -> Result<Account> {
    let password = "correct horse battery staple 42";
    let (status, body) = call(
        "POST",
        &auth.url("/api/v1/signup"),
        None,
        Some(&serde_json::json!({"email": email, "password": password})),
    )
    .await?;
    if status != 201 {
        bail!("signup answered {status}: {body}");
    }
    let text = |v: &Value| v.as_str().map(str::to_string).ok_or_else(|| anyhow!("signup answer lacks a field: {body}"));
    let id = |v: &Value| v.as_i64().ok_or_else(|| anyhow!("signup answer lacks an id: {body}"));
    Ok(Account {
        email: email.to_string(),
        password: password.to_string(),
        access_token: text(&body["access_token"])?,
        user_id: id(&body["user"]["id"])?,
        organization_id: id(&body["organization"]["id"])?,
        project_id: id(&body["project"]["id"])?,
        write_key: text(&body["write_key"]["key"])?,
    })
}
