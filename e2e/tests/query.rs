//! The query service against real PostgreSQL, the ClickHouse engine and the real auth service.
//!
//! Fixture events are written straight into ClickHouse; every expected number (trend buckets,
//! percentiles, breakdowns, formulas, funnel steps and times, retention cohorts) is computed
//! here from the fixture list in plain Rust, not with the service's SQL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::Result;
use cairn_e2e::{call, wait_until, Service};
use serde_json::{json, Value};

mod query_support;
use query_support::*;

const BROWSERS: [&str; 11] =
    ["Chrome", "Chrome", "Chrome", "Chrome", "Chrome", "Firefox", "Firefox", "Firefox", "Safari", "Safari", "Edge"];

/// Pageviews over 7 days for 40 users in project `project`, with browser and amount.
fn trend_fixtures(project: i64, base: i64, seed: u64) -> Vec<Ev> {
    let mut r = Lcg(seed);
    let mut out = Vec::new();
    for u in 0..40 {
        for d in 0..7 {
            if r.next(3) == 0 {
                continue;
            }
            for _ in 0..=r.next(4) {
                let ts = base + d * DAY + r.next(24) as i64 * HOUR + r.next(60) as i64 * MINUTE;
                let mut props = json!({"browser": BROWSERS[r.next(BROWSERS.len() as u64) as usize]});
                match r.next(10) {
                    0 => {}                                                       // no amount
                    1 => props["amount"] = json!(format!("{}", r.next(100) + 1)), // a numeric string
                    _ => props["amount"] = json!(r.next(100) as f64 + 0.5),
                }
                out.push(Ev { project, event: "pageview".into(), distinct_id: format!("user{u}"), props, ts });
            }
        }
        out.push(Ev {
            project,
            event: "signup".into(),
            distinct_id: format!("user{u}"),
            props: json!({}),
            ts: base + (u % 7) * DAY + HOUR,
        });
    }
    out
}

fn amount(e: &Ev) -> Option<f64> {
    match &e.props["amount"] {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn data(v: &Value) -> Vec<f64> {
    v["data"].as_array().map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()).unwrap_or_default()
}

fn assert_series(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: bucket count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(close(*g, *w), "{what}: bucket {i}: got {g}, expected {w}\n got {got:?}\nwant {want:?}");
    }
}

