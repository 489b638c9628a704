//! Sample data for a first look at Cairn (`make demo`).
//!
//! [`generate`] makes a month of a small online shop's events, deterministic for a seed:
//! visitors arrive anonymously from a source (search, social, a newsletter, Product Hunt, direct)
//! on some browser, device and country and read a few pages; about half sign up, which
//! identifies them (`$identify` with `$anon_distinct_id`, `$set` and `$set_once`), and come back
//! on later days less and less often, browsing the app, viewing items, adding them to carts,
//! buying, inviting teammates and upgrading their plan (`$set`). Every event has a session id
//! (`$session_id`), the page it happened on and the client's properties, as posthog-js sends them.
//!
//! [`send`] posts them to capture's `/batch` like an SDK (gzip, retrying 429 and 503), and
//! [`populate`] saves what makes every page of the dashboard show something: insights (daily
//! active users, signups by source, the purchase funnel, retention, revenue), a dashboard with
//! them, and two cohorts. [`run`] does it all for an account, signing it up or in.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Visitors over the period (default 600: about 11,000 events).
    pub visitors: usize,
    /// Days of history, ending at `now_ms` (default 30).
    pub days: i64,
    pub seed: u64,
    /// The end of the period (Unix milliseconds); nothing is later.
    pub now_ms: i64,
}

impl Options {
    pub fn new(now_ms: i64) -> Self {
        Self { visitors: 600, days: 30, seed: 42, now_ms }
    }
}

/// Counts of what [`generate`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub visitors: usize,
    pub signed_up: usize,
    pub buyers: usize,
    pub purchases: usize,
    pub events: usize,
}

fn pick<'a, T>(rng: &mut StdRng, weighted: &'a [(T, u32)]) -> &'a T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut n = rng.gen_range(0..total.max(1));
    for (v, w) in weighted {
        if n < *w {
            return v;
        }
        n -= w;
    }
    &weighted[weighted.len() - 1].0
}

fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid().to_string()
}

/// RFC 3339 of a time within the period (formatting only fails outside years 0–9999).
fn iso(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

const ITEMS: &[(&str, &str, f64)] = &[
    ("Trail running shoes", "shoes", 129.0),
    ("Road running shoes", "shoes", 109.0),
    ("Merino base layer", "clothing", 79.0),
    ("Rain shell", "clothing", 189.0),
    ("Running socks (3 pairs)", "clothing", 24.0),
    ("Hydration vest", "gear", 95.0),
    ("Headlamp", "gear", 49.0),
    ("GPS watch", "electronics", 349.0),
    ("Wireless earbuds", "electronics", 129.0),
    ("Energy gels (12)", "nutrition", 30.0),
    ("Electrolyte tabs", "nutrition", 12.0),
    ("Foam roller", "gear", 35.0),
];

/// One visitor's fixed traits, sent with each of their events.
struct Client {
    browser: &'static str,
    os: &'static str,
    device: &'static str,
    country: &'static str,
}

struct Maker<'a> {
    rng: &'a mut StdRng,
    events: Vec<Value>,
    now_ms: i64,
}

impl Maker<'_> {
    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        name: &str,
        distinct_id: &str,
        at: i64,
        session: &str,
        client: &Client,
        path: &str,
        extra: Value,
    ) {
        if at >= self.now_ms {
            return;
        }
        let mut props = json!({
            "$session_id": session,
            "$browser": client.browser,
            "$os": client.os,
            "$device_type": client.device,
            "$geoip_country_code": client.country,
            "$current_url": format!("https://trailhead.example{path}"),
            "$pathname": path,
            "$lib": "cairn-demo",
        });
        if let (Some(p), Some(extra)) = (props.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                p.insert(k.clone(), v.clone());
            }
        }
        let uuid = uuid(self.rng);
        self.events.push(json!({
            "event": name,
            "distinct_id": distinct_id,
            "uuid": uuid,
            "timestamp": iso(at),
            "properties": props,
        }));
    }
}

