//! The whole flow, read in a browser: events sent to capture with a write key from auth → Kafka →
//! consumer → ClickHouse → the query API → the dashboard (dashboard/dist, served by query at /)
//! in a real Chromium driven by playwright-core (dashboard/e2e/dashboard.mjs): log in, build a
//! trend and a funnel and see the seeded numbers, save a dashboard and open it again, create and
//! revoke a write key. Screenshots go to .stack/test/screenshots/dashboard.
//!
//! The seeded events and the numbers the browser must show are defined here, once:
//! - `$pageview`: 120 events by 40 users over the last 5 days, `$browser` Chrome on 80 of them and
//!   Firefox on 40 → trend total 120, unique users 40 over the range (120 summed per day: every
//!   visitor comes on three days), breakdown Chrome 80 / Firefox 40;
//! - `signed_up` by 30 users, `activated` by 18 of them 10 minutes later, `purchased` by 9 of those
//!   10 minutes after that → funnel 30 / 18 / 9.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_e2e::{
    repo_root, sign_up, test_stack_dir, unique, wait_until, Pipeline, Service, TestClickHouse, TestKafka, TestPostgres,
};
use serde_json::{json, Value};

const INTERNAL_TOKEN: &str = "dashboard-e2e-internal-token";
const HOUR_MS: i64 = 3_600_000;

fn script(name: &str, action: &str) {
    let out = Command::new("bash")
        .arg(repo_root().join("stack").join(name))
        .arg(action)
        .stdin(Stdio::null())
        .output()
        .expect("running a stack script");
    assert!(
        out.status.success(),
        "stack/{name} {action} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).expect("a valid time");
    t.format(&time::format_description::well_known::Rfc3339).expect("formattable")
}

/// The seeded events, as capture's batch items.
fn fixtures(now_ms: i64) -> Vec<Value> {
    let mut events = Vec::new();
    for j in 0..120i64 {
        let browser = if j < 80 { "Chrome" } else { "Firefox" };
        events.push(json!({
            "event": "$pageview",
            "distinct_id": format!("visitor-{}", j % 40),
            "properties": {"$browser": browser, "$pathname": "/pricing"},
            // Spread over the last 5 days, never in the future.
            "timestamp": rfc3339(now_ms - HOUR_MS - (j * 59 * 60_000) % (5 * 24 * HOUR_MS - 2 * HOUR_MS)),
        }));
    }
    for i in 0..30i64 {
        let start = now_ms - 2 * 24 * HOUR_MS - i * 7 * 60_000;
        let user = format!("buyer-{i}");
        let mut step = |name: &str, at: i64| {
            events.push(
                json!({"event": name, "distinct_id": user, "properties": {"plan": "pro"}, "timestamp": rfc3339(at)}),
            );
        };
        step("signed_up", start);
        if i < 18 {
            step("activated", start + 10 * 60_000);
        }
        if i < 9 {
            step("purchased", start + 20 * 60_000);
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_what_the_pipeline_ingested() {
    script("dashboard.sh", "install");
    let dir = repo_root().join("dashboard");
    let unit =
        Command::new("npm").args(["test", "--silent"]).current_dir(&dir).stdin(Stdio::null()).output().expect("npm");
    assert!(
        unit.status.success(),
        "the dashboard's component tests (vitest) failed:\n{}{}",
        String::from_utf8_lossy(&unit.stdout),
        String::from_utf8_lossy(&unit.stderr)
    );
    script("dashboard.sh", "build");
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let pg = TestPostgres::shared().unwrap();

    let mut auth_env = HashMap::new();
    auth_env.insert("CAIRN_POSTGRES_URL".to_string(), pg.fresh_database("dashboard").await.unwrap());
    auth_env.insert("CAIRN_INTERNAL_TOKEN".to_string(), INTERNAL_TOKEN.to_string());
    auth_env.insert("CAIRN_AUTH_TOKEN_SECRET".to_string(), "a-dashboard-test-secret-0123456789abcdef".to_string());
    let auth = Service::start("auth", &auth_env).await.unwrap();
    auth.wait_ready(Duration::from_secs(60)).await.unwrap();

    let mut p = Pipeline::new(&kafka, &ch, "phc_unused_static_key=1");
    p.set("CAIRN_AUTH_URL", auth.url("")).set("CAIRN_INTERNAL_TOKEN", INTERNAL_TOKEN);
    let _consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();

    let mut query_env = auth_env.clone();
    query_env.extend(p.env.clone());
    query_env.insert("CAIRN_AUTH_URL".to_string(), auth.url(""));
    query_env.insert("CAIRN_DASHBOARD_DIR".to_string(), repo_root().join("dashboard/dist").display().to_string());
    let query = Service::start("query", &query_env).await.unwrap();
    query.wait_ready(Duration::from_secs(60)).await.unwrap();

    let account = sign_up(&auth, &format!("{}@dashboard.example", unique("dana"))).await.unwrap();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let events = fixtures(now_ms);
    let n = events.len() as u64;
    let res = reqwest::Client::new()
        .post(capture.url("/batch"))
        .json(&json!({"api_key": account.write_key, "batch": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "capture: {}", res.text().await.unwrap_or_default());

    let db = ch.db(&p.database);
    let count = format!("SELECT count() FROM events FINAL WHERE project_id = {}", account.project_id);
    wait_until("the seeded events in ClickHouse", Duration::from_secs(60), || {
        let (db, count) = (db.clone(), count.clone());
        async move { db.scalar(&count).await.unwrap_or(0) >= n }
    })
    .await
    .unwrap();
    assert_eq!(db.scalar(&count).await.unwrap(), n);

    // The dashboard is served at / on the API's origin.
    let index = reqwest::get(query.url("/project/1/trends")).await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));

    let shots = test_stack_dir().join("screenshots/dashboard");
    let chromium = std::env::var("CAIRN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let out = Command::new("node")
        .arg("e2e/dashboard.mjs")
        .current_dir(repo_root().join("dashboard"))
        .env("CAIRN_DASHBOARD_URL", query.url(""))
        .env("CAIRN_E2E_EMAIL", &account.email)
        .env("CAIRN_E2E_PASSWORD", &account.password)
        .env("CAIRN_PROJECT_ID", account.project_id.to_string())
        .env("CAIRN_E2E_SCREENSHOTS", &shots)
        .env("CAIRN_CHROMIUM", chromium)
        .stdin(Stdio::null())
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "the dashboard e2e failed ({}); screenshots in {}\n{stdout}\n{stderr}\nquery log:\n{}",
        out.status,
        shots.display(),
        query.log_tail()
    );
}
