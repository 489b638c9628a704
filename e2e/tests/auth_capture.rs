//! Capture resolving write keys through the auth service: a key created through auth's API is
//! accepted and its events reach ClickHouse under the key's project; once revoked, capture refuses
//! it within its cache TTL (CAIRN_AUTH_CACHE_TTL_SECS, at most 60 s; 2 s here); static keys keep
//! working; auth unreachable with nothing cached answers 503.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_e2e::{wait_until, Pipeline, Service, TestClickHouse, TestKafka, TestPostgres};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_accepts_auth_write_keys_until_they_are_revoked() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let pg = TestPostgres::shared().unwrap();
    let db_url = pg.fresh_database("auth_capture").await.unwrap();
    let mut auth_env = HashMap::new();
    auth_env.insert("CAIRN_POSTGRES_URL".to_string(), db_url);
    auth_env.insert("CAIRN_INTERNAL_TOKEN".to_string(), "capture-e2e-internal".to_string());
    let mut auth = Service::start("auth", &auth_env).await.unwrap();
    auth.wait_ready(Duration::from_secs(60)).await.unwrap();
    let http = reqwest::Client::new();

    let signup: Value = http
        .post(auth.url("/api/v1/signup"))
        .json(&json!({"email": "capture@example.com", "password": "Granite-Lake-42"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let project = signup["project"]["id"].as_i64().unwrap();
    let key = signup["write_key"]["key"].as_str().unwrap().to_string();
    let key_id = signup["write_key"]["id"].as_i64().unwrap();
    let access = signup["access_token"].as_str().unwrap().to_string();

    let mut p = Pipeline::new(&kafka, &ch, "phc_static_dev=999");
    p.set("CAIRN_AUTH_URL", format!("http://{}", auth.addr))
        .set("CAIRN_AUTH_CACHE_TTL_SECS", "2")
        .set("CAIRN_INTERNAL_TOKEN", "capture-e2e-internal");
    let _consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let send = |api_key: String, n: usize| {
        let http = http.clone();
        let url = capture.url("/capture");
        async move {
            let body = json!({"api_key": api_key, "event": "auth_e2e", "distinct_id": format!("u{n}"), "properties": {"n": n}});
            http.post(url).json(&body).send().await.unwrap().status().as_u16()
        }
    };

    assert_eq!(send(key.clone(), 1).await, 200);
    assert_eq!(send(key.clone(), 2).await, 200);
    assert_eq!(send("phc_static_dev".into(), 3).await, 200, "static keys resolve first");
    assert_eq!(send("phc_not_a_key".into(), 4).await, 401);

    let db = ch.db(&p.database);
    wait_until("the events in ClickHouse", Duration::from_secs(60), || {
        let db = db.clone();
        async move { db.scalar("SELECT count() FROM events FINAL WHERE event = 'auth_e2e'").await.unwrap_or(0) >= 3 }
    })
    .await
    .unwrap();
    let q = format!("SELECT count() FROM events FINAL WHERE event = 'auth_e2e' AND project_id = {project}");
    assert_eq!(db.scalar(&q).await.unwrap(), 2, "the key's project");
    assert_eq!(db.scalar("SELECT count() FROM events FINAL WHERE project_id = 999").await.unwrap(), 1);

    // Revoke: capture refuses the key within the cache TTL.
    let revoked = http
        .delete(auth.url(&format!("/api/v1/projects/{project}/write-keys/{key_id}")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let t0 = Instant::now();
    let mut n = 10;
    loop {
        n += 1;
        let status = send(key.clone(), n).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(t0.elapsed() < Duration::from_secs(60), "the revoked key still works after 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = t0.elapsed();
    assert!(took <= Duration::from_secs(4), "refused {took:?} after revocation with a 2 s cache");

    // Auth down: cached answers... none for a new key, so 503 (retryable), not 401.
    auth.kill9();
    let r = http
        .post(capture.url("/capture"))
        .json(&json!({"api_key": "phc_never_seen_before", "event": "x", "distinct_id": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(send("phc_static_dev".into(), 99).await, 200, "static keys do not need auth");
}