/// A month of a small shop's events (see the module's doc), in time order per visitor.
pub fn generate(opts: &Options) -> (Vec<Value>, Summary) {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let start = opts.now_ms - opts.days * DAY;
    let mut summary = Summary { visitors: opts.visitors, ..Summary::default() };
    let mut maker = Maker { rng: &mut rng, events: Vec::new(), now_ms: opts.now_ms - MINUTE };
    for n in 0..opts.visitors {
        let rng = &mut *maker.rng;
        let browser = *pick(rng, &[("Chrome", 60), ("Safari", 20), ("Firefox", 12), ("Edge", 8)]);
        let device = *pick(rng, &[("Desktop", 68), ("Mobile", 28), ("Tablet", 4)]);
        let os = match (browser, device) {
            ("Safari", "Desktop") => "Mac OS X",
            ("Safari", _) => "iOS",
            (_, "Desktop") => *pick(rng, &[("Windows", 60), ("Mac OS X", 30), ("Linux", 10)]),
            _ => "Android",
        };
        let country = *pick(rng, &[("US", 40), ("DE", 14), ("GB", 12), ("FR", 9), ("IN", 10), ("BR", 8), ("CA", 7)]);
        let source =
            *pick(rng, &[("google", 40), ("direct", 22), ("twitter", 14), ("newsletter", 12), ("producthunt", 12)]);
        let client = Client { browser, os, device, country };
        // Arrivals spread over the period, a little more each week, in waking hours.
        let day = (rng.gen::<f64>().powf(0.8) * opts.days as f64) as i64;
        let mut at = start + day * DAY + rng.gen_range(7 * HOUR..22 * HOUR);
        let anon = format!("anon-{}", uuid(rng));
        let session = uuid(rng);
        let landing = match source {
            "google" | "twitter" => ["/blog/choosing-trail-shoes", "/blog/first-ultra", "/blog/winter-running"][n % 3],
            "newsletter" => "/deals",
            _ => "/",
        };
        maker.event(
            "$pageview",
            &anon,
            at,
            &session,
            &client,
            landing,
            json!({"utm_source": source, "$referring_domain": format!("{source}.example")}),
        );
        let pages = maker.rng.gen_range(1..=4);
        for _ in 0..pages {
            at += maker.rng.gen_range(20_000..90_000);
            let path = *pick(maker.rng, &[("/pricing", 3), ("/shop", 4), ("/features", 2), ("/about", 1)]);
            maker.event("$pageview", &anon, at, &session, &client, path, json!({}));
        }
        let p_signup = match source {
            "producthunt" | "newsletter" => 0.6,
            "direct" => 0.5,
            _ => 0.38,
        };
        if maker.rng.gen::<f64>() >= p_signup {
            // Some come back once, still anonymous, within a week.
            if maker.rng.gen::<f64>() < 0.25 {
                let back = at + maker.rng.gen_range(DAY..7 * DAY);
                let s = uuid(maker.rng);
                maker.event("$pageview", &anon, back, &s, &client, "/shop", json!({}));
                maker.event("$pageview", &anon, back + 40_000, &s, &client, "/pricing", json!({}));
            }
            continue;
        }
        summary.signed_up += 1;
        let user = format!("user-{n}");
        let company = ["Acme Outdoors", "Peak Club", "Summit Labs", "Ridge Runners", ""][n % 5];
        at += maker.rng.gen_range(30_000..120_000);
        maker.event("signed_up", &user, at, &session, &client, "/signup", json!({"utm_source": source}));
        maker.event(
            "$identify",
            &user,
            at + 500,
            &session,
            &client,
            "/signup",
            json!({"$anon_distinct_id": anon,
                   "$set": {"email": format!("runner{n}@example.com"), "plan": "free", "company": company},
                   "$set_once": {"initial_source": source, "initial_browser": browser}}),
        );
        let mut plan = "free";
        let mut bought = 0;
        let signup_day = (at - start) / DAY;
        for d in signup_day..opts.days {
            let since = (d - signup_day) as f64;
            let p_return = if d == signup_day { 1.0 } else { 0.06 + 0.5 * (-since / 6.0).exp() };
            if maker.rng.gen::<f64>() >= p_return {
                continue;
            }
            let mut t = if d == signup_day {
                at + 2 * MINUTE
            } else {
                start + d * DAY + maker.rng.gen_range(7 * HOUR..23 * HOUR)
            };
            let s = if d == signup_day { session.clone() } else { uuid(maker.rng) };
            let actions = maker.rng.gen_range(2..=8);
            for _ in 0..actions {
                t += maker.rng.gen_range(15_000..150_000);
                let (name, category, price) = ITEMS[maker.rng.gen_range(0..ITEMS.len())];
                match *pick(maker.rng, &[("view", 6), ("page", 5), ("invite", 1), ("upgrade", 1)]) {
                    "view" => {
                        maker.event("$pageview", &user, t, &s, &client, "/shop", json!({}));
                        let item = json!({"item": name, "category": category, "price": price});
                        maker.event("viewed_item", &user, t + 3_000, &s, &client, "/shop/item", item.clone());
                        if maker.rng.gen::<f64>() < 0.35 {
                            maker.event("added_to_cart", &user, t + 20_000, &s, &client, "/shop/item", item.clone());
                            if maker.rng.gen::<f64>() < 0.45 {
                                let qty = maker.rng.gen_range(1..=2);
                                let amount = price * f64::from(qty);
                                let mut p = item;
                                p["quantity"] = json!(qty);
                                p["amount"] = json!(amount);
                                p["currency"] = json!("USD");
                                maker.event("purchase", &user, t + 60_000, &s, &client, "/checkout", p);
                                if t + 60_000 < maker.now_ms {
                                    summary.purchases += 1;
                                    bought += 1;
                                }
                                t += 60_000;
                            }
                        }
                    }
                    "page" => {
                        let path = *pick(
                            maker.rng,
                            &[("/account", 2), ("/orders", 2), ("/shop", 3), ("/blog/first-ultra", 1)],
                        );
                        maker.event("$pageview", &user, t, &s, &client, path, json!({}));
                    }
                    "invite" => {
                        maker.event("invited_teammate", &user, t, &s, &client, "/account/team", json!({}));
                    }
                    _ if plan == "free" => {
                        plan = if maker.rng.gen::<f64>() < 0.7 { "pro" } else { "team" };
                        maker.event(
                            "upgraded_plan",
                            &user,
                            t,
                            &s,
                            &client,
                            "/pricing",
                            json!({"plan": plan, "$set": {"plan": plan}}),
                        );
                    }
                    _ => maker.event("$pageview", &user, t, &s, &client, "/account", json!({})),
                }
            }
        }
        if bought > 0 {
            summary.buyers += 1;
        }
    }
    summary.events = maker.events.len();
    let events = maker.events;
    (events, summary)
}

