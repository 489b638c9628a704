//! `make demo`: loads a month of sample data into a running Cairn (`make up`) and saves insights,
//! a dashboard and cohorts over it, so that every page of the dashboard shows something.
//!
//! It signs up `CAIRN_DEMO_EMAIL` (or signs in, when the account exists) through the query
//! service's API, makes a write key "Sample data" in the account's first project, sends the events
//! to capture like an SDK, waits until they are stored, and saves the insights. Settings:
//! `CAIRN_DEMO_API_URL` (the query service, default http://127.0.0.1:$CAIRN_QUERY_PORT),
//! `CAIRN_DEMO_CAPTURE_URL` (default http://127.0.0.1:$CAIRN_CAPTURE_PORT), `CAIRN_DEMO_EMAIL`,
//! `CAIRN_DEMO_PASSWORD`, `CAIRN_DEMO_VISITORS` (600), `CAIRN_DEMO_DAYS` (30), `CAIRN_DEMO_SEED`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use cairn_demo::{generate, populate, send, wait_stored, Account, Options};
use serde_json::{json, Value};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().map_err(|_| anyhow!("{name} must be a number, not {v:?}")),
        _ => Ok(default),
    }
}

async fn post(http: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> Result<(u16, Value)> {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.with_context(|| format!("cannot reach {url}: is Cairn up (make up)?"))?;
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, v))
}

#[tokio::main]
async fn main() -> Result<()> {
    let api = env("CAIRN_DEMO_API_URL", &format!("http://127.0.0.1:{}", env("CAIRN_QUERY_PORT", "18003")));
    let capture = env("CAIRN_DEMO_CAPTURE_URL", &format!("http://127.0.0.1:{}", env("CAIRN_CAPTURE_PORT", "18000")));
    let email = env("CAIRN_DEMO_EMAIL", "demo@cairn.example");
    let password = env("CAIRN_DEMO_PASSWORD", "trailhead sample data 42");
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let mut opts = Options::new(now_ms);
    opts.visitors = number("CAIRN_DEMO_VISITORS", opts.visitors)?;
    opts.days = number("CAIRN_DEMO_DAYS", opts.days)?;
    opts.seed = number("CAIRN_DEMO_SEED", opts.seed)?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;

    // Sign up, or in.
    let (status, v) =
        post(&http, &format!("{api}/api/v1/signup"), None, json!({"email": email, "password": password})).await?;
    let token = match status {
        201 => v["access_token"].as_str().map(str::to_string),
        409 => {
            let (status, v) =
                post(&http, &format!("{api}/api/v1/login"), None, json!({"email": email, "password": password})).await?;
            if status != 200 {
                bail!("{email} exists and the password does not sign in ({status}: {v}); set CAIRN_DEMO_EMAIL and CAIRN_DEMO_PASSWORD");
            }
            v["access_token"].as_str().map(str::to_string)
        }
        _ => bail!("signup answered {status}: {v}"),
    }
    .ok_or_else(|| anyhow!("no access token in the answer"))?;
    let projects: Value = http
        .get(format!("{api}/api/v1/projects"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await
        .context("listing the account's projects")?;
    let project_id = projects
        .as_array()
        .and_then(|a| a.first())
        .and_then(|p| p["id"].as_i64())
        .ok_or_else(|| anyhow!("the account has no project: {projects}"))?;
    let (status, key) = post(
        &http,
        &format!("{api}/api/v1/projects/{project_id}/write-keys"),
        Some(&token),
        json!({"name": "Sample data"}),
    )
    .await?;
    let key = key["key"]
        .as_str()
        .filter(|_| status == 201)
        .ok_or_else(|| anyhow!("cannot make a write key ({status}: {key})"))?;

    let (events, summary) = generate(&opts);
    println!(
        "sending {} events: {} visitors over {} days, {} signed up, {} bought ({} purchases) ...",
        summary.events, summary.visitors, opts.days, summary.signed_up, summary.buyers, summary.purchases
    );
    send(&http, &capture, key, &events).await?;
    let account = Account { api_url: api.clone(), token, project_id };
    wait_stored(&http, &account, opts.days, summary.events as u64, Duration::from_secs(180)).await?;
    populate(&http, &account).await?;
    println!();
    println!("Sample data loaded into project {project_id}. Open {api}/ and sign in as");
    println!("  {email} / {password}");
    println!("The dashboard \"Shop overview\", six insights and two cohorts are saved there.");
    Ok(())
}