#[tokio::test]
async fn trends_match_an_independent_computation() -> Result<()> {
    let s = setup(&[]).await?;
    let a_events = trend_fixtures(s.a.project_id, s.base, 7);
    // Project B: the same shapes, many more, which must never show up in A's numbers.
    let b_events = trend_fixtures(s.b.project_id, s.base, 99);
    s.insert(&a_events).await?;
    s.insert(&b_events).await?;
    let from = day_text(s.base);
    let to = day_text(s.base + 6 * DAY);
    let pv: Vec<&Ev> = a_events.iter().filter(|e| e.event == "pageview").collect();
    let day_of = |e: &Ev, offset: i64| ((e.ts + offset - s.base).div_euclid(DAY)) as usize;

    // Count, unique users, property math and per-user math per UTC day, in one request.
    let v = s
        .ok(
            "/query/trends",
            json!({
                "series": [
                    {"event": "pageview"},
                    {"event": "pageview", "math": "unique_users"},
                    {"event": "pageview", "math": "sum", "math_property": "amount"},
                    {"event": "pageview", "math": "median", "math_property": "amount"},
                    {"event": "pageview", "math": "p90", "math_property": "amount"},
                    {"event": "pageview", "math": "per_user_avg"},
                    {"event": "pageview", "math": "per_user_max"},
                ],
                "date_from": from, "date_to": to, "interval": "day", "timezone": "UTC",
            }),
        )
        .await?;
    assert_eq!(v["labels"].as_array().map(Vec::len), Some(7), "{v}");
    let mut per_day: Vec<Vec<&Ev>> = vec![Vec::new(); 7];
    for e in &pv {
        per_day[day_of(e, 0)].push(e);
    }
    let count: Vec<f64> = per_day.iter().map(|d| d.len() as f64).collect();
    let uniques: Vec<f64> =
        per_day.iter().map(|d| d.iter().map(|e| &e.distinct_id).collect::<HashSet<_>>().len() as f64).collect();
    let amounts: Vec<Vec<f64>> = per_day.iter().map(|d| d.iter().filter_map(|e| amount(e)).collect()).collect();
    let sums: Vec<f64> = amounts.iter().map(|a| a.iter().sum()).collect();
    let medians: Vec<f64> = amounts.iter().map(|a| percentile(a, 0.5)).collect();
    let p90s: Vec<f64> = amounts.iter().map(|a| percentile(a, 0.9)).collect();
    let per_user: Vec<Vec<f64>> = per_day
        .iter()
        .map(|d| {
            let mut c: BTreeMap<&str, f64> = BTreeMap::new();
            for e in d {
                *c.entry(e.distinct_id.as_str()).or_default() += 1.0;
            }
            c.into_values().collect()
        })
        .collect();
    let pu_avg: Vec<f64> =
        per_user.iter().map(|c| if c.is_empty() { 0.0 } else { c.iter().sum::<f64>() / c.len() as f64 }).collect();
    let pu_max: Vec<f64> = per_user.iter().map(|c| c.iter().cloned().fold(0.0, f64::max)).collect();
    let r = &v["results"];
    assert_series("total", &data(&r[0]), &count);
    assert_series("unique users", &data(&r[1]), &uniques);
    assert_series("sum(amount)", &data(&r[2]), &sums);
    assert_series("median(amount)", &data(&r[3]), &medians);
    assert_series("p90(amount)", &data(&r[4]), &p90s);
    assert_series("per-user avg", &data(&r[5]), &pu_avg);
    assert_series("per-user max", &data(&r[6]), &pu_max);
    assert!(close(r[0]["total"].as_f64().unwrap_or(0.0), pv.len() as f64));
    // Over the whole range: additive maths sum their buckets; the others are computed anew.
    let agg = |i: usize| r[i]["aggregated_value"].as_f64().unwrap_or(f64::NAN);
    assert!(close(agg(0), pv.len() as f64));
    let all_users = pv.iter().map(|e| &e.distinct_id).collect::<HashSet<_>>().len() as f64;
    assert!(close(agg(1), all_users), "unique users over the range: {} vs {all_users}", agg(1));
    assert!(all_users < uniques.iter().sum::<f64>(), "the fixture has users active on several days");
    let all_amounts: Vec<f64> = pv.iter().filter_map(|e| amount(e)).collect();
    assert!(close(agg(2), all_amounts.iter().sum()));
    assert!(close(agg(3), percentile(&all_amounts, 0.5)), "median over the range");

    // Another timezone moves events between days (Tokyo is UTC+9, no DST); empty buckets are 0.
    let v = s
        .ok("/query/trends", json!({"series": [{"event": "pageview"}], "date_from": from, "date_to": day_text(s.base + 8 * DAY), "timezone": "Asia/Tokyo"}))
        .await?;
    let mut tokyo = vec![0.0; 9];
    for e in &pv {
        let local = e.ts + 9 * HOUR;
        if local >= s.base && local < s.base + 9 * DAY {
            tokyo[day_of(e, 9 * HOUR)] += 1.0;
        }
    }
    assert_series("Tokyo days", &data(&v["results"][0]), &tokyo);
    assert_eq!(v["labels"][0], json!(format!("{from}T00:00:00+09:00")));
    assert_eq!(tokyo[8], 0.0, "a day without events is filled with 0");

    // Filters: equals (any of), not equals, contains, greater than, is set.
    type Case = (Value, Box<dyn Fn(&Ev) -> bool>);
    let cases: Vec<Case> = vec![
        (
            json!({"key": "browser", "value": ["Chrome", "Edge"]}),
            Box::new(|e: &Ev| e.props["browser"] == "Chrome" || e.props["browser"] == "Edge"),
        ),
        (
            json!({"key": "browser", "operator": "is_not", "value": "Chrome"}),
            Box::new(|e: &Ev| e.props["browser"] != "Chrome"),
        ),
        (
            json!({"key": "browser", "operator": "contains", "value": "fire"}),
            Box::new(|e: &Ev| e.props["browser"] == "Firefox"),
        ),
        (
            json!({"key": "amount", "operator": "gt", "value": 50}),
            Box::new(|e: &Ev| amount(e).is_some_and(|a| a > 50.0)),
        ),
        (
            json!({"key": "amount", "operator": "lte", "value": "20"}),
            Box::new(|e: &Ev| amount(e).is_some_and(|a| a <= 20.0)),
        ),
        (json!({"key": "amount", "operator": "is_not_set"}), Box::new(|e: &Ev| e.props.get("amount").is_none())),
    ];
    for (filter, keep) in cases {
        let v = s
            .ok(
                "/query/trends",
                json!({"series": [{"event": "pageview"}], "date_from": from, "date_to": to, "filters": [filter]}),
            )
            .await?;
        let mut want = vec![0.0; 7];
        for e in pv.iter().filter(|e| keep(e)) {
            want[day_of(e, 0)] += 1.0;
        }
        assert_series(&format!("filter {filter}"), &data(&v["results"][0]), &want);
    }

    // Breakdown by browser, top 2 plus other; and a formula across two series.
    let v = s
        .ok(
            "/query/trends",
            json!({
                "series": [{"event": "pageview"}, {"event": "pageview", "math": "unique_users"}],
                "date_from": from, "date_to": to,
                "breakdown": {"property": "browser", "limit": 2},
                "formula": "A / B",
            }),
        )
        .await?;
    let mut by_browser: HashMap<&str, usize> = HashMap::new();
    for e in &pv {
        *by_browser.entry(e.props["browser"].as_str().unwrap_or("")).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = by_browser.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<&str> = ranked.iter().take(2).map(|r| r.0).collect();
    let results = v["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 6, "2 series x (2 values + other): {v}");
    for (value, members) in
        [(top[0], vec![top[0]]), (top[1], vec![top[1]]), ("$other", ranked.iter().skip(2).map(|r| r.0).collect())]
    {
        let events: Vec<&&Ev> =
            pv.iter().filter(|e| members.contains(&e.props["browser"].as_str().unwrap_or(""))).collect();
        let mut counts = vec![0.0; 7];
        let mut users: Vec<HashSet<&str>> = vec![HashSet::new(); 7];
        for e in &events {
            counts[day_of(e, 0)] += 1.0;
            users[day_of(e, 0)].insert(&e.distinct_id);
        }
        let uniq: Vec<f64> = users.iter().map(|u| u.len() as f64).collect();
        let find = |series: u64| {
            results
                .iter()
                .find(|r| r["series"] == series && r["breakdown_value"] == value)
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_series(&format!("breakdown {value} count"), &data(&find(0)), &counts);
        assert_series(&format!("breakdown {value} uniques"), &data(&find(1)), &uniq);
        let formula = v["formula"]
            .as_array()
            .and_then(|f| f.iter().find(|r| r["breakdown_value"] == value))
            .cloned()
            .unwrap_or(Value::Null);
        for d in 0..7 {
            let got = &formula["data"][d];
            if uniq[d] == 0.0 {
                assert!(got.is_null(), "A / B with B = 0 has no value: {got}");
            } else {
                assert!(close(got.as_f64().unwrap_or(f64::NAN), counts[d] / uniq[d]), "formula {value} day {d}: {got}");
            }
        }
    }

    // Weekly and hourly buckets.
    let v = s
        .ok(
            "/query/trends",
            json!({"series": [{"event": "pageview"}], "date_from": from, "date_to": to, "interval": "hour"}),
        )
        .await?;
    assert_eq!(v["labels"].as_array().map(Vec::len), Some(7 * 24));
    assert!(close(data(&v["results"][0]).iter().sum(), pv.len() as f64));
    let v =
        s.ok("/query/trends", json!({"series": [{}], "date_from": from, "date_to": to, "interval": "week"})).await?;
    assert!(close(data(&v["results"][0]).iter().sum(), a_events.len() as f64), "every event of A, none of B: {v}");
    Ok(())
}

/// The furthest chain through one user's events (time-ordered; bit k of the mask: the event can
/// serve step k), found exhaustively (not by the service's walk): the earliest first step among
/// chains of that length; each later step the earliest possible. Returns the step times.
fn best_chain(events: &[(i64, u32)], steps: usize, window: i64, strict: bool) -> Vec<i64> {
    let mut best: Vec<i64> = Vec::new();
    for (i, &(t0, m0)) in events.iter().enumerate() {
        if m0 & 1 == 0 {
            continue;
        }
        let mut chain = vec![t0];
        let mut last = i;
        'grow: while chain.len() < steps {
            for (j, &(t, m)) in events.iter().enumerate().skip(last + 1) {
                if t - t0 > window {
                    break 'grow;
                }
                if m >> chain.len() & 1 == 1 {
                    chain.push(t);
                    last = j;
                    continue 'grow;
                }
                if strict {
                    break 'grow;
                }
            }
            break;
        }
        if chain.len() > best.len() {
            best = chain;
        }
    }
    best
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

#[tokio::test]
async fn funnels_and_retention_match_an_independent_computation() -> Result<()> {
    let s = setup(&[]).await?;
    let p = s.a.project_id;
    let mut events = Vec::new();
    let mut r = Lcg(3);
    // Funnel: view → signup → pay, six behaviours, random gaps.
    for u in 0..60i64 {
        let id = format!("fu{u}");
        let t = s.base + (u % 5) * DAY + (r.next(10) as i64) * HOUR;
        let plan = if u % 2 == 0 { "pro" } else { "free" };
        let ev = |name: &str, ts: i64| Ev {
            project: p,
            event: name.into(),
            distinct_id: id.clone(),
            props: json!({"plan": plan}),
            ts,
        };
        let g1 = (r.next(120) as i64 + 1) * MINUTE;
        let g2 = (r.next(300) as i64 + 1) * MINUTE;
        events.push(ev("f_view", t));
        match u % 6 {
            0 => {
                events.push(ev("f_signup", t + g1));
                events.push(ev("f_pay", t + g1 + g2));
            }
            1 => events.push(ev("f_signup", t + g1)),
            2 => {}
            3 => {
                events.push(ev("f_pay", t + g1));
                events.push(ev("f_signup", t + g1 + g2));
            }
            4 => events.push(ev("f_signup", t + 30 * HOUR)),
            _ => {
                events.push(ev("f_noise", t + MINUTE / 2));
                events.push(ev("f_signup", t + g1));
                events.push(ev("f_view", t + g1 + MINUTE));
                events.push(ev("f_pay", t + g1 + g2));
            }
        }
    }
    // Project B does the whole funnel many times: none of it may count for A.
    for u in 0..50i64 {
        for (k, name) in ["f_view", "f_signup", "f_pay"].iter().enumerate() {
            events.push(Ev {
                project: s.b.project_id,
                event: name.to_string(),
                distinct_id: format!("b{u}"),
                props: json!({"plan": "pro"}),
                ts: s.base + DAY + k as i64 * MINUTE,
            });
        }
    }
    s.insert(&events).await?;
    let from = day_text(s.base);
    let to = day_text(s.base + 6 * DAY);
    let names = ["f_view", "f_signup", "f_pay"];
    let window = DAY;

    let expected = |strict: bool, plan: Option<&str>| -> (Vec<u64>, Vec<Option<f64>>) {
        let mut per_user: BTreeMap<&str, Vec<(i64, u32, &str)>> = BTreeMap::new();
        for e in events.iter().filter(|e| e.project == p && e.ts >= s.base && e.ts < s.base + 7 * DAY) {
            let mask = names.iter().position(|n| *n == e.event).map_or(0, |k| 1u32 << k);
            if mask == 0 && !strict {
                continue;
            }
            per_user.entry(&e.distinct_id).or_default().push((e.ts, mask, e.props["plan"].as_str().unwrap_or("")));
        }
        let mut counts = vec![0u64; 3];
        let mut gaps: Vec<Vec<f64>> = vec![Vec::new(); 3];
        for evs in per_user.values_mut() {
            evs.sort();
            if plan.is_some_and(|pl| evs.first().map(|e| e.2) != Some(pl)) {
                continue;
            }
            let chain = best_chain(&evs.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(), 3, window, strict);
            for k in 0..chain.len() {
                counts[k] += 1;
                if k > 0 {
                    gaps[k].push((chain[k] - chain[k - 1]) as f64 / 1000.0);
                }
            }
        }
        (counts, gaps.iter_mut().map(|g| median(g)).collect())
    };

    for order in ["ordered", "strict"] {
        let v = s
            .ok(
                "/query/funnels",
                json!({
                    "steps": [{"event": "f_view"}, {"event": "f_signup"}, {"event": "f_pay"}],
                    "date_from": from, "date_to": to, "order": order,
                    "conversion_window": {"value": 1, "unit": "day"},
                }),
            )
            .await?;
        let (counts, medians) = expected(order == "strict", None);
        let got: Vec<u64> = v["steps"]
            .as_array()
            .map(|a| a.iter().map(|s| s["count"].as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        assert_eq!(got, counts, "{order} funnel counts: {v}");
        assert!(counts[2] > 0 && counts[2] < counts[1] && counts[1] < counts[0], "a funnel that narrows: {counts:?}");
        for k in 1..3 {
            let m = v["steps"][k]["median_time_to_convert_seconds"].as_f64();
            match (m, medians[k]) {
                (Some(g), Some(w)) => assert!(close(g, w), "{order} step {k} median: {g} vs {w}"),
                (g, w) => assert_eq!(g, w, "{order} step {k} median"),
            }
        }
        let rate = v["steps"][2]["conversion_rate"].as_f64().unwrap_or(-1.0);
        assert!(close(rate, counts[2] as f64 / counts[0] as f64), "{order} conversion rate {rate}");
    }
    // Breakdown by the first step's plan.
    let v = s
        .ok(
            "/query/funnels",
            json!({
                "steps": [{"event": "f_view"}, {"event": "f_signup"}, {"event": "f_pay"}],
                "date_from": from, "date_to": to, "conversion_window": {"value": 24, "unit": "hour"},
                "breakdown": {"property": "plan"},
            }),
        )
        .await?;
    for plan in ["pro", "free"] {
        let (counts, _) = expected(false, Some(plan));
        let b = v["breakdown"]
            .as_array()
            .and_then(|a| a.iter().find(|b| b["breakdown_value"] == plan))
            .cloned()
            .unwrap_or(Value::Null);
        let got: Vec<u64> = b["steps"]
            .as_array()
            .map(|a| a.iter().map(|s| s["count"].as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        assert_eq!(got, counts, "breakdown {plan}: {v}");
    }
    // Step filters: only views of the pro plan start the funnel.
    let v = s
        .ok(
            "/query/funnels",
            json!({"steps": [{"event": "f_view", "filters": [{"key": "plan", "value": "pro"}]}, {"event": "f_signup"}], "date_from": from, "date_to": to}),
        )
        .await?;
    assert_eq!(v["steps"][0]["count"], json!(30), "{v}");

    // Random sequences against the exhaustive search: repeated steps, other events in between,
    // steps out of order, gaps exactly at the window's edge, one event serving two steps.
    let mut rnd = Vec::new();
    let window = 6 * HOUR;
    for u in 0..300i64 {
        let id = format!("gu{u}");
        let mut t = s.base + DAY + (u % 24) * HOUR;
        for _ in 0..r.next(14) {
            t += match r.next(6) {
                0 => window,
                1 => 1,
                2 => r.next(60) as i64 * MINUTE + 1,
                _ => r.next(4 * 60) as i64 * MINUTE + 7,
            };
            let name = ["g_a", "g_a", "g_b", "g_c", "g_x"][r.next(5) as usize];
            rnd.push(Ev { project: p, event: name.into(), distinct_id: id.clone(), props: json!({}), ts: t });
        }
    }
    s.insert(&rnd).await?;
    // The longest funnel allowed by default: 10 steps.
    let long: Vec<&str> = (0..10).map(|k| ["g_a", "g_b", "g_c", "g_x"][k % 4]).collect();
    let cases: [(&[&str], bool); 6] = [
        (&["g_a", "g_b", "g_c"], false),
        (&["g_a", "g_b", "g_c"], true),
        (&["g_a", "g_a", "g_b"], false),
        (&["g_a", "g_a", "g_b"], true),
        (&long, false),
        (&long, true),
    ];
    for (steps, strict) in cases {
        let n = steps.len();
        let mut per_user: BTreeMap<&str, Vec<(i64, u32)>> = BTreeMap::new();
        for e in &rnd {
            let mask = steps.iter().enumerate().filter(|(_, n)| **n == e.event).fold(0u32, |m, (k, _)| m | 1 << k);
            if mask != 0 || strict {
                per_user.entry(&e.distinct_id).or_default().push((e.ts, mask));
            }
        }
        let mut counts = vec![0u64; n];
        let mut gaps: Vec<Vec<f64>> = vec![Vec::new(); n];
        for evs in per_user.values_mut() {
            evs.sort();
            let chain = best_chain(evs, n, window, strict);
            for k in 0..chain.len() {
                counts[k] += 1;
                if k > 0 {
                    gaps[k].push((chain[k] - chain[k - 1]) as f64 / 1000.0);
                }
            }
        }
        let body = json!({
            "steps": steps.iter().map(|e| json!({"event": e})).collect::<Vec<_>>(),
            "date_from": from, "date_to": to, "order": if strict { "strict" } else { "ordered" },
            "conversion_window": {"value": 6, "unit": "hour"},
        });
        let v = s.ok("/query/funnels", body).await?;
        let got: Vec<u64> = v["steps"]
            .as_array()
            .map(|a| a.iter().map(|s| s["count"].as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        assert_eq!(got, counts, "{steps:?} strict={strict}: {v}");
        assert!(counts[2] > 0 && counts[0] > counts[2], "{steps:?} strict={strict}: a funnel that narrows: {counts:?}");
        for k in 1..n {
            let m = v["steps"][k]["median_time_to_convert_seconds"].as_f64();
            match (m, median(&mut gaps[k])) {
                (Some(g), Some(w)) => assert!(close(g, w), "{steps:?} strict={strict} step {k} median: {g} vs {w}"),
                (g, w) => assert_eq!(g, w, "{steps:?} strict={strict} step {k} median"),
            }
        }
    }

    // Retention: users active on chosen days; some were first seen long before.
    let mut ret = Vec::new();
    let active: Vec<(String, Vec<i64>)> = (0..25)
        .map(|u| (format!("ru{u}"), (0..5).filter(|d| (u * 7 + d * 3) % 5 < 2 || d == &(u % 5)).collect()))
        .collect();
    for (id, days) in &active {
        for d in days {
            ret.push(Ev {
                project: p,
                event: "r_active".into(),
                distinct_id: id.clone(),
                props: json!({}),
                ts: s.base + d * DAY + 5 * HOUR,
            });
        }
    }
    let veterans: HashSet<String> = (0..25).filter(|u| u % 4 == 0).map(|u| format!("ru{u}")).collect();
    for id in &veterans {
        ret.push(Ev {
            project: p,
            event: "r_active".into(),
            distinct_id: id.clone(),
            props: json!({}),
            ts: s.base - 20 * DAY,
        });
    }
    s.insert(&ret).await?;
    for kind in ["recurring", "first_time"] {
        let v = s
            .ok(
                "/query/retention",
                json!({"target_event": {"event": "r_active"}, "retention_type": kind, "period": "day", "periods": 5, "date_to": day_text(s.base + 4 * DAY)}),
            )
            .await?;
        for c in 0..5i64 {
            let members: Vec<&(String, Vec<i64>)> = active
                .iter()
                .filter(|(id, days)| {
                    if kind == "recurring" {
                        days.contains(&c)
                    } else {
                        !veterans.contains(id) && days.iter().min() == Some(&c)
                    }
                })
                .collect();
            let want: Vec<u64> = (0..5 - c)
                .map(|k| members.iter().filter(|(_, days)| k == 0 || days.contains(&(c + k))).count() as u64)
                .collect();
            let got: Vec<u64> = v["cohorts"][c as usize]["values"]
                .as_array()
                .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
                .unwrap_or_default();
            assert_eq!(got, want, "{kind} cohort {c}: {v}");
        }
        assert_eq!(v["cohorts"][0]["date"], json!(format!("{from}T00:00:00+00:00")));
    }
    Ok(())
}

#[tokio::test]
async fn explorer_pickers_insights_and_dashboards() -> Result<()> {
    let s = setup(&[]).await?;
    let p = s.a.project_id;
    let mut events = Vec::new();
    for i in 0..30i64 {
        events.push(Ev {
            project: p,
            event: if i % 3 == 0 { "signup".into() } else { "pageview".into() },
            distinct_id: format!("u{}", i % 4),
            props: json!({"path": format!("/p{}", i % 5), "n": i}),
            ts: s.base + 2 * DAY + i * MINUTE,
        });
    }
    s.insert(&events).await?;
    let t = Some(s.a.access_token.as_str());

    // Pages of 7, newest first, every event once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = s.url(p, "/events?limit=7&date_from=-30d");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, v) = call("GET", &url, t, None).await?;
        assert_eq!(status, 200, "{v}");
        pages += 1;
        for e in v["results"].as_array().cloned().unwrap_or_default() {
            seen.push((e["timestamp"].as_str().unwrap_or("").to_string(), e["properties"]["n"].as_i64().unwrap_or(-1)));
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let ns: Vec<i64> = seen.iter().map(|s| s.1).collect();
    assert_eq!(ns, (0..30).rev().collect::<Vec<_>>(), "newest first, each once");

    // Filters on the list; a person's timeline.
    let (_, v) = call(
        "GET",
        &s.url(p, "/events?event=signup&properties=%5B%7B%22key%22%3A%22path%22%2C%22value%22%3A%22%2Fp0%22%7D%5D"),
        t,
        None,
    )
    .await?;
    let want = events.iter().filter(|e| e.event == "signup" && e.props["path"] == "/p0").count();
    assert_eq!(v["results"].as_array().map(Vec::len), Some(want), "{v}");
    let (_, v) = call("GET", &s.url(p, "/persons/u1/events"), t, None).await?;
    assert_eq!(v["results"].as_array().map(Vec::len), Some(events.iter().filter(|e| e.distinct_id == "u1").count()));

    // Pickers with counts.
    let (_, v) = call("GET", &s.url(p, "/event-names"), t, None).await?;
    assert_eq!(v["results"], json!([{"name": "pageview", "count": 20}, {"name": "signup", "count": 10}]));
    let (_, v) = call("GET", &s.url(p, "/property-keys?event=pageview"), t, None).await?;
    assert_eq!(v["results"], json!([{"name": "n", "count": 20}, {"name": "path", "count": 20}]));
    let (_, v) = call("GET", &s.url(p, "/property-values?key=path&limit=2"), t, None).await?;
    assert_eq!(v["results"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["results"][0]["count"], json!(6));

    // One public API: auth's routes answer through query; its internal ones do not.
    let (status, me) = call("GET", &s.query.url("/api/v1/me"), t, None).await?;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["email"].as_str().or(me["email"].as_str()), Some(s.a.email.as_str()), "{me}");
    let (status, _) =
        call("POST", &s.query.url("/internal/v1/authenticate"), None, Some(&json!({"credential": s.a.access_token})))
            .await?;
    assert_eq!(status, 404);

    // Insights: create (checked), list, read, run, update, delete.
    let (status, v) = call(
        "POST",
        &s.url(p, "/insights"),
        t,
        Some(&json!({"name": "Bad", "query": {"kind": "trends", "series": [{"event": "x", "math": "mode"}]}})),
    )
    .await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["field"].as_str().unwrap_or("").starts_with("query"), "{v}");
    let query = json!({"kind": "trends", "series": [{"event": "pageview"}], "date_from": day_text(s.base), "date_to": day_text(s.base + 6 * DAY)});
    let (status, insight) = call(
        "POST",
        &s.url(p, "/insights"),
        t,
        Some(&json!({"name": "Pageviews", "query": query, "display": {"chart": "line"}})),
    )
    .await?;
    assert_eq!(status, 201, "{insight}");
    let id = insight["id"].as_i64().unwrap_or(0);
    let (_, list) = call("GET", &s.url(p, "/insights"), t, None).await?;
    assert_eq!(list["total"], json!(1));
    let (status, result) = call("GET", &s.url(p, &format!("/insights/{id}/result")), t, None).await?;
    assert_eq!(status, 200, "{result}");
    assert!(close(result["results"][0]["total"].as_f64().unwrap_or(0.0), 20.0), "{result}");
    let (status, v) = call("PATCH", &s.url(p, &format!("/insights/{id}")), t, Some(&json!({"name": "Views"}))).await?;
    assert_eq!((status, v["name"].clone(), v["display"]["chart"].clone()), (200, json!("Views"), json!("line")));

    // Dashboards with tiles; a tile may only show an insight of the same project.
    let (status, d) = call(
        "POST",
        &s.url(p, "/dashboards"),
        t,
        Some(&json!({"name": "Main", "tiles": [{"insight_id": id, "layout": {"x": 0, "w": 6}}]})),
    )
    .await?;
    assert_eq!(status, 201, "{d}");
    assert_eq!(d["tiles"][0]["insight"]["name"], json!("Views"));
    let did = d["id"].as_i64().unwrap_or(0);
    let (status, b_insight) = call(
        "POST",
        &s.url(s.b.project_id, "/insights"),
        Some(&s.b.access_token),
        Some(&json!({"name": "B's", "query": {"kind": "trends", "series": [{}]}})),
    )
    .await?;
    assert_eq!(status, 201);
    let (status, v) = call(
        "PATCH",
        &s.url(p, &format!("/dashboards/{did}")),
        t,
        Some(&json!({"tiles": [{"insight_id": b_insight["id"]}]})),
    )
    .await?;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["field"], json!("tiles"));
    let (status, _) = call("DELETE", &s.url(p, &format!("/insights/{id}")), t, None).await?;
    assert_eq!(status, 204);
    let (_, d) = call("GET", &s.url(p, &format!("/dashboards/{did}")), t, None).await?;
    assert_eq!(d["tiles"], json!([]), "deleting an insight removes its tiles");
    let (status, _) = call("DELETE", &s.url(p, &format!("/dashboards/{did}")), t, None).await?;
    assert_eq!(status, 204);
    let (status, _) = call("GET", &s.url(p, &format!("/dashboards/{did}")), t, None).await?;
    assert_eq!(status, 404);
    Ok(())
}

/// Strings that would break out of a pasted SQL literal or placeholder.
const EVIL: &[&str] = &[
    "'",
    "\\'",
    "' OR 1=1 --",
    "x') OR project_id != 0 OR ('",
    "{p0:UInt64}",
    "\\\\'; DROP TABLE events; --",
    "\t\n\r\0",
    "%s%s%n",
    "\u{202e}é漢字😀",
];

#[tokio::test]
async fn projects_are_isolated_and_injection_is_inert() -> Result<()> {
    let s = setup(&[("CAIRN_AUTH_CACHE_TTL_SECS", "1")]).await?;
    let (pa, pb) = (s.a.project_id, s.b.project_id);
    let mut events = trend_fixtures(pb, s.base, 5);
    // One event of A whose property holds each evil string, to check exact round trips.
    for (i, e) in EVIL.iter().enumerate() {
        events.push(Ev {
            project: pa,
            event: "evil".into(),
            distinct_id: format!("e{i}"),
            props: json!({"v": e, *e: "k"}),
            ts: s.base + DAY + i as i64 * MINUTE,
        });
    }
    s.insert(&events).await?;
    let from = day_text(s.base);
    let to = day_text(s.base + 6 * DAY);
    let total_before = s.ch.scalar("SELECT count() FROM events").await?;

    // A's credentials on B's project: 404 everywhere, whatever the route.
    for (method, path, body) in [
        ("POST", "/query/trends", Some(json!({"series": [{}], "date_from": from}))),
        ("POST", "/query/funnels", Some(json!({"steps": [{}, {}]}))),
        ("POST", "/query/retention", Some(json!({"target_event": {}}))),
        ("GET", "/events", None),
        ("GET", "/persons/user1/events", None),
        ("GET", "/event-names", None),
        ("GET", "/property-keys", None),
        ("GET", "/property-values?key=browser", None),
        ("GET", "/insights", None),
        ("GET", "/dashboards", None),
        ("POST", "/insights", Some(json!({"name": "x", "query": {"kind": "trends", "series": [{}]}}))),
    ] {
        let (status, v) = call(method, &s.url(pb, path), Some(&s.a.access_token), body.as_ref()).await?;
        assert_eq!(status, 404, "{method} {path}: {v}");
        assert!(!v.to_string().contains("pageview"), "{v}");
    }
    for bad in ["0", "-1", "99999999", "1%20OR%201=1", "abc"] {
        let (status, _) =
            call("GET", &s.query.url(&format!("/api/v1/projects/{bad}/events")), Some(&s.a.access_token), None).await?;
        assert!(status == 404 || status == 400, "project {bad}: {status}");
    }

    // Without, or with a bad, credential: 401.
    let (status, v) = call("GET", &s.url(pa, "/events"), None, None).await?;
    assert_eq!(status, 401, "{v}");
    let (status, _) = call("GET", &s.url(pa, "/events"), Some("eyJhbGciOiJub25lIn0.e30."), None).await?;
    assert_eq!(status, 401);

    // Evil strings in every string parameter: answered (200 with nothing of B, or 400), never an
    // error of the database, and the data is intact afterwards.
    for evil in EVIL {
        let bodies = [
            ("/query/trends", json!({"series": [{"event": evil}], "date_from": from, "date_to": to})),
            (
                "/query/trends",
                json!({"series": [{"event": "pageview", "filters": [{"key": evil, "value": evil}]}], "date_from": from}),
            ),
            (
                "/query/trends",
                json!({"series": [{"event": "pageview", "math": "sum", "math_property": evil}], "date_from": from}),
            ),
            ("/query/trends", json!({"series": [{}], "date_from": from, "breakdown": {"property": evil}})),
            (
                "/query/trends",
                json!({"series": [{}], "date_from": from, "filters": [{"key": "browser", "operator": "contains", "value": evil}]}),
            ),
            ("/query/trends", json!({"series": [{}], "timezone": evil})),
            ("/query/trends", json!({"series": [{}], "date_from": evil})),
            ("/query/trends", json!({"series": [{}], "formula": evil})),
            ("/query/funnels", json!({"steps": [{"event": evil}, {"event": "pageview"}], "date_from": from})),
            (
                "/query/retention",
                json!({"target_event": {"event": evil, "filters": [{"key": evil, "operator": "is_set"}]}}),
            ),
        ];
        for (path, body) in bodies {
            let (status, v) = s.post(pa, path, body.clone()).await?;
            assert!(status == 200 || status == 400, "{path} {body}: {status} {v}");
            if status == 400 {
                assert!(v["field"].is_string(), "a 400 names the field: {v}");
            }
            let text = v.to_string();
            assert!(!text.contains("Chrome") && !text.contains("Code:"), "{path} {body}: {text}");
            if path == "/query/trends" && status == 200 {
                let total: f64 = v["results"]
                    .as_array()
                    .map(|r| r.iter().map(|x| x["total"].as_f64().unwrap_or(0.0)).sum())
                    .unwrap_or(0.0);
                assert!(total <= EVIL.len() as f64, "only A's evil events can match: {text}");
            }
        }
        let q = urlencode(evil);
        for path in [
            format!("/events?event={q}"),
            format!("/events?distinct_id={q}"),
            format!("/events?cursor={q}"),
            format!("/events?properties={q}"),
            format!("/persons/{q}/events"),
            format!("/property-values?key={q}"),
            format!("/property-keys?event={q}"),
        ] {
            let (status, v) = call("GET", &s.url(pa, &path), Some(&s.a.access_token), None).await?;
            assert!(status == 200 || status == 400 || status == 404, "{path}: {status} {v}");
            assert!(!v.to_string().contains("Chrome"), "{path}: {v}");
        }
        // The evil value itself is found exactly once, as a value and as a key.
        let v = s.ok("/query/trends", json!({"series": [{"event": "evil", "filters": [{"key": "v", "value": evil}]}], "date_from": from, "date_to": to})).await?;
        assert_eq!(v["results"][0]["total"], json!(1.0), "{evil:?}: {v}");
        let v = s.ok("/query/trends", json!({"series": [{"event": "evil", "filters": [{"key": evil, "operator": "is_set"}]}], "date_from": from, "date_to": to})).await?;
        assert_eq!(v["results"][0]["total"], json!(1.0), "key {evil:?}: {v}");
    }
    assert_eq!(s.ch.scalar("SELECT count() FROM events").await?, total_before, "nothing was changed");

    // A personal key limited to reading: reads work, writes are refused, revocation is felt
    // within the cache's lifetime.
    let auth_url = s.env.get("CAIRN_AUTH_URL").cloned().unwrap_or_default();
    let (status, key) = call(
        "POST",
        &format!("{auth_url}/api/v1/personal-keys"),
        Some(&s.a.access_token),
        Some(&json!({"name": "read only", "project_ids": [pa], "scopes": ["query:read"]})),
    )
    .await?;
    assert_eq!(status, 201, "{key}");
    let secret = key["key"].as_str().unwrap_or("").to_string();
    let (status, _) = call("GET", &s.url(pa, "/events"), Some(&secret), None).await?;
    assert_eq!(status, 200);
    let (status, _) = call(
        "POST",
        &s.url(pa, "/insights"),
        Some(&secret),
        Some(&json!({"name": "x", "query": {"kind": "trends", "series": [{}]}})),
    )
    .await?;
    assert_eq!(status, 403);
    let (status, _) = call("GET", &s.url(pb, "/events"), Some(&secret), None).await?;
    assert_eq!(status, 404);
    let (status, _) =
        call("DELETE", &format!("{auth_url}/api/v1/personal-keys/{}", key["id"]), Some(&s.a.access_token), None)
            .await?;
    assert!(status == 204 || status == 200, "revoke: {status}");
    wait_until("the revoked key is refused", Duration::from_secs(10), || {
        let url = s.url(pa, "/events");
        let secret = secret.clone();
        async move { call("GET", &url, Some(&secret), None).await.map(|r| r.0 == 401).unwrap_or(false) }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn limits_answer_400_and_slow_queries_504() -> Result<()> {
    let s = setup(&[]).await?;
    s.insert(&trend_fixtures(s.a.project_id, s.base, 1)).await?;
    let series: Vec<Value> = (0..11).map(|_| json!({"event": "pageview"})).collect();
    for (body, field) in [
        (json!({"series": series}), "series"),
        (json!({"series": []}), "series"),
        (json!({"series": [{}], "date_from": "-1000d"}), "date_from"),
        (json!({"series": [{}], "date_from": "-60d", "interval": "hour"}), "interval"),
        (json!({"series": [{}], "breakdown": {"property": "browser", "limit": 1000}}), "breakdown.limit"),
        (json!({"series": [{"math": "sum"}]}), "series[0].math_property"),
        (json!({"series": [{"math": "mode"}]}), "series[0].math"),
        (json!({"series": [{}], "formula": "A / C"}), "formula"),
        (json!({"series": [{}], "timezone": "Mars/Base"}), "timezone"),
        (
            json!({"series": [{"filters": [{"key": "a", "operator": "gt", "value": "x"}]}]}),
            "series[0].filters[0].value",
        ),
        (json!({"series": [{}], "surprise": 1}), "surprise"),
    ] {
        let (status, v) = s.post(s.a.project_id, "/query/trends", body.clone()).await?;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["field"].as_str(), Some(field), "{body}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, v) = s.post(s.a.project_id, "/query/funnels", json!({"steps": [{"event": "a"}]})).await?;
    assert_eq!((status, v["field"].clone()), (400, json!("steps")));
    let (status, v) = s.post(s.a.project_id, "/query/retention", json!({"target_event": {}, "periods": 500})).await?;
    assert_eq!((status, v["field"].clone()), (400, json!("periods")));
    let (status, v) =
        call("GET", &s.url(s.a.project_id, "/events?limit=100000"), Some(&s.a.access_token), None).await?;
    assert_eq!((status, v["field"].clone()), (400, json!("limit")));

    // A query slower than the time limit answers 504 with a message.
    let mut env = s.env.clone();
    env.insert("CAIRN_QUERY_TIMEOUT_MS".into(), "1".into());
    let slow = Service::start("query", &env).await?;
    slow.wait_ready(Duration::from_secs(60)).await?;
    let (status, v) = call(
        "POST",
        &slow.url(&format!("/api/v1/projects/{}/query/trends", s.a.project_id)),
        Some(&s.a.access_token),
        Some(&json!({"series": [{}, {"math": "unique_users"}], "date_from": "-30d", "interval": "hour"})),
    )
    .await?;
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"], json!("timeout"));
    assert!(v["message"].as_str().unwrap_or("").contains("did not finish"), "{v}");

    // A statement over the per-query row limit answers 422; one caller cannot run more than its
    // slots at once (429), other callers are not affected.
    let mut env = s.env.clone();
    env.insert("CAIRN_QUERY_MAX_ROWS_TO_READ".into(), "10".into());
    env.insert("CAIRN_QUERY_MAX_CONCURRENT_PER_CALLER".into(), "1".into());
    let tight = Service::start("query", &env).await?;
    tight.wait_ready(Duration::from_secs(60)).await?;
    let trend_url = tight.url(&format!("/api/v1/projects/{}/query/trends", s.a.project_id));
    let body = json!({"series": [{"math": "unique_users"}], "date_from": "-30d"});
    let (status, v) = call("POST", &trend_url, Some(&s.a.access_token), Some(&body)).await?;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"], json!("too_expensive"));
    let http = reqwest::Client::new();
    let sends = (0..20).map(|_| {
        let (http, url, token, body) = (http.clone(), trend_url.clone(), s.a.access_token.clone(), body.clone());
        tokio::spawn(async move {
            http.post(url).bearer_auth(token).json(&body).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(sends).await.into_iter().map(|r| r.unwrap_or(0)).collect();
    assert!(statuses.iter().all(|s| *s == 422 || *s == 429), "{statuses:?}");
    assert!(statuses.contains(&429), "one caller, one slot: {statuses:?}");
    let other = format!("/api/v1/projects/{}/event-names", s.b.project_id);
    let (status, _) = call("GET", &tight.url(&other), Some(&s.b.access_token), None).await?;
    assert_ne!(status, 429, "another caller has its own slots");
    Ok(())
}

/// A funnel broken down by an event property counts each person under the value of their walk's
/// first event — not their first event, nor their first first-step event: here persons view
/// from several sources, and the walk that goes furthest often starts at a later view. Without
/// filters the walks are read from the copy ordered by person and the value looked up after;
/// with a filter (one every event passes) everything is read from `events`: both answer the
/// reference.
#[tokio::test]
async fn a_funnel_breakdown_takes_the_value_of_the_walks_first_event() -> Result<()> {
    let s = setup(&[]).await?;
    let p = s.a.project_id;
    let mut r = Lcg(11);
    let mut events = Vec::new();
    for u in 0..80i64 {
        let id = format!("bw{u}");
        let mut t = s.base + (u % 4) * DAY + r.next(6) as i64 * HOUR;
        for _ in 0..(1 + r.next(6)) {
            let name = ["b_view", "b_view", "b_signup", "b_pay", "b_noise"][r.next(5) as usize];
            let src = ["ads", "mail", "seo"][r.next(3) as usize];
            // Some events lack the property: their walks count under "$none".
            let props = if r.next(7) == 0 { json!({}) } else { json!({"src": src}) };
            events.push(Ev { project: p, event: name.into(), distinct_id: id.clone(), props, ts: t });
            t += (1 + r.next(400) as i64) * MINUTE;
        }
    }
    s.insert(&events).await?;
    let names = ["b_view", "b_signup", "b_pay"];
    let window = 6 * HOUR;
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut per_user: BTreeMap<&str, Vec<(i64, u32, String)>> = BTreeMap::new();
    for e in &events {
        let mask = names.iter().position(|n| *n == e.event).map_or(0, |k| 1u32 << k);
        if mask != 0 {
            let src = e.props["src"].as_str().unwrap_or("$none").to_string();
            per_user.entry(&e.distinct_id).or_default().push((e.ts, mask, src));
        }
    }
    for evs in per_user.values_mut() {
        evs.sort();
        let chain = best_chain(&evs.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(), 3, window, false);
        let Some(t0) = chain.first() else { continue };
        let value = evs.iter().find(|e| e.0 == *t0 && e.1 & 1 == 1).map(|e| e.2.clone()).unwrap_or_default();
        let counts = expected.entry(value).or_insert_with(|| vec![0; 3]);
        for c in counts.iter_mut().take(chain.len()) {
            *c += 1;
        }
    }
    assert!(expected.len() >= 3, "{expected:?}");
    let body = json!({
        "steps": [{"event": "b_view"}, {"event": "b_signup"}, {"event": "b_pay"}],
        "date_from": day_text(s.base), "date_to": day_text(s.base + 8 * DAY),
        "conversion_window": {"value": 6, "unit": "hour"},
        "breakdown": {"property": "src", "limit": 10},
    });
    let mut filtered = body.clone();
    filtered["filters"] = json!([{"key": "never_set", "operator": "is_not_set"}]);
    for (how, body) in [("by person", body), ("from events", filtered)] {
        let v = s.ok("/query/funnels", body).await?;
        let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for b in v["breakdown"].as_array().into_iter().flatten() {
            let counts =
                b["steps"].as_array().into_iter().flatten().map(|s| s["count"].as_u64().unwrap_or(0)).collect();
            got.insert(b["breakdown_value"].as_str().unwrap_or_default().to_string(), counts);
        }
        assert_eq!(got, expected, "{how}: {v}");
    }
    Ok(())
}
