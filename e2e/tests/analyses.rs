//! Stickiness, lifecycle, paths and sessions against the real ClickHouse engine, each on a data
//! set built for it, each answer compared with a plain reference implementation here (never the
//! service's SQL).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;
use serde_json::{json, Value};

mod query_support;
use query_support::*;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

fn us(v: &Value) -> Vec<u64> {
    v.as_array().map(|a| a.iter().map(u).collect()).unwrap_or_default()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn day_of(ts: i64, base: i64) -> i64 {
    (ts - base).div_euclid(DAY)
}

#[tokio::test]
async fn stickiness_and_lifecycle_match_a_reference() -> Result<()> {
    let s = setup(&[]).await?;
    let p = s.a.project_id;
    let mut r = Lcg(21);
    let mut events = Vec::new();
    // 60 users over days -4 … 9 from base; the range is days 0 … 6.
    for user in 0..60 {
        for d in -4..10i64 {
            if r.next(3) != 0 {
                continue;
            }
            for _ in 0..=r.next(2) {
                let browser = if r.next(2) == 0 { "Chrome" } else { "Firefox" };
                let ts = s.base + d * DAY + r.next(86_400) as i64 * 1000;
                events.push(Ev {
                    project: p,
                    event: "active".into(),
                    distinct_id: format!("u{user}"),
                    props: json!({"browser": browser}),
                    ts,
                });
            }
        }
        // Noise: another event, and the same event in the other project.
        events.push(Ev {
            project: p,
            event: "other".into(),
            distinct_id: format!("u{user}"),
            props: json!({}),
            ts: s.base + DAY,
        });
        events.push(Ev {
            project: s.b.project_id,
            event: "active".into(),
            distinct_id: format!("u{user}"),
            props: json!({}),
            ts: s.base + 2 * DAY,
        });
    }
    s.insert(&events).await?;
    let mine: Vec<&Ev> = events.iter().filter(|e| e.project == p && e.event == "active").collect();

    // Stickiness over days 0 … 6: persons by the number of days they were active on.
    let v = s
        .ok(
            "/query/stickiness",
            json!({"series": [{"event": "active"}, {"event": "active", "name": "chrome", "filters": [{"key": "browser", "value": "Chrome"}]}],
                   "date_from": day_text(s.base), "date_to": day_text(s.base + 6 * DAY), "interval": "day"}),
        )
        .await?;
    assert_eq!(u(&v["periods"]), 7, "{v}");
    for (i, chrome_only) in [(0, false), (1, true)] {
        let mut days: HashMap<&str, BTreeSet<i64>> = HashMap::new();
        for e in &mine {
            let d = day_of(e.ts, s.base);
            if (0..7).contains(&d) && (!chrome_only || e.props["browser"] == "Chrome") {
                days.entry(e.distinct_id.as_str()).or_default().insert(d);
            }
        }
        let mut want = vec![0u64; 7];
        for set in days.values() {
            want[set.len() - 1] += 1;
        }
        assert_eq!(us(&v["results"][i]["data"]), want, "stickiness series {i}: {v}");
        assert_eq!(u(&v["results"][i]["persons"]), days.len() as u64);
    }
    assert_eq!(v["results"][1]["label"], "chrome");
    // Weekly: 7 days from a Monday… the range's weeks, each person's distinct weeks.
    let v = s
        .ok("/query/stickiness", json!({"series": [{"event": "active"}], "date_from": day_text(s.base), "date_to": day_text(s.base + 6 * DAY), "interval": "week"}))
        .await?;
    let n = u(&v["periods"]) as usize;
    assert!(n == 1 || n == 2, "{v}");
    let total: u64 = us(&v["results"][0]["data"]).iter().sum();
    let persons: BTreeSet<&str> =
        mine.iter().filter(|e| (0..7).contains(&day_of(e.ts, s.base))).map(|e| e.distinct_id.as_str()).collect();
    assert_eq!(total, persons.len() as u64);

    // Lifecycle over days 1 … 6 (day 0 is the period before; first times from all history).
    let v = s
        .ok(
            "/query/lifecycle",
            json!({"event": {"event": "active"}, "date_from": day_text(s.base + DAY), "date_to": day_text(s.base + 6 * DAY), "interval": "day"}),
        )
        .await?;
    let mut active: HashMap<&str, BTreeSet<i64>> = HashMap::new();
    for e in &mine {
        active.entry(e.distinct_id.as_str()).or_default().insert(day_of(e.ts, s.base));
    }
    let (mut new, mut returning, mut resurrecting, mut dormant) =
        (vec![0u64; 6], vec![0u64; 6], vec![0u64; 6], vec![0u64; 6]);
    for days in active.values() {
        let first = *days.iter().next().unwrap_or(&i64::MAX);
        for (i, d) in (1..=6i64).enumerate() {
            let now = days.contains(&d);
            let before = days.contains(&(d - 1));
            if now && first == d {
                new[i] += 1;
            } else if now && before {
                returning[i] += 1;
            } else if now {
                resurrecting[i] += 1;
            } else if before {
                dormant[i] += 1;
            }
        }
    }
    assert_eq!(v["labels"].as_array().map(Vec::len), Some(6), "{v}");
    assert_eq!(us(&v["new"]), new, "new: {v}");
    assert_eq!(us(&v["returning"]), returning, "returning: {v}");
    assert_eq!(us(&v["resurrecting"]), resurrecting, "resurrecting: {v}");
    assert_eq!(us(&v["dormant"]), dormant, "dormant: {v}");
    assert!(new.iter().sum::<u64>() > 0 && resurrecting.iter().sum::<u64>() > 0, "the data set has every state");

    // Saved as insights and run as jobs like the others.
    let (status, body) = s
        .post(p, "/insights", json!({"name": "sticky", "query": {"kind": "stickiness", "series": [{"event": "active"}], "date_from": "-14d"}}))
        .await?;
    assert_eq!(status, 201, "{body}");
    let (status, result) =
        cairn_e2e::call("GET", &s.url(p, &format!("/insights/{}/result", body["id"])), Some(&s.a.access_token), None)
            .await?;
    assert_eq!(status, 200, "{result}");
    assert!(result["results"][0]["data"].is_array(), "{result}");
    // As a job (its kind is stored with it).
    let (status, job) = s
        .post(
            p,
            "/query-jobs",
            json!({"kind": "lifecycle", "query": {"event": {"event": "active"}, "date_from": "-7d"}}),
        )
        .await?;
    assert!(status == 202 || status == 200, "{status} {job}");
    let id = job["id"].as_str().unwrap_or_default().to_string();
    let done = std::sync::Mutex::new(Value::Null);
    cairn_e2e::wait_until("the lifecycle job", std::time::Duration::from_secs(30), || async {
        let got = cairn_e2e::call("GET", &s.url(p, &format!("/query-jobs/{id}")), Some(&s.a.access_token), None).await;
        let finished = matches!(&got, Ok((_, j)) if j["status"] == "done");
        if let Ok((_, j)) = got {
            *done.lock().unwrap_or_else(|e| e.into_inner()) = j;
        }
        finished
    })
    .await?;
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(done["result"]["new"].is_array(), "{done}");
    let (status, bad) =
        s.post(p, "/query/lifecycle", json!({"event": {"event": "active"}, "interval": "fortnight"})).await?;
    assert_eq!(status, 400, "{bad}");
    Ok(())
}

/// A person's path as the service defines it.
fn reference_path(mut events: Vec<(i64, String)>, start: Option<&str>, end: Option<&str>, depth: usize) -> Vec<String> {
    events.sort();
    let mut c: Vec<String> = Vec::new();
    for (_, el) in events {
        if c.last() != Some(&el) {
            c.push(el);
        }
    }
    let pos = |v: &[String], x: &str| v.iter().position(|e| e == x);
    match (start, end) {
        (None, None) => c.into_iter().take(depth).collect(),
        (Some(s), None) => match pos(&c, s) {
            Some(i) => c[i..].iter().take(depth).cloned().collect(),
            None => vec![],
        },
        (None, Some(e)) => match pos(&c, e) {
            Some(i) => c[(i + 1).saturating_sub(depth)..=i].to_vec(),
            None => vec![],
        },
        (Some(s), Some(e)) => match pos(&c, s) {
            Some(i) => match pos(&c[i..], e) {
                Some(j) => c[i..=i + j].iter().take(depth).cloned().collect(),
                None => vec![],
            },
            None => vec![],
        },
    }
}

#[tokio::test]
async fn paths_match_a_reference() -> Result<()> {
    let s = setup(&[]).await?;
    let p = s.a.project_id;
    let mut r = Lcg(5);
    let pages = ["/home", "/pricing", "/docs", "/signup", "/blog"];
    let mut events = Vec::new();
    for user in 0..80 {
        let mut ts = s.base + DAY + r.next(3600) as i64 * 1000;
        for _ in 0..(2 + r.next(8)) {
            let page = pages[r.next(pages.len() as u64) as usize];
            ts += 1000 + r.next(600) as i64 * 1000;
            let name = page.trim_start_matches('/').to_string();
            events.push(Ev { project: p, event: name, distinct_id: format!("p{user}"), props: json!({}), ts });
            ts += 500;
            events.push(Ev {
                project: p,
                event: "$pageview".into(),
                distinct_id: format!("p{user}"),
                props: json!({"$pathname": page}),
                ts,
            });
        }
    }
    s.insert(&events).await?;

    let range = json!({"date_from": day_text(s.base), "date_to": day_text(s.base + 3 * DAY)});
    for (path_type, start, end, depth) in [
        ("event", None, None, 4usize),
        ("event", Some("pricing"), None, 5),
        ("event", None, Some("signup"), 3),
        ("event", Some("home"), Some("signup"), 6),
        ("pathname", Some("/docs"), None, 4),
    ] {
        let mut body = range.clone();
        body["path_type"] = json!(path_type);
        body["depth"] = json!(depth);
        body["max_links"] = json!(500);
        if let Some(x) = start {
            body["start_point"] = json!(x);
        }
        if let Some(x) = end {
            body["end_point"] = json!(x);
        }
        if path_type == "event" {
            body["exclude"] = json!(["$pageview"]);
        }
        let v = s.ok("/query/paths", body.clone()).await?;
        let mut per_user: BTreeMap<&str, Vec<(i64, String)>> = BTreeMap::new();
        for e in &events {
            let el = match path_type {
                "event" if e.event != "$pageview" => e.event.clone(),
                "pathname" if e.event == "$pageview" => e.props["$pathname"].as_str().unwrap_or_default().to_string(),
                _ => continue,
            };
            per_user.entry(e.distinct_id.as_str()).or_default().push((e.ts, el));
        }
        let mut links: BTreeMap<(u64, String, String), u64> = BTreeMap::new();
        let mut persons = 0;
        for evs in per_user.values() {
            let path = reference_path(evs.clone(), start, end, depth);
            if !path.is_empty() {
                persons += 1;
            }
            for (i, w) in path.windows(2).enumerate() {
                *links.entry((i as u64 + 1, w[0].clone(), w[1].clone())).or_default() += 1;
            }
        }
        let got: BTreeMap<(u64, String, String), u64> = v["links"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| {
                        (
                            (
                                u(&l["step"]),
                                l["source"].as_str().unwrap_or_default().to_string(),
                                l["target"].as_str().unwrap_or_default().to_string(),
                            ),
                            u(&l["persons"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(got, links, "{body}");
        assert_eq!(u(&v["persons"]), persons, "{body}");
        assert!(!links.is_empty(), "{body}: the data set has paths");
        // Nodes at step 1 hold every person; nodes further on, those arriving by links.
        let step1: u64 =
            v["nodes"].as_array().into_iter().flatten().filter(|n| n["step"] == 1).map(|n| u(&n["persons"])).sum();
        assert!(step1 <= persons, "{v}");
    }
    let (status, v) = s.post(p, "/query/paths", json!({"depth": 30})).await?;
    assert_eq!((status, v["field"].as_str()), (400, Some("depth")), "{v}");
    Ok(())
}

struct RefSession {
    start: i64,
    duration: f64,
    events: usize,
    bounced: bool,
    entry: String,
    exit: String,
    plan_pro: bool,
    first_browser: String,
}

#[tokio::test]
async fn sessions_match_a_reference() -> Result<()> {
    let s = setup(&[]).await?;
    let p = s.a.project_id;
    let mut r = Lcg(77);
    let pages = ["/", "/pricing", "/docs", "/signup"];
    let mut events = Vec::new();
    for user in 0..50 {
        let browser = ["Chrome", "Safari"][r.next(2) as usize];
        let mut ts = s.base + r.next(3) as i64 * DAY + r.next(40_000) as i64 * 1000;
        let with_sid = user % 2 == 0;
        for visit in 0..(1 + r.next(4)) {
            let sid = format!("sid-{user}-{visit}");
            for _ in 0..(1 + r.next(5)) {
                let pageview = r.next(3) != 0;
                let mut props = json!({"$browser": browser});
                if with_sid {
                    props["$session_id"] = json!(sid);
                }
                if pageview {
                    props["$pathname"] = json!(pages[r.next(4) as usize]);
                }
                if r.next(6) == 0 {
                    props["plan"] = json!("pro");
                }
                let event = if pageview { "$pageview" } else { "click" };
                events.push(Ev { project: p, event: event.into(), distinct_id: format!("s{user}"), props, ts });
                ts += 1000 + r.next(300) as i64 * 1000;
            }
            // The next visit after more than 30 minutes (sessions without `$session_id` split
            // there; those with one by the id).
            ts += 31 * MINUTE + r.next(3) as i64 * HOUR;
        }
    }
    s.insert(&events).await?;

    // Reference sessions.
    let mut by_key: BTreeMap<String, Vec<&Ev>> = BTreeMap::new();
    let mut by_user: BTreeMap<&str, Vec<&Ev>> = BTreeMap::new();
    for e in &events {
        match e.props["$session_id"].as_str() {
            Some(sid) => by_key.entry(format!("s:{sid}")).or_default().push(e),
            None => by_user.entry(e.distinct_id.as_str()).or_default().push(e),
        }
    }
    for (user, mut evs) in by_user {
        evs.sort_by_key(|e| e.ts);
        let mut n = 0;
        let mut last = i64::MIN;
        for e in evs {
            if last == i64::MIN || e.ts - last > 30 * MINUTE {
                n += 1;
            }
            last = e.ts;
            by_key.entry(format!("d:{user}:{n}")).or_default().push(e);
        }
    }
    let sessions: Vec<RefSession> = by_key
        .values()
        .map(|evs| {
            let mut evs = evs.clone();
            evs.sort_by_key(|e| e.ts);
            let pvs: Vec<&&Ev> = evs.iter().filter(|e| e.event == "$pageview").collect();
            let start = evs[0].ts;
            let end = evs[evs.len() - 1].ts;
            let page = |e: Option<&&&Ev>| e.and_then(|e| e.props["$pathname"].as_str()).unwrap_or_default().to_string();
            RefSession {
                start,
                duration: (end - start) as f64 / 1000.0,
                events: evs.len(),
                bounced: pvs.len() <= 1 && end - start < 10_000,
                entry: page(pvs.first()),
                exit: page(pvs.last()),
                plan_pro: evs.iter().any(|e| e.props["plan"] == "pro"),
                first_browser: evs[0].props["$browser"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect();

    let check = |what: &str, got: &Value, sessions: &[&RefSession]| {
        let durations: Vec<f64> = sessions.iter().map(|x| x.duration).collect();
        let n = sessions.len() as f64;
        assert_eq!(u(&got["sessions"]), sessions.len() as u64, "{what}: {got}");
        if sessions.is_empty() {
            return;
        }
        for (field, want) in [
            ("median_duration_seconds", percentile(&durations, 0.5)),
            ("p90_duration_seconds", percentile(&durations, 0.9)),
            ("avg_duration_seconds", durations.iter().sum::<f64>() / n),
            ("avg_events_per_session", sessions.iter().map(|x| x.events as f64).sum::<f64>() / n),
            ("bounce_rate", sessions.iter().filter(|x| x.bounced).count() as f64 / n),
        ] {
            assert!(close(f(&got[field]), want), "{what}: {field} = {}, expected {want}", got[field]);
        }
    };

    let range =
        json!({"date_from": day_text(s.base), "date_to": day_text(s.base + 4 * DAY), "interval": "day", "limit": 10});
    let v = s.ok("/query/sessions", range.clone()).await?;
    let all: Vec<&RefSession> = sessions.iter().collect();
    check("totals", &v["totals"], &all);
    assert_eq!(v["series"].as_array().map(Vec::len), Some(5), "{v}");
    for d in 0..5 {
        let day: Vec<&RefSession> = sessions.iter().filter(|x| day_of(x.start, s.base) == d).collect();
        check(&format!("day {d}"), &v["series"][d as usize], &day);
    }
    for (field, pick) in [("entry_pages", 0), ("exit_pages", 1)] {
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for x in &sessions {
            let page = if pick == 0 { &x.entry } else { &x.exit };
            if !page.is_empty() {
                *want.entry(page.clone()).or_default() += 1;
            }
        }
        let got: BTreeMap<String, u64> = v[field]
            .as_array()
            .map(|a| {
                a.iter().map(|x| (x["pathname"].as_str().unwrap_or_default().to_string(), u(&x["sessions"]))).collect()
            })
            .unwrap_or_default();
        assert_eq!(got, want, "{field}");
    }
    assert!(sessions.iter().any(|x| x.bounced) && sessions.iter().any(|x| !x.bounced));

    // Session-level filters: sessions with a `plan = pro` event, longer than 60 s.
    let mut body = range.clone();
    body["filters"] = json!([{"key": "plan", "value": "pro"}]);
    body["min_duration_seconds"] = json!(60);
    let v = s.ok("/query/sessions", body).await?;
    let pro: Vec<&RefSession> = sessions.iter().filter(|x| x.plan_pro && x.duration >= 60.0).collect();
    assert!(!pro.is_empty());
    check("pro, 60 s or longer", &v["totals"], &pro);
    // Entered on /pricing.
    let mut body = range.clone();
    body["entry_pathname"] = json!("/pricing");
    let v = s.ok("/query/sessions", body).await?;
    let pricing: Vec<&RefSession> = sessions.iter().filter(|x| x.entry == "/pricing").collect();
    check("entered on /pricing", &v["totals"], &pricing);
    // Broken down by the first event's browser.
    let mut body = range.clone();
    body["breakdown"] = json!("$browser");
    let v = s.ok("/query/sessions", body).await?;
    for b in v["breakdown"].as_array().into_iter().flatten() {
        let value = b["value"].as_str().unwrap_or_default();
        let of: Vec<&RefSession> = sessions.iter().filter(|x| x.first_browser == value).collect();
        check(&format!("browser {value}"), b, &of);
    }
    assert_eq!(v["breakdown"].as_array().map(Vec::len), Some(2), "{v}");

    // Trends of unique sessions: distinct `$session_id`s per day (events without one not counted).
    let v = s
        .ok("/query/trends", json!({"series": [{"event": null, "math": "unique_sessions"}], "date_from": day_text(s.base), "date_to": day_text(s.base + 4 * DAY)}))
        .await?;
    let mut want = vec![0.0; 5];
    for d in 0..5 {
        let sids: std::collections::BTreeSet<&str> = events
            .iter()
            .filter(|e| day_of(e.ts, s.base) == d)
            .filter_map(|e| e.props["$session_id"].as_str())
            .collect();
        want[d as usize] = sids.len() as f64;
    }
    let got: Vec<f64> = v["results"][0]["data"].as_array().into_iter().flatten().map(f).collect();
    assert_eq!(got, want, "{v}");
    let all: std::collections::BTreeSet<&str> = events.iter().filter_map(|e| e.props["$session_id"].as_str()).collect();
    assert_eq!(f(&v["results"][0]["aggregated_value"]), all.len() as f64, "over the range, not the sum of days");

    // Trends filtered and broken down by session properties (sessions by `$session_id` over the
    // query's range; events without one have none).
    // `sessions` was built from `by_key` in its order.
    let by_sid: BTreeMap<&str, &RefSession> = by_key
        .values()
        .zip(&sessions)
        .filter_map(|(evs, x)| Some((evs[0].props["$session_id"].as_str()?, x)))
        .collect();
    let session_of = |e: &Ev| e.props["$session_id"].as_str().and_then(|sid| by_sid.get(sid).copied());
    let pageviews_per_day = |keep: &dyn Fn(&Ev) -> bool| {
        let mut want = vec![0.0; 5];
        for e in events.iter().filter(|e| e.event == "$pageview" && keep(e)) {
            want[day_of(e.ts, s.base) as usize] += 1.0;
        }
        want
    };
    let trend = |extra: Value| {
        let mut body = json!({"series": [{"event": "$pageview"}], "date_from": day_text(s.base), "date_to": day_text(s.base + 4 * DAY)});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        body
    };
    let data =
        |v: &Value, i: usize| -> Vec<f64> { v["results"][i]["data"].as_array().into_iter().flatten().map(f).collect() };
    // Pageviews in sessions of 60 s or longer.
    let v = s
        .ok(
            "/query/trends",
            trend(
                json!({"filters": [{"type": "session", "key": "$session_duration", "operator": "gte", "value": 60}]}),
            ),
        )
        .await?;
    let want = pageviews_per_day(&|e| session_of(e).is_some_and(|x| x.duration >= 60.0));
    assert!(want.iter().sum::<f64>() > 0.0);
    assert_eq!(data(&v, 0), want, "session duration filter: {v}");
    // In a series' filter too, and the other way: not bounced, entered on /pricing.
    let v = s
        .ok(
            "/query/trends",
            trend(json!({"series": [{"event": "$pageview", "filters": [
                {"type": "session", "key": "$is_bounce", "value": false},
                {"type": "session", "key": "$entry_pathname", "value": "/pricing"}]}]})),
        )
        .await?;
    let want = pageviews_per_day(&|e| session_of(e).is_some_and(|x| !x.bounced && x.entry == "/pricing"));
    assert_eq!(data(&v, 0), want, "bounce and entry filters: {v}");
    // Broken down by the session's entry page ($none: events without a session).
    let v = s
        .ok(
            "/query/trends",
            trend(json!({"breakdown": {"type": "session", "property": "$entry_pathname", "limit": 10}})),
        )
        .await?;
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.event == "$pageview") {
        let value = match session_of(e) {
            Some(x) if !x.entry.is_empty() => x.entry.clone(),
            Some(_) => String::new(),
            None => "$none".to_string(),
        };
        values.entry(value).or_insert_with(|| vec![0.0; 5])[day_of(e.ts, s.base) as usize] += 1.0;
    }
    let mut got: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (i, r) in v["results"].as_array().into_iter().flatten().enumerate() {
        got.insert(r["breakdown_value"].as_str().unwrap_or_default().to_string(), data(&v, i));
    }
    assert_eq!(got, values, "breakdown by entry page: {v}");
    // Elsewhere, and with keys that are no session property: 400 naming the field.
    let (status, v) = s
        .post(p, "/query/funnels", json!({"steps": [{"event": "$pageview"}, {"event": "click"}], "filters": [{"type": "session", "key": "$session_duration", "operator": "gt", "value": 1}]}))
        .await?;
    assert_eq!((status, v["field"].as_str()), (400, Some("filters[0].type")), "{v}");
    let (status, v) = s
        .post(p, "/query/trends", trend(json!({"filters": [{"type": "session", "key": "$browser", "value": "x"}]})))
        .await?;
    assert_eq!((status, v["field"].as_str()), (400, Some("filters[0].key")), "{v}");
    Ok(())
}
