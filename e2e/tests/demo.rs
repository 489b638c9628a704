//! `make demo`'s sample data, through the real services: sent to capture like an SDK, stored,
//! its persons merged, and every page of the dashboard has something to show (trends, funnels,
//! retention, events, persons, cohorts, insights and a dashboard), with unique users equal to
//! the persons the generated journeys make.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use cairn_demo::{generate, populate, send, wait_stored, Account, Options};
use cairn_e2e::{call, sign_up, unique, wait_until, Pipeline, Service, TestClickHouse, TestKafka, TestPostgres};
use serde_json::{json, Value};

/// The persons the events make: each distinct id is its own, but `$identify` joins its
/// `$anon_distinct_id` to the user (every user here identifies once, from a fresh anonymous id).
fn persons(events: &[Value]) -> usize {
    let mut person: BTreeMap<String, String> = BTreeMap::new();
    for e in events {
        let id = e["distinct_id"].as_str().unwrap_or_default().to_string();
        person.entry(id.clone()).or_insert(id.clone());
        if let Some(anon) = e["properties"]["$anon_distinct_id"].as_str() {
            person.insert(anon.to_string(), id);
        }
    }
    person.values().collect::<std::collections::BTreeSet<_>>().len()
}

/// Auth, the consumer (persons on), capture and query on a database of their own.
struct Stack {
    auth: Service,
    capture: Service,
    query: Service,
    _consumer: Service,
}

impl Stack {
    async fn start(database: &str) -> Result<Stack> {
        let kafka = TestKafka::shared()?;
        let ch = TestClickHouse::shared()?;
        let url = TestPostgres::shared()?.fresh_database(database).await?;
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("CAIRN_POSTGRES_URL".into(), url.clone());
        env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
        env.insert("CAIRN_INTERNAL_TOKEN".into(), "demo-internal-token".into());
        let auth = Service::start("auth", &env).await?;
        auth.wait_ready(Duration::from_secs(60)).await?;
        let mut p = Pipeline::new(&kafka, &ch, "");
        p.persons(&url).set("CAIRN_AUTH_URL", auth.url("")).set("CAIRN_INTERNAL_TOKEN", "demo-internal-token");
        let consumer = p.consumer().await?;
        let capture = p.capture().await?;
        env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
        env.insert("CAIRN_CLICKHOUSE_URL".into(), ch.url());
        env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), p.database.clone());
        // Query produces the dashboard's sample data to the events topic.
        env.insert("CAIRN_KAFKA_BROKERS".into(), kafka.brokers());
        env.insert("CAIRN_KAFKA_TOPIC".into(), p.topic.clone());
        let query = Service::start("query", &env).await?;
        query.wait_ready(Duration::from_secs(60)).await?;
        Ok(Stack { auth, capture, query, _consumer: consumer })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_data_fills_every_page() -> Result<()> {
    let Stack { auth, capture, query, _consumer } = Stack::start("demo").await?;
    let account = sign_up(&auth, &format!("{}@demo.example", unique("demo"))).await?;

    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let mut opts = Options::new(now_ms);
    opts.visitors = 250;
    let (events, summary) = generate(&opts);
    assert_eq!(generate(&opts).0, events, "the same seed makes the same data");
    assert!(summary.signed_up > 80 && summary.buyers > 20 && summary.events > 3000, "{summary:?}");
    let http = reqwest::Client::new();
    send(&http, &capture.url(""), &account.write_key, &events).await?;
    let demo = Account { api_url: query.url(""), token: account.access_token.clone(), project_id: account.project_id };
    wait_stored(&http, &demo, opts.days, events.len() as u64, Duration::from_secs(120)).await?;
    populate(&http, &demo).await?;
    populate(&http, &demo).await?; // a second run adds nothing

    let api = |method: &'static str, path: String, body: Option<Value>| {
        let (url, token) =
            (query.url(&format!("/api/v1/projects/{}{path}", account.project_id)), account.access_token.clone());
        async move { call(method, &url, Some(&token), body.as_ref()).await }
    };
    // Unique users are persons: once the identity decisions are in, the count is the journeys'.
    let want = persons(&events);
    assert!(want < events.iter().map(|e| e["distinct_id"].as_str()).collect::<std::collections::BTreeSet<_>>().len());
    let unique_users =
        json!({"series": [{"event": "$pageview", "math": "unique_users"}, {}], "date_from": "-31d", "interval": "day"});
    wait_until("every anonymous id joined to its user", Duration::from_secs(60), || {
        let f = api("POST", "/query/trends".into(), Some(unique_users.clone()));
        async move { f.await.map(|(_, v)| v["results"][0]["aggregated_value"].as_f64()).ok().flatten() == Some(want as f64) }
    })
    .await?;
    let (_, v) = api("POST", "/query/trends".into(), Some(unique_users.clone())).await?;
    let active_days =
        v["results"][1]["data"].as_array().map_or(0, |d| d.iter().filter(|x| x.as_f64() > Some(0.0)).count());
    assert!(active_days >= 28, "events on {active_days} days: {v}");

    // Every saved insight answers, with something in it.
    let (status, list) = api("GET", "/insights".into(), None).await?;
    assert_eq!(status, 200);
    let insights = list.get("results").unwrap_or(&list).as_array().cloned().unwrap_or_default();
    assert_eq!(insights.len(), 6, "{list}");
    for i in &insights {
        let (status, r) = api("GET", format!("/insights/{}/result", i["id"]), None).await?;
        assert_eq!(status, 200, "{}: {r}", i["name"]);
        let text = r.to_string();
        assert!(
            text.contains("\"count\":") || text.contains("\"data\":") || text.contains("\"values\":"),
            "{}: {r}",
            i["name"]
        );
        match i["name"].as_str().unwrap_or_default() {
            "Purchase funnel" => {
                let steps = &r["steps"];
                let counts: Vec<u64> = (0..4).map(|k| steps[k]["count"].as_u64().unwrap_or(0)).collect();
                assert!(counts[3] > 0 && counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}: {r}");
            }
            "Retention after sign-up" => {
                let later: f64 = r["cohorts"]
                    .as_array()
                    .map(|c| c.iter().filter_map(|c| c["values"][1].as_f64()).sum())
                    .unwrap_or(0.0);
                assert!(later > 0.0, "nobody came back the next day: {r}");
            }
            "Sign-ups by source" => {
                let sources = r["results"].as_array().map_or(0, Vec::len);
                assert_eq!(sources, 5, "{r}");
            }
            _ => {}
        }
    }
    let (_, dashboards) = api("GET", "/dashboards".into(), None).await?;
    let dashboards = dashboards.get("results").unwrap_or(&dashboards).clone();
    assert_eq!(dashboards.as_array().map(Vec::len), Some(1), "{dashboards}");
    let (_, board) = api("GET", format!("/dashboards/{}", dashboards[0]["id"]), None).await?;
    assert_eq!(board["tiles"].as_array().map(Vec::len), Some(6), "{board}");

    let (_, cohorts) = api("GET", "/cohorts".into(), None).await?;
    let sizes: Vec<i64> =
        cohorts["results"].as_array().unwrap_or(&Vec::new()).iter().map(|c| c["size"].as_i64().unwrap_or(0)).collect();
    assert!(sizes.len() == 2 && sizes.iter().all(|s| *s > 0), "{cohorts}");
    let (_, recent) = api("GET", "/events?limit=5".into(), None).await?;
    assert_eq!(recent["results"].as_array().map(Vec::len), Some(5), "{recent}");
    let (_, people) = api("GET", "/persons?search=runner1".into(), None).await?;
    let first = &people["results"][0];
    assert!(
        first["properties"]["plan"].is_string() && first["distinct_ids"].as_array().map_or(0, Vec::len) == 2,
        "{people}"
    );
    Ok(())
}

