//! What the query service's end-to-end tests share: the services (auth and query against the
//! shared PostgreSQL and ClickHouse, a fresh database each), two signed-up accounts, and fixture
//! events written straight into ClickHouse.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use cairn_e2e::{call, sign_up, unique, Account, ChQuery, Service, TestClickHouse, TestPostgres};
use serde_json::{json, Value};

pub const DAY: i64 = 86_400_000;
pub const HOUR: i64 = 3_600_000;
pub const MINUTE: i64 = 60_000;
pub const INTERNAL_TOKEN: &str = "test-internal-token-0123456789";

#[derive(Debug, Clone)]
pub struct Ev {
    pub project: i64,
    pub event: String,
    pub distinct_id: String,
    pub props: Value,
    pub ts: i64,
}

/// A deterministic pseudo-random sequence.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

pub struct Setup {
    #[allow(dead_code)]
    pub auth: Service,
    pub query: Service,
    pub a: Account,
    pub b: Account,
    pub ch: ChQuery,
    pub env: HashMap<String, String>,
    /// Midnight UTC, ten days ago: the fixtures' first day.
    pub base: i64,
}

pub fn day_text(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).expect("a valid time");
    format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day())
}

pub fn ch_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).expect("a valid time");
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        ms.rem_euclid(1000)
    )
}

pub async fn setup(query_env: &[(&str, &str)]) -> Result<Setup> {
    let pg = TestPostgres::shared()?;
    let pg_url = pg.fresh_database("query").await?;
    let clickhouse = TestClickHouse::shared()?;
    let database = unique("query");
    let ch_cfg = clickhouse.config(&database);
    cairn_common::clickhouse::migrate(&ch_cfg).await?;

    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), pg_url);
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), INTERNAL_TOKEN.into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), clickhouse.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), database.clone());
    for (k, v) in query_env {
        env.insert(k.to_string(), v.to_string());
    }
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;

    let a = sign_up(&auth, &format!("{}@a.example", unique("alice"))).await?;
    let b = sign_up(&auth, &format!("{}@b.example", unique("bob"))).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let base = now.div_euclid(DAY) * DAY - 10 * DAY;
    Ok(Setup { auth, query, a, b, ch: clickhouse.db(&database), env, base })
}

impl Setup {
    pub async fn insert(&self, events: &[Ev]) -> Result<()> {
        let rows: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({
                    "uuid": uuid::Uuid::new_v4().to_string(),
                    "project_id": e.project,
                    "event": e.event,
                    "distinct_id": e.distinct_id,
                    "properties": e.props.to_string(),
                    "timestamp": ch_time(e.ts),
                    "received_at": ch_time(e.ts),
                })
            })
            .collect();
        self.ch.insert_json("events", &rows).await
    }

    pub fn url(&self, project: i64, path: &str) -> String {
        self.query.url(&format!("/api/v1/projects/{project}{path}"))
    }

    pub async fn post(&self, project: i64, path: &str, body: Value) -> Result<(u16, Value)> {
        call("POST", &self.url(project, path), Some(&self.a.access_token), Some(&body)).await
    }

    pub async fn ok(&self, path: &str, body: Value) -> Result<Value> {
        let (status, v) = self.post(self.a.project_id, path, body.clone()).await?;
        if status != 200 {
            bail!("{path} {body} answered {status}: {v}");
        }
        Ok(v)
    }
}

/// ClickHouse's quantileExactInclusive: linear interpolation between the closest ranks.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// Equal within floating-point noise.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

/// Percent-encodes everything but letters and digits (a query-string value).
pub fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}
