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

/// How long after `t0` until `check` first holds (polling every 10 ms), or a failure after `limit`.
async fn time_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    loop {
        if check().await {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "{what}: still not so after {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Revocations reach capture's and query's credential caches at once (the auth service's
/// revocation feed), though both trust a cached answer for 60 s: a revoked write key, a deleted
/// project's key and the project itself, a revoked personal key, a logged-out session, a member
/// removed from the organisation. A project made after the principal was cached is visible at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_capture_and_query_at_once() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let pg = TestPostgres::shared().unwrap();
    let internal = "revocation-e2e-internal";
    let mut env = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".to_string(), pg.fresh_database("revocations").await.unwrap());
    env.insert("CAIRN_INTERNAL_TOKEN".to_string(), internal.to_string());
    env.insert("CAIRN_AUTH_TOKEN_SECRET".to_string(), "a-test-secret-of-enough-length-0123456789".to_string());
    let auth = Service::start("auth", &env).await.unwrap();
    auth.wait_ready(Duration::from_secs(60)).await.unwrap();

    let mut p = Pipeline::new(&kafka, &ch, "");
    p.set("CAIRN_AUTH_URL", auth.url("")).set("CAIRN_AUTH_CACHE_TTL_SECS", "60").set("CAIRN_INTERNAL_TOKEN", internal);
    // The consumer applies the ClickHouse schema query waits for.
    let _consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let mut query_env = env.clone();
    query_env.insert("CAIRN_AUTH_URL".to_string(), auth.url(""));
    query_env.insert("CAIRN_AUTH_CACHE_TTL_SECS".to_string(), "60".to_string());
    query_env.insert("CAIRN_CLICKHOUSE_URL".to_string(), ch.url());
    query_env.insert("CAIRN_CLICKHOUSE_DATABASE".to_string(), p.database.clone());
    let query = Service::start("query", &query_env).await.unwrap();
    query.wait_ready(Duration::from_secs(60)).await.unwrap();

    let owner = cairn_e2e::sign_up(&auth, &format!("{}@revocations.example", cairn_e2e::unique("o"))).await.unwrap();
    let member = cairn_e2e::sign_up(&auth, &format!("{}@revocations.example", cairn_e2e::unique("m"))).await.unwrap();
    let bearer = Some(owner.access_token.as_str());
    let (status, second) = cairn_e2e::call(
        "POST",
        &auth.url(&format!("/api/v1/organizations/{}/projects", owner.organization_id)),
        bearer,
        Some(&json!({"name": "Second"})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{second}");
    let (p2, k2) = (second["id"].as_i64().unwrap(), second["write_key"]["key"].as_str().unwrap().to_string());
    let (status, extra) = cairn_e2e::call(
        "POST",
        &auth.url(&format!("/api/v1/projects/{}/write-keys", owner.project_id)),
        bearer,
        Some(&json!({"name": "second key"})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{extra}");
    let k1b = extra["key"].as_str().unwrap().to_string();
    let (status, personal) = cairn_e2e::call(
        "POST",
        &auth.url("/api/v1/personal-keys"),
        bearer,
        Some(&json!({"name": "ci", "scopes": ["query:read"]})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{personal}");
    let personal_key = personal["key"].as_str().unwrap().to_string();
    let (status, invited) = cairn_e2e::call(
        "POST",
        &auth.url(&format!("/api/v1/organizations/{}/members", owner.organization_id)),
        bearer,
        Some(&json!({"email": member.email, "role": "member"})),
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{invited}");
    let (status, accepted) = cairn_e2e::call(
        "POST",
        &auth.url("/api/v1/invitations/accept"),
        Some(&member.access_token),
        Some(&json!({"token": invited["token"]})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{accepted}");

    let http = reqwest::Client::new();
    let send = |key: String| {
        let (http, url) = (http.clone(), capture.url("/capture"));
        async move {
            let body = json!({"api_key": key, "event": "revocation_e2e", "distinct_id": "d"});
            http.post(url).json(&body).send().await.unwrap().status().as_u16()
        }
    };
    let read = |credential: String, project: i64| {
        let (http, url) = (http.clone(), query.url(&format!("/api/v1/projects/{project}/insights")));
        async move { http.get(url).bearer_auth(credential).send().await.unwrap().status().as_u16() }
    };
    // Everything works, and is now cached for 60 s.
    for key in [&owner.write_key, &k1b, &k2] {
        assert_eq!(send(key.clone()).await, 200);
    }
    assert_eq!(read(owner.access_token.clone(), owner.project_id).await, 200);
    assert_eq!(read(owner.access_token.clone(), p2).await, 200);
    assert_eq!(read(personal_key.clone(), owner.project_id).await, 200);
    assert_eq!(read(member.access_token.clone(), owner.project_id).await, 200);
    assert_eq!(read(member.access_token.clone(), member.project_id).await, 200);

    let limit = Duration::from_secs(5);
    let mut figures = Vec::new();

    // A project made after the principal was cached is there at once.
    let (status, third) = cairn_e2e::call(
        "POST",
        &auth.url(&format!("/api/v1/organizations/{}/projects", owner.organization_id)),
        bearer,
        Some(&json!({"name": "Third"})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{third}");
    let p3 = third["id"].as_i64().unwrap();
    let t = time_until("the new project is readable", limit, || {
        let f = read(owner.access_token.clone(), p3);
        async move { f.await == 200 }
    })
    .await;
    figures.push(("new project readable", t));

    // A revoked write key.
    let key_id = extra["id"].as_i64().unwrap();
    let (status, _) = cairn_e2e::call(
        "DELETE",
        &auth.url(&format!("/api/v1/projects/{}/write-keys/{key_id}", owner.project_id)),
        bearer,
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 204);
    let t = time_until("the revoked write key is refused", limit, || {
        let f = send(k1b.clone());
        async move { f.await == 401 }
    })
    .await;
    figures.push(("revoked write key refused", t));
    assert_eq!(send(owner.write_key.clone()).await, 200, "the project's other key still works");

    // A deleted project: its key at capture, the project at query.
    let (status, _) =
        cairn_e2e::call("DELETE", &auth.url(&format!("/api/v1/projects/{p2}")), bearer, None).await.unwrap();
    assert_eq!(status, 204);
    let t = time_until("the deleted project's key is refused", limit, || {
        let f = send(k2.clone());
        async move { f.await == 401 }
    })
    .await;
    figures.push(("deleted project's key refused", t));
    let t = time_until("the deleted project is gone", limit, || {
        let f = read(owner.access_token.clone(), p2);
        async move { f.await == 404 }
    })
    .await;
    figures.push(("deleted project gone at query", t));

    // A revoked personal key.
    let personal_id = personal["id"].as_i64().unwrap();
    let (status, _) =
        cairn_e2e::call("DELETE", &auth.url(&format!("/api/v1/personal-keys/{personal_id}")), bearer, None)
            .await
            .unwrap();
    assert_eq!(status, 204);
    let t = time_until("the revoked personal key is refused", limit, || {
        let f = read(personal_key.clone(), owner.project_id);
        async move { f.await == 401 }
    })
    .await;
    figures.push(("revoked personal key refused", t));

    // A member removed from the organisation: gone from its projects, still in their own.
    let (status, _) = cairn_e2e::call(
        "DELETE",
        &auth.url(&format!("/api/v1/organizations/{}/members/{}", owner.organization_id, member.user_id)),
        bearer,
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 204);
    let t = time_until("the removed member is refused", limit, || {
        let f = read(member.access_token.clone(), owner.project_id);
        async move { f.await == 404 }
    })
    .await;
    figures.push(("removed member refused", t));
    assert_eq!(read(member.access_token.clone(), member.project_id).await, 200);

    // Logout.
    let (status, _) = cairn_e2e::call("POST", &auth.url("/api/v1/logout"), bearer, Some(&json!({}))).await.unwrap();
    assert!(status == 200 || status == 204, "logout answered {status}");
    let t = time_until("the logged-out session is refused", limit, || {
        let f = read(owner.access_token.clone(), owner.project_id);
        async move { f.await == 401 }
    })
    .await;
    figures.push(("logged-out session refused", t));

    for (what, t) in &figures {
        println!("revocation: {what} after {} ms", t.as_millis());
    }
}