/// `make demo`'s command against running services: it signs up (and, run again, signs in), makes
/// a write key, sends, waits and saves; the second run adds no insight, dashboard or cohort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_command_signs_up_loads_and_saves_once() -> Result<()> {
    let Stack { auth: _auth, capture, query, _consumer } = Stack::start("demo_cmd").await?;

    // The defaults, as `make demo` runs (the database is this test's own).
    let email = "demo@cairn.example".to_string();
    let run = || {
        std::process::Command::new(cairn_e2e::bin_dir().join("cairn-demo"))
            .env("CAIRN_DEMO_API_URL", query.url(""))
            .env("CAIRN_DEMO_CAPTURE_URL", capture.url(""))
            .env("CAIRN_DEMO_VISITORS", "60")
            .output()
    };
    for round in 0..2 {
        let out = run()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run {round}: {text}");
        assert!(text.contains("Sample data loaded into project") && text.contains(&email), "run {round}: {text}");
    }
    let (status, login) = call(
        "POST",
        &query.url("/api/v1/login"),
        None,
        Some(&json!({"email": email, "password": "trailhead sample data 42"})),
    )
    .await?;
    assert_eq!(status, 200, "{login}");
    let token = login["access_token"].as_str().unwrap_or_default().to_string();
    let (_, projects) = call("GET", &query.url("/api/v1/projects"), Some(&token), None).await?;
    let project = projects[0]["id"].as_i64().unwrap_or(0);
    let get = |path: &str| {
        let (url, token) = (query.url(&format!("/api/v1/projects/{project}{path}")), token.clone());
        async move { call("GET", &url, Some(&token), None).await }
    };
    let count = |v: Value| v.get("results").unwrap_or(&v).as_array().map_or(0, Vec::len);
    assert_eq!(count(get("/insights").await?.1), 6);
    assert_eq!(count(get("/dashboards").await?.1), 1);
    assert_eq!(count(get("/cohorts").await?.1), 2);
    let (_, keys) =
        call("GET", &query.url(&format!("/api/v1/projects/{project}/write-keys")), Some(&token), None).await?;
    assert!(keys.as_array().is_some_and(|k| k.iter().filter(|k| k["name"] == "Sample data").count() == 2), "{keys}");
    // The documentation is served beside the API.
    let page = reqwest::get(query.url("/api/docs")).await?;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str()?.contains("script-src 'self'"));
    assert!(page.text().await?.contains("/api/docs/viewer.js"));
    let doc: Value = reqwest::get(query.url("/api/openapi/auth.json")).await?.json().await?;
    assert!(doc["paths"]["/api/v1/signup"].is_object(), "{}", doc["info"]);
    assert_eq!(reqwest::get(query.url("/api/openapi/nope.json")).await?.status(), 404);
    Ok(())
}

