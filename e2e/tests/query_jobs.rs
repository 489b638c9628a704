//! Analyses as jobs (`/api/v1/projects/{id}/query-jobs`) on the real query service, PostgreSQL
//! and the ClickHouse engine: a job's result is the synchronous route's answer; an identical job
//! is joined while it runs and answered from the cache once done; a long job reports the rows
//! ClickHouse has read and, cancelled, stops there too; jobs are the project's alone.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Result};
use cairn_e2e::{call, sign_up, unique, wait_until, Service, TestClickHouse, TestPostgres};
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;

fn ch_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).expect("a valid time");
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.000",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Polls the job until `done(job)` holds.
async fn poll(url: &str, token: &str, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let start = Instant::now();
    loop {
        let (status, job) = call("GET", url, Some(token), None).await?;
        ensure!(status == 200, "GET {url} answered {status}: {job}");
        if done(&job) {
            return Ok(job);
        }
        if start.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}; the job: {job}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyses_run_as_jobs_with_progress_cancel_and_a_cache() -> Result<()> {
    let pg = TestPostgres::shared()?;
    let pg_url = pg.fresh_database("jobs").await?;
    let clickhouse = TestClickHouse::shared()?;
    let database = unique("jobs");
    cairn_common::clickhouse::migrate(&clickhouse.config(&database)).await?;
    let ch = clickhouse.db(&database);

    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), pg_url);
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "jobs-internal-token-0123456789".into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_CLICKHOUSE_URL".into(), clickhouse.url());
    env.insert("CAIRN_CLICKHOUSE_DATABASE".into(), database.clone());
    // One worker: a second job waits (queued) while the first runs.
    env.insert("CAIRN_QUERY_JOB_WORKERS".into(), "1".into());
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;

    let a = sign_up(&auth, &format!("{}@jobs.example", unique("alice"))).await?;
    let b = sign_up(&auth, &format!("{}@jobs.example", unique("bob"))).await?;
    let (project, token) = (a.project_id, a.access_token.as_str());
    let jobs = query.url(&format!("/api/v1/projects/{project}/query-jobs"));

    // 60 pageviews over three days (exact answers), and a bulk of events to make slow jobs of.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let base = now.div_euclid(DAY) * DAY - 3 * DAY;
    let rows: Vec<Value> = (0..60i64)
        .map(|i| {
            json!({"uuid": uuid::Uuid::new_v4().to_string(), "project_id": project, "event": "pageview",
                   "distinct_id": format!("u{}", i % 12), "properties": json!({"plan": if i % 3 == 0 { "pro" } else { "free" }}).to_string(),
                   "timestamp": ch_time(base + (i % 3) * DAY + 3_600_000), "received_at": ch_time(base + (i % 3) * DAY + 3_600_000)})
        })
        .collect();
    ch.insert_json("events", &rows).await?;
    let bulk: u64 = 6_000_000;
    ch.rows(&format!(
        "INSERT INTO events (uuid, project_id, event, distinct_id, properties, timestamp, received_at) \
         SELECT generateUUIDv4(), {project}, 'bulk', toString(number % 200000), \
         concat('{{\"n\":', toString(number), ',\"plan\":\"p', toString(number % 97), '\"}}'), \
         fromUnixTimestamp64Milli(toInt64({base} + (number % 3) * {DAY} + 7200000)), now64(3) FROM numbers({bulk})"
    ))
    .await?;

    // A job answers what the synchronous route answers.
    let trend = json!({"series": [{"event": "pageview", "math": "unique_users"}], "date_from": "-7d", "interval": "day",
                       "breakdown": {"property": "plan"}});
    let (status, sync) =
        call("POST", &query.url(&format!("/api/v1/projects/{project}/query/trends")), Some(token), Some(&trend))
            .await?;
    ensure!(status == 200, "the synchronous trend answered {status}: {sync}");
    let (status, job) = call("POST", &jobs, Some(token), Some(&json!({"kind": "trends", "query": trend}))).await?;
    ensure!(status == 202, "a new job is accepted: {status} {job}");
    ensure!(job["status"] == "queued" && job["cached"] == false, "{job}");
    let id = job["id"].as_str().ok_or_else(|| anyhow!("a job id: {job}"))?.to_string();
    let job_url = format!("{jobs}/{id}");
    let done = poll(&job_url, token, "the trend job done", Duration::from_secs(30), |j| j["status"] == "done").await?;
    ensure!(done["result"] == sync, "the job's result is the route's answer:\n{}\nvs\n{sync}", done["result"]);
    ensure!(done["progress"]["fraction"] == 1.0, "{done}");

    // The identical request again (fields in another order): the cached result, at once.
    let reordered = json!({"kind": "trends", "query": {"breakdown": {"property": "plan"}, "interval": "day", "date_from": "-7d",
                           "series": [{"math": "unique_users", "event": "pageview"}]}});
    let (status, cached) = call("POST", &jobs, Some(token), Some(&reordered)).await?;
    ensure!(status == 200 && cached["cached"] == true && cached["id"] == id.as_str(), "{status} {cached}");
    ensure!(cached["result"] == sync, "{cached}");
    // `refresh` computes again.
    let mut refreshed = reordered.clone();
    refreshed["refresh"] = json!(true);
    let (status, again) = call("POST", &jobs, Some(token), Some(&refreshed)).await?;
    ensure!(status == 202 && again["id"] != id.as_str(), "{status} {again}");
    poll(
        &format!("{jobs}/{}", again["id"].as_str().unwrap_or("")),
        token,
        "the refreshed job",
        Duration::from_secs(30),
        |j| j["status"] == "done",
    )
    .await?;

    // Refused at once when the body is wrong; failed, with the route's error, when the analysis
    // refuses it.
    let (status, bad) =
        call("POST", &jobs, Some(token), Some(&json!({"kind": "trends", "query": {"series": [], "bogus": 1}}))).await?;
    ensure!(status == 400 && bad["field"] == "query", "{status} {bad}");
    let (status, bad) = call("POST", &jobs, Some(token), Some(&json!({"kind": "sql", "query": {}}))).await?;
    ensure!(status == 400 && bad["field"] == "kind", "{status} {bad}");
    let (status, job) = call(
        "POST",
        &jobs,
        Some(token),
        Some(&json!({"kind": "trends", "query": {"series": [{"event": "pageview", "math": "sum"}]}})),
    )
    .await?;
    ensure!(status == 202, "{status} {job}");
    let failed = poll(
        &format!("{jobs}/{}", job["id"].as_str().unwrap_or("")),
        token,
        "the refused job",
        Duration::from_secs(30),
        |j| j["status"] == "failed",
    )
    .await?;
    ensure!(failed["error"]["status"] == 400 && failed["error"]["field"].as_str().is_some(), "{failed}");

    // A slow job: ClickHouse's progress shows; an identical request joins it; a second job waits
    // for the one worker and is cancelled while queued; then the slow one is cancelled, and its
    // statements stop in ClickHouse.
    let slow_query = json!({"series": (0..10).map(|i| json!({"event": "bulk", "math": "p99", "math_property": "n",
                                "filters": [{"key": "plan", "operator": "not_icontains", "value": format!("x{i}")}]})).collect::<Vec<_>>(),
                            "date_from": "-7d", "interval": "hour", "breakdown": {"property": "plan"}});
    let slow_body = json!({"kind": "trends", "query": slow_query});
    let (status, slow) = call("POST", &jobs, Some(token), Some(&slow_body)).await?;
    ensure!(status == 202, "{status} {slow}");
    let slow_url = format!("{jobs}/{}", slow["id"].as_str().unwrap_or(""));
    let running = poll(&slow_url, token, "rows read by the slow job", Duration::from_secs(60), |j| {
        j["status"] == "running" && j["progress"]["rows_read"].as_u64().unwrap_or(0) > 0
    })
    .await?;
    eprintln!("the slow job while running: {}", running["progress"]);
    let fraction = running["progress"]["fraction"].as_f64().unwrap_or(-1.0);
    ensure!((0.0..1.0).contains(&fraction), "a fraction below 1 while running: {running}");
    ensure!(
        running["progress"]["total_rows"].as_u64().unwrap_or(0)
            >= running["progress"]["rows_read"].as_u64().unwrap_or(0)
    );
    let (status, joined) = call("POST", &jobs, Some(token), Some(&slow_body)).await?;
    ensure!(
        status == 202 && joined["id"] == slow["id"],
        "the identical request joins the running job: {status} {joined}"
    );

    let (status, waiting) = call(
        "POST",
        &jobs,
        Some(token),
        Some(
            &json!({"kind": "retention", "query": {"target_event": {"event": "bulk"}, "period": "day", "periods": 3}}),
        ),
    )
    .await?;
    ensure!(status == 202, "{status} {waiting}");
    let waiting_url = format!("{jobs}/{}", waiting["id"].as_str().unwrap_or(""));
    let (_, w) = call("GET", &waiting_url, Some(token), None).await?;
    ensure!(w["status"] == "queued", "one worker: the second job waits: {w}");
    let (status, w) = call("DELETE", &waiting_url, Some(token), None).await?;
    ensure!(status == 200 && w["status"] == "cancelled", "a queued job is cancelled at once: {status} {w}");

    // Another project's member sees none of it.
    let (status, _) = call("GET", &slow_url, Some(&b.access_token), None).await?;
    ensure!(status == 404, "another account: {status}");
    let other =
        query.url(&format!("/api/v1/projects/{}/query-jobs/{}", b.project_id, slow["id"].as_str().unwrap_or("")));
    let (status, _) = call("GET", &other, Some(&b.access_token), None).await?;
    ensure!(status == 404, "through another project: {status}");

    let (_, before) = call("GET", &slow_url, Some(token), None).await?;
    eprintln!("the slow job when cancelled: {} {}", before["status"], before["progress"]);
    let (status, cancelled) = call("DELETE", &slow_url, Some(token), None).await?;
    ensure!(status == 200 && cancelled["status"] == "cancelled", "{status} {cancelled}");
    let comment = format!("cairn-job:{}", slow["id"].as_str().unwrap_or(""));
    wait_until("the cancelled job's statements stopped in ClickHouse", Duration::from_secs(10), || {
        let (ch, comment) = (ch.clone(), comment.clone());
        async move {
            ch.scalar(&format!(
                "SELECT count() FROM system.processes WHERE JSONExtractString(Settings['log_comment'], 'job') = '{comment}' AND query NOT LIKE '%system.processes%'"
            ))
            .await
            .map(|n| n == 0)
            .unwrap_or(false)
        }
    })
    .await?;
    // A cancelled job is not a cached result: asking again starts anew.
    let (status, anew) = call("POST", &jobs, Some(token), Some(&slow_body)).await?;
    ensure!(status == 202 && anew["id"] != slow["id"], "{status} {anew}");
    call("DELETE", &format!("{jobs}/{}", anew["id"].as_str().unwrap_or("")), Some(token), None).await?;

    let outcomes = query.metric("cairn_query_jobs_total{outcome=\"cancelled\"}").await?;
    ensure!(outcomes >= 2.0, "cancellations counted: {outcomes}");
    Ok(())
}
