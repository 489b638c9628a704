//! HTTP → capture → Kafka → consumer → ClickHouse, on the real services: every payload shape
//! arrives exactly once with every field intact, and bad input is refused with the field and the
//! reason, writing nothing.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use cairn_e2e::{gzip, topic_record_count, wait_until, Pipeline, TestClickHouse, TestKafka};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

fn iso(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payload_shape_arrives_exactly_once_with_fields_intact() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let p = Pipeline::new(&kafka, &ch, "phc_alpha=11,phc_beta=12");
    let _consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let http = reqwest::Client::new();
    let now = OffsetDateTime::now_utc();
    let mut expected: HashMap<Uuid, Value> = HashMap::new();
    let mut total = 0u64;

    // 1. Single events on /capture, every field given.
    for i in 0..5 {
        let uuid = Uuid::now_v7();
        let ts = now - time::Duration::minutes(i);
        let body = json!({
            "api_key": "phc_alpha", "event": "signed_up", "distinct_id": format!("user-{i}"), "uuid": uuid,
            "timestamp": iso(ts), "properties": {"plan": "pro", "seats": i, "nested": {"a": [1, 2, {"b": null}]}, "ünïcode": "✓"}
        });
        let r = http.post(capture.url("/capture")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        expected.insert(
            uuid,
            json!({"project_id": 11, "event": "signed_up", "distinct_id": format!("user-{i}"),
            "properties": body["properties"], "ts_ms": (ts.unix_timestamp_nanos() / 1_000_000) as i64}),
        );
        total += 1;
    }

    // 2. A batch envelope on /batch (project beta).
    let batch: Vec<Value> = (0..50)
        .map(|i| json!({"event": "page", "distinct_id": format!("b{}", i % 7), "properties": {"i": i}}))
        .collect();
    let r =
        http.post(capture.url("/batch")).json(&json!({"api_key": "phc_beta", "batch": batch})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 50);
    total += 50;

    // 3. A gzip batch (Content-Encoding) as a bare array with the key in the query.
    let arr: Vec<Value> = (0..30).map(|i| json!({"event": "gz", "distinct_id": "g", "properties": {"i": i}})).collect();
    let r = http
        .post(capture.url("/batch?api_key=phc_alpha"))
        .header("Content-Encoding", "gzip")
        .header("Content-Type", "application/json")
        .body(gzip(&serde_json::to_vec(&arr).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    total += 30;

    // 4. posthog-js: /e/?compression=gzip-js&_=<ms>, token and distinct_id inside properties,
    //    text/plain content type.
    let js_uuid = Uuid::now_v7();
    let js: Vec<Value> = (0..20)
        .map(|i| {
            let mut e = json!({"event": "$pageview", "properties": {"token": "phc_alpha", "distinct_id": "anon-1", "$current_url": "https://example.com/", "n": i}, "timestamp": iso(now)});
            if i == 0 {
                e["uuid"] = json!(js_uuid);
            }
            e
        })
        .collect();
    let r = http
        .post(capture.url(&format!("/e/?compression=gzip-js&ver=1.200.0&_={}", now.unix_timestamp() * 1000)))
        .header("Content-Type", "text/plain")
        .body(gzip(&serde_json::to_vec(&js).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    total += 20;
    expected.insert(js_uuid, json!({"project_id": 11, "event": "$pageview", "distinct_id": "anon-1"}));

    // 5. posthog-python: /batch/ with api_key and sent_at; its clock is an hour fast, so the
    //    event's timestamp is corrected by the skew.
    let py_uuid = Uuid::now_v7();
    let client_now = now + time::Duration::hours(1);
    let py = json!({"api_key": "phc_alpha", "sent_at": iso(client_now), "batch": [
        {"event": "purchase", "distinct_id": 42, "uuid": py_uuid, "timestamp": iso(client_now - time::Duration::seconds(10)),
         "properties": {"$lib": "posthog-python", "price": 9.99}, "$set": {"email": "a@example.com"}},
        {"event": "purchase", "distinct_id": "43", "properties": {"price": 1}}
    ]});
    let r = http.post(capture.url("/batch/")).json(&py).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    total += 2;

    // 6. /i/v0/e with Authorization: Bearer.
    for _ in 0..5 {
        let r = http
            .post(capture.url("/i/v0/e"))
            .bearer_auth("phc_beta")
            .json(&json!({"event": "bearer", "distinct_id": "c"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    total += 5;

    // 7. Older PostHog SDKs: a form with base64 JSON in `data`.
    let data = base64::engine::general_purpose::STANDARD.encode(
        serde_json::to_vec(&json!([
            {"event": "form", "properties": {"distinct_id": "f", "token": "phc_beta"}},
            {"event": "form", "properties": {"distinct_id": "f", "token": "phc_beta"}},
            {"event": "form", "properties": {"distinct_id": "f", "token": "phc_beta"}}
        ]))
        .unwrap(),
    );
    let r = http.post(capture.url("/e/")).form(&[("data", data)]).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    total += 3;

    // 8. The key as the envelope's `token`, and as `?token=` in the query.
    let r = http
        .post(capture.url("/batch"))
        .json(&json!({"token": "phc_beta", "batch": [{"event": "tok", "distinct_id": "t1"}, {"event": "tok", "distinct_id": "t2"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http
        .post(capture.url("/e?token=phc_alpha"))
        .json(&json!({"event": "tok", "distinct_id": "t3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    total += 3;

    let db = ch.db(&p.database);
    wait_until("every event in ClickHouse", Duration::from_secs(60), || {
        let db = db.clone();
        async move { db.scalar("SELECT count() FROM events FINAL").await.unwrap_or(0) >= total }
    })
    .await
    .unwrap();
    // Exactly once: no duplicates even without FINAL, and each uuid once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.scalar("SELECT count() FROM events").await.unwrap(), total);
    assert_eq!(db.scalar("SELECT uniqExact(uuid) FROM events").await.unwrap(), total);
    assert_eq!(db.scalar("SELECT count() FROM events WHERE project_id = 12").await.unwrap(), 50 + 5 + 3 + 2);
    let tok = db
        .rows("SELECT toString(project_id) AS p, distinct_id FROM events WHERE event = 'tok' ORDER BY distinct_id")
        .await
        .unwrap();
    let tok: Vec<String> =
        tok.iter().map(|r| format!("{}:{}", r["p"].as_str().unwrap(), r["distinct_id"].as_str().unwrap())).collect();
    assert_eq!(tok, ["12:t1", "12:t2", "11:t3"]);

    // The batch, the gzip array, the form and the bearer events: their fields, not only their number.
    let fields = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.rows(sql)
                .await
                .unwrap()
                .iter()
                .map(|r| format!("{}/{}", r["distinct_id"].as_str().unwrap(), r["i"]))
                .collect::<Vec<String>>()
        }
    };
    let page = fields("SELECT distinct_id, toInt32(JSONExtractInt(properties, 'i')) AS i FROM events WHERE project_id = 12 AND event = 'page' ORDER BY i").await;
    assert_eq!(page, (0..50).map(|i| format!("b{}/{i}", i % 7)).collect::<Vec<_>>());
    let gz = fields("SELECT distinct_id, toInt32(JSONExtractInt(properties, 'i')) AS i FROM events WHERE project_id = 11 AND event = 'gz' ORDER BY i").await;
    assert_eq!(gz, (0..30).map(|i| format!("g/{i}")).collect::<Vec<_>>());
    let form = fields("SELECT distinct_id, toUInt8(JSONHas(properties, 'token')) AS i FROM events WHERE project_id = 12 AND event = 'form'").await;
    assert_eq!(form, vec!["f/0"; 3], "distinct_id from properties, and the token not kept");
    let bearer = fields(
        "SELECT distinct_id, toUInt8(properties = '{}') AS i FROM events WHERE project_id = 12 AND event = 'bearer'",
    )
    .await;
    assert_eq!(bearer, vec!["c/1"; 5]);
    // Receipt and ingestion times: capture's receipt now, the row's insertion after it.
    let odd_times =
        "SELECT countIf(received_at < now64(3) - INTERVAL 10 MINUTE OR received_at > now64(3) + INTERVAL 1 MINUTE \
                     OR ingested_at < received_at - INTERVAL 1 SECOND) AS n FROM events";
    assert_eq!(db.scalar(odd_times).await.unwrap(), 0, "received_at and ingested_at of every row");

    for (uuid, want) in &expected {
        let rows = db
            .rows(&format!(
                "SELECT project_id, event, distinct_id, properties, toUnixTimestamp64Milli(timestamp) AS ts_ms FROM events WHERE uuid = '{uuid}'"
            ))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{uuid}");
        let row = &rows[0];
        assert_eq!(row["project_id"].as_u64().unwrap(), want["project_id"].as_u64().unwrap());
        assert_eq!(row["event"], want["event"]);
        assert_eq!(row["distinct_id"], want["distinct_id"]);
        if let Some(props) = want.get("properties") {
            let stored: Value = serde_json::from_str(row["properties"].as_str().unwrap()).unwrap();
            assert_eq!(&stored, props, "properties of {uuid}");
        }
        if let Some(ts) = want.get("ts_ms") {
            assert_eq!(row["ts_ms"].as_i64().unwrap(), ts.as_i64().unwrap(), "millisecond timestamp of {uuid}");
        }
    }

    // posthog-js: the token is not stored as a property.
    let js_props = db.rows(&format!("SELECT properties FROM events WHERE uuid = '{js_uuid}'")).await.unwrap();
    let js_props: Value = serde_json::from_str(js_props[0]["properties"].as_str().unwrap()).unwrap();
    assert_eq!(js_props["$current_url"], "https://example.com/");
    assert!(js_props.get("token").is_none());

    // posthog-python: numeric distinct_id kept as text, $set kept, skew corrected to ~now-10s.
    let py_row = &db
        .rows(&format!("SELECT distinct_id, properties, toUnixTimestamp64Milli(timestamp) AS ts, toUnixTimestamp64Milli(received_at) AS rx FROM events WHERE uuid = '{py_uuid}'"))
        .await
        .unwrap()[0];
    assert_eq!(py_row["distinct_id"], "42");
    let props: Value = serde_json::from_str(py_row["properties"].as_str().unwrap()).unwrap();
    assert_eq!(props["$set"]["email"], "a@example.com");
    let skew_ms = py_row["rx"].as_i64().unwrap() - py_row["ts"].as_i64().unwrap();
    assert!((9_000..=11_000).contains(&skew_ms), "timestamp corrected to 10 s before receipt, got {skew_ms} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_field_and_reason_and_nothing_is_written() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_ok=1");
    p.set("CAIRN_CAPTURE_MAX_EVENT_BYTES", "2000").set("CAIRN_CAPTURE_MAX_BATCH_BYTES", "50000");
    let capture = p.capture().await.unwrap();
    let http = reqwest::Client::new();
    let good = json!({"event": "e", "distinct_id": "d"});
    let far_future = iso(OffsetDateTime::now_utc() + time::Duration::days(30));
    let bomb = gzip(format!("[{}]", vec![good.to_string(); 2000].join(",")).as_bytes());
    assert!(bomb.len() < 50_000, "the bomb is small compressed");

    struct Case {
        name: &'static str,
        path: &'static str,
        headers: Vec<(&'static str, &'static str)>,
        body: Vec<u8>,
        status: u16,
        field: &'static str,
        index: Option<u64>,
    }
    let j = |v: Value| serde_json::to_vec(&v).unwrap();
    let cases = vec![
        Case {
            name: "malformed JSON",
            path: "/capture",
            headers: vec![],
            body: b"{\"event\": ".to_vec(),
            status: 400,
            field: "body",
            index: None,
        },
        Case {
            name: "not an object",
            path: "/capture",
            headers: vec![],
            body: b"\"hello\"".to_vec(),
            status: 400,
            field: "body",
            index: None,
        },
        Case {
            name: "missing event",
            path: "/capture",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "distinct_id": "d"})),
            status: 400,
            field: "event",
            index: None,
        },
        Case {
            name: "empty event",
            path: "/capture",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "event": "", "distinct_id": "d"})),
            status: 400,
            field: "event",
            index: None,
        },
        Case {
            name: "missing distinct_id",
            path: "/capture",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "event": "e"})),
            status: 400,
            field: "distinct_id",
            index: None,
        },
        Case {
            name: "empty distinct_id",
            path: "/capture",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "event": "e", "distinct_id": ""})),
            status: 400,
            field: "distinct_id",
            index: None,
        },
        Case {
            name: "event of wrong type",
            path: "/capture",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "event": 7, "distinct_id": "d"})),
            status: 400,
            field: "event",
            index: None,
        },
        Case {
            name: "properties not an object",
            path: "/capture",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "event": "e", "distinct_id": "d", "properties": [1]})),
            status: 400,
            field: "properties",
            index: None,
        },
        Case {
            name: "timestamp not RFC 3339",
            path: "/capture",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "event": "e", "distinct_id": "d", "timestamp": "yesterday"})),
            status: 400,
            field: "timestamp",
            index: None,
        },
        Case {
            name: "timestamp far in the future",
            path: "/capture",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "event": "e", "distinct_id": "d", "timestamp": far_future})),
            status: 400,
            field: "timestamp",
            index: None,
        },
        Case {
            name: "bad uuid",
            path: "/capture",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "event": "e", "distinct_id": "d", "uuid": "not-a-uuid"})),
            status: 400,
            field: "uuid",
            index: None,
        },
        Case {
            name: "one bad event rejects the batch",
            path: "/batch",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "batch": [good, good, {"event": "e"}]})),
            status: 400,
            field: "distinct_id",
            index: Some(2),
        },
        Case {
            name: "empty batch",
            path: "/batch",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "batch": []})),
            status: 400,
            field: "batch",
            index: None,
        },
        Case {
            name: "bad sent_at",
            path: "/batch",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "sent_at": "soon", "batch": [good]})),
            status: 400,
            field: "sent_at",
            index: None,
        },
        Case {
            name: "missing key",
            path: "/capture",
            headers: vec![],
            body: j(good.clone()),
            status: 401,
            field: "api_key",
            index: None,
        },
        Case {
            name: "unknown key",
            path: "/capture",
            headers: vec![],
            body: j(json!({"api_key": "phc_nope", "event": "e", "distinct_id": "d"})),
            status: 401,
            field: "api_key",
            index: None,
        },
        Case {
            name: "mixed keys",
            path: "/e",
            headers: vec![],
            body: j(
                json!([{"event": "e", "properties": {"distinct_id": "d", "token": "phc_ok"}}, {"event": "e", "properties": {"distinct_id": "d", "token": "phc_other"}}]),
            ),
            status: 400,
            field: "api_key",
            index: None,
        },
        Case {
            name: "event over the per-event limit",
            path: "/batch",
            headers: vec![],
            body: j(
                json!({"api_key": "phc_ok", "batch": [good, {"event": "e", "distinct_id": "d", "properties": {"x": "y".repeat(3000)}}]}),
            ),
            status: 413,
            field: "",
            index: Some(1),
        },
        Case {
            name: "body over the batch limit",
            path: "/batch",
            headers: vec![],
            body: j(json!({"api_key": "phc_ok", "batch": vec![good.clone(); 2000]})),
            status: 413,
            field: "body",
            index: None,
        },
        Case {
            name: "gzip bomb over the limit after decompression",
            path: "/batch?api_key=phc_ok",
            headers: vec![("Content-Encoding", "gzip")],
            body: bomb,
            status: 413,
            field: "body",
            index: None,
        },
        Case {
            name: "corrupt gzip",
            path: "/batch?api_key=phc_ok",
            headers: vec![("Content-Encoding", "gzip")],
            body: b"\x1f\x8bnot really".to_vec(),
            status: 400,
            field: "body",
            index: None,
        },
        Case {
            name: "unsupported compression",
            path: "/e/?compression=lz64&api_key=phc_ok",
            headers: vec![],
            body: b"abc".to_vec(),
            status: 400,
            field: "compression",
            index: None,
        },
    ];

    for case in &cases {
        let mut req =
            http.post(capture.url(case.path)).header("Content-Type", "application/json").body(case.body.clone());
        for (k, v) in &case.headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, case.status, "{}: {body}", case.name);
        let errors = body["errors"].as_array().unwrap_or_else(|| panic!("{}: no errors list in {body}", case.name));
        assert!(
            errors.iter().any(|e| e["field"] == case.field && case.index.map(|i| e["index"] == i).unwrap_or(true)),
            "{}: expected field {:?} index {:?} in {body}",
            case.name,
            case.field,
            case.index
        );
        assert!(
            errors.iter().all(|e| e["reason"].as_str().map(|r| !r.is_empty()).unwrap_or(false)),
            "{}: {body}",
            case.name
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: {body}", case.name);
    }

    // Nothing that was refused reached Kafka; a good request still does.
    assert_eq!(topic_record_count(&kafka.brokers(), &p.topic).unwrap(), 0);
    let r = http
        .post(capture.url("/capture"))
        .json(&json!({"api_key": "phc_ok", "event": "e", "distinct_id": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(topic_record_count(&kafka.brokers(), &p.topic).unwrap(), 1);
    assert!(capture.metric("cairn_capture_events_total{outcome=\"invalid\"}").await.unwrap() >= 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let mut p = Pipeline::new(&kafka, &ch, "phc_slow=1,phc_other=2");
    p.set("CAIRN_CAPTURE_RATE_LIMIT_PER_SECOND", "20").set("CAIRN_CAPTURE_RATE_LIMIT_BURST", "20");
    let capture = p.capture().await.unwrap();
    let http = reqwest::Client::new();
    let batch = |key: &str| json!({"api_key": key, "batch": vec![json!({"event": "e", "distinct_id": "d"}); 15]});
    assert_eq!(http.post(capture.url("/batch")).json(&batch("phc_slow")).send().await.unwrap().status(), 200);
    let r = http.post(capture.url("/batch")).json(&batch("phc_slow")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "rate_limited");
    // Another key is not affected, and the limited key recovers.
    assert_eq!(http.post(capture.url("/batch")).json(&batch("phc_other")).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(http.post(capture.url("/batch")).json(&batch("phc_slow")).send().await.unwrap().status(), 200);
    assert_eq!(topic_record_count(&kafka.brokers(), &p.topic).unwrap(), 45);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_across_many_months_arrives_whole_in_utc() {
    // ClickHouse refuses an insert that touches more than 100 partitions (months) by default; capture
    // accepts any time since 1970, so the consumer must insert such a batch, not retry it forever.
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let p = Pipeline::new(&kafka, &ch, "phc_months=5");
    let _consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let http = reqwest::Client::new();
    let now = OffsetDateTime::now_utc();
    let months = 150;
    let mut batch: Vec<Value> = (0..months)
        .map(|i| json!({"event": "old", "distinct_id": "m", "timestamp": iso(now - time::Duration::days(31 * i))}))
        .collect();
    // A client time with an offset is stored as the same instant, in UTC.
    batch.push(json!({"event": "offset", "distinct_id": "m", "timestamp": "2026-11-26T13:30:00.250+02:00"}));
    let r =
        http.post(capture.url("/batch")).json(&json!({"api_key": "phc_months", "batch": batch})).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let db = ch.db(&p.database);
    let want = months as u64 + 1;
    wait_until("every event of the batch in ClickHouse", Duration::from_secs(60), || {
        let db = db.clone();
        async move { db.scalar("SELECT count() FROM events FINAL").await.unwrap_or(0) >= want }
    })
    .await
    .unwrap();
    assert_eq!(db.scalar("SELECT count() FROM events FINAL").await.unwrap(), want);
    assert!(db.scalar("SELECT uniqExact(toYYYYMM(timestamp)) FROM events").await.unwrap() > 100);
    let ms = db
        .scalar("SELECT toUInt64(toUnixTimestamp64Milli(timestamp)) FROM events WHERE event = 'offset'")
        .await
        .unwrap();
    assert_eq!(ms, 1_795_692_600_250, "2026-11-26T11:30:00.250Z");
}