/// Posts `events` to capture's `/batch` with `key`, 500 at a time, gzipped as posthog-js sends
/// them; 429 and 503 are retried after their Retry-After (at most 10 times each batch).
pub async fn send(http: &reqwest::Client, capture_url: &str, key: &str, events: &[Value]) -> Result<()> {
    let url = format!("{}/batch", capture_url.trim_end_matches('/'));
    for chunk in events.chunks(500) {
        let body = serde_json::to_vec(&json!({"api_key": key, "batch": chunk}))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body)?;
        let body = gz.finish()?;
        let mut attempt = 0;
        loop {
            let resp = http
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .body(body.clone())
                .send()
                .await
                .with_context(|| format!("cannot reach capture at {url}"))?;
            let status = resp.status().as_u16();
            if status == 200 {
                break;
            }
            attempt += 1;
            if !(status == 429 || status == 503) || attempt > 10 {
                let text = resp.text().await.unwrap_or_default();
                bail!("capture answered {status}: {text}");
            }
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait.clamp(1, 30))).await;
        }
    }
    Ok(())
}

/// An account on a running Cairn: the query service's URL (which also answers auth's public API),
/// an access token and a project.
#[derive(Debug, Clone)]
pub struct Account {
    pub api_url: String,
    pub token: String,
    pub project_id: i64,
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http.request(method.clone(), &url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{method} {url} answered {status}: {text}");
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("{method} {url}: not JSON: {text}"))
}

/// The saved insights [`populate`] makes, by name.
pub fn insights() -> Vec<(&'static str, Value)> {
    let funnel_steps =
        json!([{"event": "$pageview"}, {"event": "viewed_item"}, {"event": "added_to_cart"}, {"event": "purchase"}]);
    vec![
        (
            "Daily active users",
            json!({"kind": "trends", "series": [{"event": "$pageview", "math": "unique_users", "name": "Active users"}], "date_from": "-30d", "interval": "day"}),
        ),
        (
            "Sign-ups by source",
            json!({"kind": "trends", "series": [{"event": "signed_up"}], "date_from": "-30d", "interval": "week", "breakdown": {"property": "utm_source"}}),
        ),
        (
            "Purchase funnel",
            json!({"kind": "funnels", "steps": funnel_steps, "date_from": "-30d", "conversion_window": {"value": 1, "unit": "day"}}),
        ),
        (
            "Revenue per day",
            json!({"kind": "trends", "series": [{"event": "purchase", "math": "sum", "math_property": "amount", "name": "Revenue (USD)"}], "date_from": "-30d", "interval": "day"}),
        ),
        (
            "Retention after sign-up",
            json!({"kind": "retention", "target_event": {"event": "signed_up"}, "returning_event": {"event": "$pageview"}, "period": "day", "periods": 14}),
        ),
        (
            "Page views by browser",
            json!({"kind": "trends", "series": [{"event": "$pageview"}], "date_from": "-30d", "interval": "day", "breakdown": {"property": "$browser", "limit": 5}}),
        ),
    ]
}