/// The dashboard's "Load sample data": the same month of data, through the API, into an empty
/// project only, once; its insights have answers as soon as the consumer stored the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_project_loads_sample_data_from_the_api() -> Result<()> {
    let Stack { auth, capture, query, _consumer } = Stack::start("sample").await?;
    let account = sign_up(&auth, &format!("{}@sample.example", unique("sample"))).await?;
    let url = query.url(&format!("/api/v1/projects/{}/sample-data", account.project_id));
    let (status, key) = call(
        "POST",
        &auth.url("/api/v1/personal-keys"),
        Some(&account.access_token),
        Some(&json!({"name": "reader", "scopes": ["query:read", "insights:write"]})),
    )
    .await?;
    anyhow::ensure!(status == 201, "{status} {key}");
    let (status, body) = call("POST", &url, key["key"].as_str(), None).await?;
    assert_eq!(status, 403, "events:write is needed: {body}");

    let (status, loaded) = call("POST", &url, Some(&account.access_token), None).await?;
    assert_eq!(status, 202, "{loaded}");
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let expected = generate(&Options::new(now_ms)).1;
    assert_eq!(loaded["events"].as_u64(), Some(expected.events as u64), "{loaded}");
    assert_eq!(loaded["insight_ids"].as_array().map(Vec::len), Some(6), "{loaded}");
    assert_eq!(loaded["cohort_ids"].as_array().map(Vec::len), Some(2), "{loaded}");
    let (status, again) = call("POST", &url, Some(&account.access_token), None).await?;
    assert_eq!(status, 409, "once only: {again}");

    let demo = Account { api_url: query.url(""), token: account.access_token.clone(), project_id: account.project_id };
    let http = reqwest::Client::new();
    wait_stored(&http, &demo, 30, expected.events as u64, Duration::from_secs(120)).await?;
    let api = |path: String| {
        let (url, token) =
            (query.url(&format!("/api/v1/projects/{}{path}", account.project_id)), account.access_token.clone());
        async move { call("GET", &url, Some(&token), None).await }
    };
    for id in loaded["insight_ids"].as_array().cloned().unwrap_or_default() {
        let (status, result) = api(format!("/insights/{id}/result")).await?;
        assert_eq!(status, 200, "{result}");
        assert!(result.to_string().len() > 200, "insight {id} has an answer: {result}");
    }
    let (status, board) = api(format!("/dashboards/{}", loaded["dashboard_id"])).await?;
    assert_eq!((status, board["name"].as_str()), (200, Some("Shop overview")), "{board}");
    let (status, _) = call("POST", &url, Some(&account.access_token), None).await?;
    assert_eq!(status, 409);

    // A project with events of its own takes none.
    let other = sign_up(&auth, &format!("{}@sample.example", unique("real"))).await?;
    send(&http, &capture.url(""), &other.write_key, &[json!({"event": "real", "distinct_id": "someone"})]).await?;
    let real = Account { api_url: query.url(""), token: other.access_token.clone(), project_id: other.project_id };
    wait_stored(&http, &real, 30, 1, Duration::from_secs(60)).await?;
    let (status, body) = call(
        "POST",
        &query.url(&format!("/api/v1/projects/{}/sample-data", other.project_id)),
        Some(&other.access_token),
        None,
    )
    .await?;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("has events already"), "{body}");
    Ok(())
}