/// The sample cohorts [`populate`] makes: (name, the cohort's body with its name).
pub fn cohorts() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Pro and team plans",
            json!({"name": "Pro and team plans", "properties": [{"key": "plan", "operator": "exact", "value": ["pro", "team"]}]}),
        ),
        (
            "Repeat buyers",
            json!({"name": "Repeat buyers", "behaviour": [{"event": "purchase", "min_count": 2, "days": 30}]}),
        ),
    ]
}

/// The sample dashboard's name and description (its tiles: every one of [`insights`]).
pub const DASHBOARD: (&str, &str) = ("Shop overview", "Sample data: a month of a small shop");

/// Saves the sample insights, a dashboard of them and two cohorts in the account's project
/// (those already there by name are left as they are).
pub async fn populate(http: &reqwest::Client, account: &Account) -> Result<()> {
    let base = format!("{}/api/v1/projects/{}", account.api_url.trim_end_matches('/'), account.project_id);
    let names = |v: &Value| -> Vec<String> {
        let list = v.get("results").unwrap_or(v);
        list.as_array()
            .map(|a| a.iter().filter_map(|i| i["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let existing = call(http, reqwest::Method::GET, format!("{base}/cohorts"), &account.token, None).await?;
    let have = names(&existing);
    for (name, body) in cohorts() {
        if have.iter().any(|h| h == name) {
            continue;
        }
        let made = call(http, reqwest::Method::POST, format!("{base}/cohorts"), &account.token, Some(body)).await?;
        if let Some(id) = made["id"].as_i64() {
            call(http, reqwest::Method::POST, format!("{base}/cohorts/{id}/compute"), &account.token, None).await?;
        }
    }
    let existing = call(http, reqwest::Method::GET, format!("{base}/insights"), &account.token, None).await?;
    let list = existing.get("results").unwrap_or(&existing).as_array().cloned().unwrap_or_default();
    let mut ids = Vec::new();
    for (name, query) in insights() {
        let id = match list.iter().find(|i| i["name"].as_str() == Some(name)).and_then(|i| i["id"].as_i64()) {
            Some(id) => id,
            None => {
                let made = call(
                    http,
                    reqwest::Method::POST,
                    format!("{base}/insights"),
                    &account.token,
                    Some(json!({"name": name, "description": "Sample data", "query": query})),
                )
                .await?;
                made["id"].as_i64().ok_or_else(|| anyhow!("the new insight has no id: {made}"))?
            }
        };
        ids.push(id);
    }
    let dashboards = call(http, reqwest::Method::GET, format!("{base}/dashboards"), &account.token, None).await?;
    if !names(&dashboards).iter().any(|n| n == DASHBOARD.0) {
        let tiles: Vec<Value> = ids.iter().map(|id| json!({"insight_id": id})).collect();
        call(
            http,
            reqwest::Method::POST,
            format!("{base}/dashboards"),
            &account.token,
            Some(json!({"name": DASHBOARD.0, "description": DASHBOARD.1, "tiles": tiles})),
        )
        .await?;
    }
    Ok(())
}

/// Waits until the query service counts `expected` events in the account's project over the
/// period (the consumer has stored them), for at most `limit`.
pub async fn wait_stored(
    http: &reqwest::Client,
    account: &Account,
    days: i64,
    expected: u64,
    limit: Duration,
) -> Result<()> {
    let url = format!("{}/api/v1/projects/{}/query/trends", account.api_url.trim_end_matches('/'), account.project_id);
    let body = json!({"series": [{}], "date_from": format!("-{}d", days + 1), "interval": "month"});
    let started = std::time::Instant::now();
    loop {
        let v = call(http, reqwest::Method::POST, url.clone(), &account.token, Some(body.clone())).await?;
        let stored = v["results"][0]["aggregated_value"].as_f64().unwrap_or(0.0) as u64;
        if stored >= expected {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("{stored} of {expected} events stored after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
