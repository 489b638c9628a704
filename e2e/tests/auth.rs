//! The auth service against real PostgreSQL, through its HTTP API only: accounts, sessions and
//! token rotation, organisations and roles, API keys, the internal API capture and query use,
//! rate limits, and hostile input.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_auth_client::{AuthClient, AuthClientConfig, Permission};
use cairn_e2e::{bin_dir, wait_until, Service, TestPostgres};
use reqwest::Method;
use serde_json::{json, Value};

const SECRET: &str = "e2e-token-secret-0123456789abcdef-0123456789";
const PASSWORD: &str = "Granite-Lake-42";

/// An auth service on a database of its own.
struct Auth {
    service: Service,
    db_url: String,
    http: reqwest::Client,
}

struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

fn base_env(db_url: &str) -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), db_url.to_string());
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), SECRET.into());
    env.insert("CAIRN_AUTH_LOGIN_PER_EMAIL_PER_MINUTE".into(), "1000".into());
    env.insert("CAIRN_AUTH_LOGIN_PER_IP_PER_MINUTE".into(), "10000".into());
    env
}

impl Auth {
    async fn start(extra: &[(&str, &str)]) -> Auth {
        let pg = TestPostgres::shared().unwrap();
        let db_url = pg.fresh_database("auth").await.unwrap();
        Self::start_on(&db_url, extra).await
    }

    async fn start_on(db_url: &str, extra: &[(&str, &str)]) -> Auth {
        let mut env = base_env(db_url);
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let service = Service::start("auth", &env).await.unwrap();
        service.wait_ready(Duration::from_secs(60)).await.unwrap();
        Auth { service, db_url: db_url.to_string(), http: reqwest::Client::new() }
    }

    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        self.call_with(method, path, token, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self.http.request(method, self.service.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Answer { status, body, headers }
    }

    /// An admin of `org` invites `email`; the invitee (signed in with that email) accepts.
    async fn invite_and_accept(&self, org: i64, admin: &str, email: &str, role: &str, invitee: &str) -> Answer {
        let invited = self
            .post(&format!("/api/v1/organizations/{org}/members"), Some(admin), json!({"email": email, "role": role}))
            .await;
        assert_eq!(invited.status, 202, "{invited:?}");
        let token = invited.body["token"].as_str().unwrap().to_string();
        self.post("/api/v1/invitations/accept", Some(invitee), json!({"token": token})).await
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(token), Some(body)).await
    }

    async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Signs up `email` and returns the whole answer (201 asserted).
    async fn signup(&self, email: &str) -> Value {
        let r = self.post("/api/v1/signup", None, json!({"email": email, "password": PASSWORD, "name": "Test"})).await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body
    }

    async fn authenticate(&self, credential: &str) -> Answer {
        self.post("/internal/v1/authenticate", None, json!({"credential": credential})).await
    }

    async fn resolve(&self, key: &str) -> Answer {
        self.post("/internal/v1/write-keys/resolve", None, json!({"key": key})).await
    }

    async fn sql(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.db_url).await.unwrap()
    }
}

fn token(v: &Value) -> String {
    v["access_token"].as_str().unwrap().to_string()
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_login_me_and_refusals() {
    let auth = Auth::start(&[]).await;
    let s = auth.signup("Alice@Example.com").await;
    assert_eq!(s["token_type"], "Bearer");
    assert_eq!(s["expires_in"], 900);
    assert_eq!(s["user"]["email"], "Alice@Example.com", "stored as given");
    assert_eq!(s["organization"]["role"], "owner");
    assert_eq!(s["project"]["name"], "Default");
    assert_eq!(s["project"]["timezone"], "UTC");
    let key = s["write_key"]["key"].as_str().unwrap();
    assert!(key.starts_with("phc_") && key.len() == 36, "{key}");
    assert_eq!(s["write_key"]["display_prefix"], &key[..8]);

    let login = auth.post("/api/v1/login", None, json!({"email": "alice@example.COM", "password": PASSWORD})).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["user"]["id"], s["user"]["id"]);
    let me = auth.get("/api/v1/me", &token(&login.body)).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["user"]["email"], "Alice@Example.com");
    assert_eq!(me.body["organizations"][0]["id"], s["organization"]["id"]);
    assert_eq!(me.body["organizations"][0]["role"], "owner");
    assert_eq!(me.body["projects"][0]["id"], s["project"]["id"]);
    assert!(me.body.to_string().find("password").is_none(), "no password hash in answers");

    // The same email in another case.
    let dup = auth.post("/api/v1/signup", None, json!({"email": "ALICE@example.com", "password": PASSWORD})).await;
    assert_eq!((dup.status, dup.body["error"].as_str()), (409, Some("conflict")), "{dup:?}");

    // Wrong password and unknown email: the same answer.
    let wrong =
        auth.post("/api/v1/login", None, json!({"email": "alice@example.com", "password": "Not-The-Password-1"})).await;
    let unknown = auth.post("/api/v1/login", None, json!({"email": "nobody@example.com", "password": PASSWORD})).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body["message"], "invalid email or password");

    // Weak passwords name the field.
    for weak in
        ["short1!", "alllowercaseletters", "1234567890123", "Password123", "xx-bob.jones-99", &"Ab1".repeat(400)]
    {
        let r = auth.post("/api/v1/signup", None, json!({"email": "bob.jones@example.com", "password": weak})).await;
        assert_eq!((r.status, r.body["field"].as_str()), (400, Some("password")), "{weak}: {r:?}");
    }
    for bad in ["not-an-email", "a@b", "two@@example.com", "sp ace@example.com"] {
        let r = auth.post("/api/v1/signup", None, json!({"email": bad, "password": PASSWORD})).await;
        assert_eq!((r.status, r.body["field"].as_str()), (400, Some("email")), "{bad}: {r:?}");
    }
    let r = auth.post("/api/v1/signup", None, json!({"email": "c@example.com", "password": 12})).await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("password")), "{r:?}");
    let r = auth.post("/api/v1/login", None, json!({"email": "c@example.com"})).await;
    assert_eq!(r.status, 400, "{r:?}");
    // No credentials, garbage credentials.
    assert_eq!(auth.call(Method::GET, "/api/v1/me", None, None).await.status, 401);
    assert_eq!(auth.get("/api/v1/me", "garbage").await.status, 401);
    assert_eq!(auth.get("/api/v1/me", key).await.status, 401, "a write key is not a login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_are_stored_literally() {
    let auth = Auth::start(&[]).await;
    let email = "o'brien+x@example.com";
    let name = "Robert'); DROP TABLE users;--";
    let org = "x' OR '1'='1; -- \" \\ $$ ü 🙂";
    let r = auth
        .post(
            "/api/v1/signup",
            None,
            json!({"email": email, "password": PASSWORD, "name": name, "organization_name": org}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let me = auth.get("/api/v1/me", &token(&r.body)).await;
    assert_eq!(me.body["user"]["email"], email);
    assert_eq!(me.body["user"]["name"], name);
    assert_eq!(me.body["organizations"][0]["name"], org);
    let p = auth
        .patch(
            &format!("/api/v1/projects/{}", id(&r.body["project"])),
            &token(&r.body),
            json!({"name": "p'; DELETE FROM projects; --"}),
        )
        .await;
    assert_eq!((p.status, p.body["name"].as_str()), (200, Some("p'; DELETE FROM projects; --")), "{p:?}");
    // Injection attempts at login are just wrong credentials.
    for e in ["' OR 1=1 --", "' OR '1'='1", "o'brien+x@example.com' --"] {
        let l = auth.post("/api/v1/login", None, json!({"email": e, "password": "' OR '1'='1"})).await;
        assert_eq!(l.status, 401, "{e}: {l:?}");
    }
    let l = auth.post("/api/v1/login", None, json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(l.status, 200, "{l:?}");
    let db = auth.sql().await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&db).await.unwrap();
    assert_eq!(users, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_floods_are_rate_limited() {
    let auth =
        Auth::start(&[("CAIRN_AUTH_LOGIN_PER_EMAIL_PER_MINUTE", "5"), ("CAIRN_AUTH_LOGIN_PER_IP_PER_MINUTE", "12")])
            .await;
    // Per email (from many addresses so that the address limit is not what trips).
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..7 {
        let ip = format!("198.51.100.{i}");
        let r = auth
            .call_with(
                Method::POST,
                "/api/v1/login",
                None,
                Some(json!({"email": "victim@example.com", "password": "Guess-Number-1"})),
                &[("x-forwarded-for", &ip)],
            )
            .await;
        statuses.push(r.status);
        if r.status == 429 {
            retry_after =
                r.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
            assert_eq!(r.body["error"], "rate_limited");
        }
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429, 429]);
    let wait = retry_after.expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");
    // Another email is not affected.
    let r = auth
        .call_with(
            Method::POST,
            "/api/v1/login",
            None,
            Some(json!({"email": "other@example.com", "password": "x"})),
            &[("x-forwarded-for", "198.51.100.50")],
        )
        .await;
    assert_eq!(r.status, 401);

    // Per address: spraying many emails from one address.
    let mut limited_at = None;
    for i in 0..15 {
        let r = auth
            .call_with(
                Method::POST,
                "/api/v1/login",
                None,
                Some(json!({"email": format!("user{i}@example.com"), "password": "x"})),
                &[("x-forwarded-for", "203.0.113.7, 10.0.0.1")],
            )
            .await;
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"));
            limited_at = Some(i);
            break;
        }
        assert_eq!(r.status, 401);
    }
    assert_eq!(limited_at, Some(12));
    assert_eq!(auth.service.metric("cairn_auth_logins_total{outcome=\"rate_limited\"}").await.unwrap(), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_reuse_revokes_the_session() {
    let auth = Auth::start(&[]).await;
    let s = auth.signup("rotate@example.com").await;
    let r1 = s["refresh_token"].as_str().unwrap().to_string();
    let a = auth.post("/api/v1/token/refresh", None, json!({"refresh_token": r1})).await;
    assert_eq!(a.status, 200, "{a:?}");
    let r2 = a.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert_eq!(auth.get("/api/v1/me", &token(&a.body)).await.status, 200);
    let b = auth.post("/api/v1/token/refresh", None, json!({"refresh_token": r2})).await;
    assert_eq!(b.status, 200);
    let r3 = b.body["refresh_token"].as_str().unwrap().to_string();
    let access = token(&b.body);
    assert_eq!(auth.authenticate(&access).await.status, 200);

    // r2 was rotated: presenting it again means theft; the whole session ends.
    let stolen = auth.post("/api/v1/token/refresh", None, json!({"refresh_token": r2})).await;
    assert_eq!(stolen.status, 401);
    assert_eq!(auth.post("/api/v1/token/refresh", None, json!({"refresh_token": r3})).await.status, 401);
    assert_eq!(auth.get("/api/v1/me", &access).await.status, 401);
    assert_eq!(auth.authenticate(&access).await.status, 401);
    assert_eq!(auth.post("/api/v1/token/refresh", None, json!({"refresh_token": "made-up"})).await.status, 401);
    assert_eq!(auth.service.metric("cairn_auth_refreshes_total{outcome=\"reuse_detected\"}").await.unwrap(), 1.0);

    // Other sessions of the user are not affected.
    let l = auth.post("/api/v1/login", None, json!({"email": "rotate@example.com", "password": PASSWORD})).await;
    assert_eq!(auth.get("/api/v1/me", &token(&l.body)).await.status, 200);

    // Any token the session used before, not only the last one, revokes it.
    let t1 = l.body["refresh_token"].as_str().unwrap().to_string();
    let mut current = auth.post("/api/v1/token/refresh", None, json!({"refresh_token": t1})).await;
    for _ in 0..3 {
        let t = current.body["refresh_token"].as_str().unwrap().to_string();
        current = auth.post("/api/v1/token/refresh", None, json!({"refresh_token": t})).await;
        assert_eq!(current.status, 200);
    }
    let live = token(&current.body);
    assert_eq!(auth.get("/api/v1/me", &live).await.status, 200);
    assert_eq!(auth.post("/api/v1/token/refresh", None, json!({"refresh_token": t1})).await.status, 401);
    assert_eq!(auth.get("/api/v1/me", &live).await.status, 401, "a token four rotations old revoked the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_at_their_absolute_age_and_everywhere_on_request() {
    let auth = Auth::start(&[("CAIRN_AUTH_SESSION_MAX_AGE_SECS", "3")]).await;
    let s = auth.signup("aging@example.com").await;
    let r1 = s["refresh_token"].as_str().unwrap().to_string();
    let a = auth.post("/api/v1/token/refresh", None, json!({"refresh_token": r1})).await;
    assert_eq!(a.status, 200);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    // However recently refreshed, the session ends 3 s after sign-in.
    assert_eq!(auth.get("/api/v1/me", &token(&a.body)).await.status, 401);
    let r2 = a.body["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(auth.post("/api/v1/token/refresh", None, json!({"refresh_token": r2})).await.status, 401);

    let auth = Auth::start(&[]).await;
    let s = auth.signup("everywhere@example.com").await;
    let login = || auth.post("/api/v1/login", None, json!({"email": "everywhere@example.com", "password": PASSWORD}));
    let (l1, l2) = (login().await, login().await);
    // A password change: the current password is required, other sessions end, this one stays.
    let wrong = auth
        .post(
            "/api/v1/password",
            Some(&token(&l1.body)),
            json!({"current_password": "nope", "new_password": "Another-Lake-43"}),
        )
        .await;
    assert_eq!((wrong.status, wrong.body["field"].as_str()), (400, Some("current_password")), "{wrong:?}");
    let weak = auth
        .post(
            "/api/v1/password",
            Some(&token(&l1.body)),
            json!({"current_password": PASSWORD, "new_password": "password123"}),
        )
        .await;
    assert_eq!((weak.status, weak.body["field"].as_str()), (400, Some("new_password")), "{weak:?}");
    let changed = auth
        .post(
            "/api/v1/password",
            Some(&token(&l1.body)),
            json!({"current_password": PASSWORD, "new_password": "Another-Lake-43"}),
        )
        .await;
    assert_eq!(changed.status, 204, "{changed:?}");
    assert_eq!(auth.get("/api/v1/me", &token(&l1.body)).await.status, 200, "this session stays");
    assert_eq!(auth.get("/api/v1/me", &token(&l2.body)).await.status, 401, "the others end");
    assert_eq!(auth.get("/api/v1/me", &token(&s)).await.status, 401);
    assert_eq!(login().await.status, 401, "the old password no longer works");
    let l3 = auth
        .post("/api/v1/login", None, json!({"email": "everywhere@example.com", "password": "Another-Lake-43"}))
        .await;
    assert_eq!(l3.status, 200);
    // Log out everywhere: every session ends, this one too.
    assert_eq!(auth.call(Method::POST, "/api/v1/logout/all", Some(&token(&l3.body)), None).await.status, 204);
    assert_eq!(auth.get("/api/v1/me", &token(&l3.body)).await.status, 401);
    assert_eq!(auth.get("/api/v1/me", &token(&l1.body)).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_at_once() {
    let auth = Auth::start(&[]).await;
    let s = auth.signup("logout@example.com").await;
    let access = token(&s);
    let p = auth.authenticate(&access).await;
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.body["kind"], "session");
    assert_eq!(p.body["user_id"], s["user"]["id"]);
    assert!(p.body["session_id"].is_string());
    assert_eq!(p.body["projects"][0]["id"], s["project"]["id"]);
    assert_eq!(p.body["projects"][0]["role"], "owner");
    assert_eq!(
        p.body["projects"][0]["permissions"],
        json!(["query:read", "insights:write", "persons:delete", "events:write"])
    );

    let out = auth.call(Method::POST, "/api/v1/logout", Some(&access), None).await;
    assert_eq!(out.status, 204, "{out:?}");
    assert_eq!(auth.authenticate(&access).await.status, 401);
    assert_eq!(auth.get("/api/v1/me", &access).await.status, 401);
    assert_eq!(
        auth.post("/api/v1/token/refresh", None, json!({"refresh_token": s["refresh_token"]})).await.status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_tokens_are_refused() {
    let auth = Auth::start(&[("CAIRN_AUTH_ACCESS_TTL_SECS", "1")]).await;
    let s = auth.signup("expiry@example.com").await;
    assert_eq!(s["expires_in"], 1);
    let access = token(&s);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(auth.get("/api/v1/me", &access).await.status, 401);
    assert_eq!(auth.authenticate(&access).await.status, 401);
    let r = auth.post("/api/v1/token/refresh", None, json!({"refresh_token": s["refresh_token"]})).await;
    assert_eq!(r.status, 200, "the session outlives its access tokens");
    assert_eq!(auth.get("/api/v1/me", &token(&r.body)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_keys_carry_only_their_projects_and_scopes() {
    let auth = Auth::start(&[]).await;
    let a = auth.signup("keys-a@example.com").await;
    let b = auth.signup("keys-b@example.com").await;
    let c = auth.signup("keys-c@example.com").await;
    let (ta, tb) = (token(&a), token(&b));
    let p1 = id(&a["project"]);
    let p2 = auth
        .post(
            &format!("/api/v1/organizations/{}/projects", id(&a["organization"])),
            Some(&ta),
            json!({"name": "Second"}),
        )
        .await;
    assert_eq!(p2.status, 201, "{p2:?}");
    let p2 = id(&p2.body);
    // A is a viewer in B's organisation.
    let added = auth.invite_and_accept(id(&b["organization"]), &tb, "keys-a@example.com", "viewer", &ta).await;
    assert_eq!(added.status, 200, "{added:?}");
    let pb = id(&b["project"]);

    let k = auth
        .post(
            "/api/v1/personal-keys",
            Some(&ta),
            json!({"name": "ci", "project_ids": [p1, pb], "scopes": ["query:read", "insights:write"]}),
        )
        .await;
    assert_eq!(k.status, 201, "{k:?}");
    let key = k.body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("phx_") && key.len() == 44);
    let p = auth.authenticate(&key).await;
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.body["kind"], "personal_key");
    assert_eq!(p.body["key_id"], k.body["id"]);
    assert_eq!(p.body["session_id"], Value::Null);
    let grants: HashMap<i64, Value> =
        p.body["projects"].as_array().unwrap().iter().map(|g| (id(g), g["permissions"].clone())).collect();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert_eq!(grants[&p1], json!(["query:read", "insights:write"]));
    assert_eq!(grants[&pb], json!(["query:read"]), "a viewer's role caps the key");
    assert!(!grants.contains_key(&p2), "outside the key's projects");

    let ro = auth
        .post(
            "/api/v1/personal-keys",
            Some(&ta),
            json!({"name": "ro", "scopes": ["query:read"], "expires_in_days": 30}),
        )
        .await;
    assert_eq!(ro.status, 201, "{ro:?}");
    assert!(ro.body["expires_at"].is_string());
    let p = auth.authenticate(ro.body["key"].as_str().unwrap()).await;
    let projects = p.body["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 3, "every project A can read: {p:?}");
    assert!(projects.iter().all(|g| g["permissions"] == json!(["query:read"])));

    // Refusals.
    let r = auth
        .post(
            "/api/v1/personal-keys",
            Some(&ta),
            json!({"name": "x", "project_ids": [p1, id(&c["project"])], "scopes": ["query:read"]}),
        )
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("project_ids[1]")), "{r:?}");
    let r = auth
        .post("/api/v1/personal-keys", Some(&ta), json!({"name": "x", "scopes": ["query:read", "admin:all"]}))
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("scopes[1]")), "{r:?}");
    let r = auth.post("/api/v1/personal-keys", Some(&ta), json!({"name": "x", "scopes": []})).await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("scopes")), "{r:?}");
    let r = auth
        .post("/api/v1/personal-keys", Some(&ta), json!({"name": "x", "scopes": ["query:read"], "expires_in_days": 0}))
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("expires_in_days")), "{r:?}");

    // Listings show the prefix, never the key.
    let list = auth.get("/api/v1/personal-keys", &ta).await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    assert!(!list.body.to_string().contains(&key));
    assert_eq!(list.body[0]["display_prefix"], &key[..8]);
    // Another user cannot revoke A's key.
    assert_eq!(auth.delete(&format!("/api/v1/personal-keys/{}", id(&k.body)), &tb).await.status, 404);
    assert_eq!(auth.authenticate(&key).await.status, 200);
    assert_eq!(auth.delete(&format!("/api/v1/personal-keys/{}", id(&k.body)), &ta).await.status, 204);
    assert_eq!(auth.authenticate(&key).await.status, 401);

    // Expired keys and deleted users.
    let db = auth.sql().await;
    sqlx::query("UPDATE personal_keys SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id(&ro.body))
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(auth.authenticate(ro.body["key"].as_str().unwrap()).await.status, 401);
    let kc = auth.post("/api/v1/personal-keys", Some(&token(&c)), json!({"name": "c", "scopes": ["query:read"]})).await;
    assert_eq!(auth.authenticate(kc.body["key"].as_str().unwrap()).await.status, 200);
    sqlx::query("DELETE FROM users WHERE id = $1").bind(id(&c["user"])).execute(&db).await.unwrap();
    assert_eq!(auth.authenticate(kc.body["key"].as_str().unwrap()).await.status, 401);
    assert_eq!(auth.authenticate(&token(&c)).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_keys_resolve_until_revoked() {
    let auth = Auth::start(&[]).await;
    let s = auth.signup("wk@example.com").await;
    let t = token(&s);
    let project = id(&s["project"]);
    let first = s["write_key"]["key"].as_str().unwrap().to_string();
    let r = auth.resolve(&first).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, json!({"project_id": project, "key_id": s["write_key"]["id"]}));

    let made = auth.call(Method::POST, &format!("/api/v1/projects/{project}/write-keys"), Some(&t), None).await;
    assert_eq!(made.status, 201, "an empty body is fine: {made:?}");
    let named = auth.post(&format!("/api/v1/projects/{project}/write-keys"), Some(&t), json!({"name": "ios"})).await;
    assert_eq!((named.status, named.body["name"].as_str()), (201, Some("ios")));
    let second = made.body["key"].as_str().unwrap().to_string();
    assert_eq!(auth.resolve(&second).await.body["project_id"], project);

    let list = auth.get(&format!("/api/v1/projects/{project}/write-keys"), &t).await;
    assert_eq!(list.body.as_array().unwrap().len(), 3);
    assert!(!list.body.to_string().contains(&first[8..]), "no plaintext in listings");
    // last_used_at is recorded (in the background, at most once a minute).
    wait_until("last_used_at", Duration::from_secs(10), || async {
        auth.get(&format!("/api/v1/projects/{project}/write-keys"), &t).await.body[0]["last_used_at"].is_string()
    })
    .await
    .unwrap();

    let del = auth.delete(&format!("/api/v1/projects/{project}/write-keys/{}", id(&s["write_key"])), &t).await;
    assert_eq!(del.status, 204, "{del:?}");
    let gone = auth.resolve(&first).await;
    assert_eq!((gone.status, gone.body["error"].as_str()), (404, Some("not_found")));
    assert_eq!(auth.resolve(&second).await.status, 200, "other keys keep working");
    assert_eq!(auth.resolve("phc_unknown").await.status, 404);
    let list = auth.get(&format!("/api/v1/projects/{project}/write-keys"), &t).await;
    assert!(list.body[0]["revoked_at"].is_string());
    assert_eq!(auth.delete(&format!("/api/v1/projects/{project}/write-keys/999999"), &t).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organisations_are_isolated_and_roles_enforced() {
    let auth = Auth::start(&[]).await;
    let a = auth.signup("org-a@example.com").await;
    let b = auth.signup("org-b@example.com").await;
    let (ta, tb) = (token(&a), token(&b));
    let org = id(&a["organization"]);
    let project = id(&a["project"]);
    let key_id = id(&a["write_key"]);
    let (ua, ub) = (id(&a["user"]), id(&b["user"]));

    // B is not a member: everything of A's answers 404, reads and writes alike.
    for path in [
        format!("/api/v1/organizations/{org}"),
        format!("/api/v1/organizations/{org}/members"),
        format!("/api/v1/projects/{project}"),
        format!("/api/v1/projects/{project}/write-keys"),
    ] {
        let r = auth.get(&path, &tb).await;
        assert_eq!((r.status, r.body["error"].as_str()), (404, Some("not_found")), "{path}: {r:?}");
    }
    assert_eq!(auth.patch(&format!("/api/v1/organizations/{org}"), &tb, json!({"name": "mine"})).await.status, 404);
    assert_eq!(auth.delete(&format!("/api/v1/organizations/{org}"), &tb).await.status, 404);
    assert_eq!(auth.delete(&format!("/api/v1/projects/{project}/write-keys/{key_id}"), &tb).await.status, 404);
    assert_eq!(
        auth.post(&format!("/api/v1/organizations/{org}/projects"), Some(&tb), json!({"name": "x"})).await.status,
        404
    );
    assert_eq!(
        auth.post(
            &format!("/api/v1/organizations/{org}/members"),
            Some(&tb),
            json!({"email": "org-b@example.com", "role": "owner"})
        )
        .await
        .status,
        404
    );
    assert_eq!(auth.get("/api/v1/projects", &tb).await.body.as_array().unwrap().len(), 1);
    // A project of B's own organisation under A's organisation's path does not leak either.
    assert_eq!(
        auth.delete(&format!("/api/v1/projects/{project}/write-keys/{}", id(&b["write_key"])), &ta).await.status,
        404
    );

    // B is invited as a viewer: nothing changes until B accepts.
    let invited = auth
        .post(
            &format!("/api/v1/organizations/{org}/members"),
            Some(&ta),
            json!({"email": "ORG-B@example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(invited.status, 202, "{invited:?}");
    assert_eq!(auth.get(&format!("/api/v1/organizations/{org}"), &tb).await.status, 404, "no silent membership");
    let pending = auth.get(&format!("/api/v1/organizations/{org}/invitations"), &ta).await;
    assert_eq!(pending.body.as_array().unwrap().len(), 1, "{pending:?}");
    assert!(pending.body[0].get("token").is_none(), "the token is never shown again");
    let invitation_token = invited.body["token"].as_str().unwrap().to_string();
    // Someone else cannot use it; B can, once.
    let stranger = auth.signup("org-c@example.com").await;
    let r = auth.post("/api/v1/invitations/accept", Some(&token(&stranger)), json!({"token": invitation_token})).await;
    assert_eq!(r.status, 404, "{r:?}");
    let added = auth.post("/api/v1/invitations/accept", Some(&tb), json!({"token": invitation_token})).await;
    assert_eq!((added.status, added.body["role"].as_str()), (200, Some("viewer")), "{added:?}");
    let again = auth.post("/api/v1/invitations/accept", Some(&tb), json!({"token": invitation_token})).await;
    assert_eq!(again.status, 404, "used once");
    assert!(auth
        .get(&format!("/api/v1/organizations/{org}/invitations"), &ta)
        .await
        .body
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(auth.get(&format!("/api/v1/organizations/{org}"), &tb).await.body["role"], "viewer");
    assert_eq!(auth.get(&format!("/api/v1/projects/{project}"), &tb).await.status, 200);
    assert_eq!(auth.get(&format!("/api/v1/projects/{project}/write-keys"), &tb).await.status, 200);
    assert_eq!(auth.get(&format!("/api/v1/organizations/{org}/members"), &tb).await.body.as_array().unwrap().len(), 2);
    for r in [
        auth.call(Method::POST, &format!("/api/v1/projects/{project}/write-keys"), Some(&tb), None).await,
        auth.delete(&format!("/api/v1/projects/{project}/write-keys/{key_id}"), &tb).await,
        auth.patch(&format!("/api/v1/projects/{project}"), &tb, json!({"name": "x"})).await,
        auth.delete(&format!("/api/v1/projects/{project}"), &tb).await,
        auth.post(&format!("/api/v1/organizations/{org}/projects"), Some(&tb), json!({"name": "x"})).await,
        auth.patch(&format!("/api/v1/organizations/{org}"), &tb, json!({"name": "x"})).await,
        auth.post(
            &format!("/api/v1/organizations/{org}/members"),
            Some(&tb),
            json!({"email": "org-a@example.com", "role": "viewer"}),
        )
        .await,
        auth.patch(&format!("/api/v1/organizations/{org}/members/{ub}"), &tb, json!({"role": "admin"})).await,
    ] {
        assert_eq!((r.status, r.body["error"].as_str()), (403, Some("forbidden")), "{r:?}");
    }
    let viewer = auth.authenticate(&tb).await;
    let grant = viewer.body["projects"].as_array().unwrap().iter().find(|g| id(g) == project).cloned().unwrap();
    assert_eq!(grant["permissions"], json!(["query:read"]));

    // Admin: manages projects and members, but not owners.
    let r = auth.patch(&format!("/api/v1/organizations/{org}/members/{ub}"), &ta, json!({"role": "admin"})).await;
    assert_eq!((r.status, r.body["role"].as_str()), (200, Some("admin")), "{r:?}");
    let np = auth
        .post(
            &format!("/api/v1/organizations/{org}/projects"),
            Some(&tb),
            json!({"name": "Web", "timezone": "Europe/Paris"}),
        )
        .await;
    assert_eq!((np.status, np.body["timezone"].as_str()), (201, Some("Europe/Paris")), "{np:?}");
    assert!(np.body["write_key"]["key"].as_str().unwrap().starts_with("phc_"));
    let bad_tz = auth
        .post(
            &format!("/api/v1/organizations/{org}/projects"),
            Some(&tb),
            json!({"name": "x", "timezone": "Mars/Olympus Mons"}),
        )
        .await;
    assert_eq!((bad_tz.status, bad_tz.body["field"].as_str()), (400, Some("timezone")));
    assert_eq!(
        auth.patch(&format!("/api/v1/organizations/{org}/members/{ub}"), &tb, json!({"role": "owner"})).await.status,
        403
    );
    assert_eq!(auth.delete(&format!("/api/v1/organizations/{org}/members/{ua}"), &tb).await.status, 403);
    assert_eq!(
        auth.patch(&format!("/api/v1/organizations/{org}/members/{ua}"), &tb, json!({"role": "member"})).await.status,
        403
    );
    assert_eq!(auth.delete(&format!("/api/v1/organizations/{org}"), &tb).await.status, 403, "only owners delete");
    let bad_role = auth.patch(&format!("/api/v1/organizations/{org}/members/{ub}"), &ta, json!({"role": "root"})).await;
    assert_eq!((bad_role.status, bad_role.body["field"].as_str()), (400, Some("role")));

    // Inviting says nothing about who has an account: an unknown email and a member alike get 202.
    for email in ["ghost@example.com", "org-b@example.com"] {
        let r = auth
            .post(&format!("/api/v1/organizations/{org}/members"), Some(&ta), json!({"email": email, "role": "member"}))
            .await;
        assert_eq!(r.status, 202, "{email}: {r:?}");
        assert_eq!(r.body.as_object().unwrap().keys().collect::<Vec<_>>(), ["invitation", "token"]);
    }
    // Withdrawn invitations cannot be accepted.
    let pending = auth.get(&format!("/api/v1/organizations/{org}/invitations"), &ta).await;
    let ghost = pending.body.as_array().unwrap().iter().find(|i| i["email"] == "ghost@example.com").unwrap().clone();
    assert_eq!(auth.delete(&format!("/api/v1/organizations/{org}/invitations/{}", id(&ghost)), &ta).await.status, 204);
    assert_eq!(auth.delete(&format!("/api/v1/organizations/{org}/invitations/{}", id(&ghost)), &ta).await.status, 404);

    // The last owner can neither leave nor be demoted.
    let r = auth.delete(&format!("/api/v1/organizations/{org}/members/{ua}"), &ta).await;
    assert_eq!((r.status, r.body["error"].as_str()), (409, Some("conflict")), "{r:?}");
    assert_eq!(
        auth.patch(&format!("/api/v1/organizations/{org}/members/{ua}"), &ta, json!({"role": "admin"})).await.status,
        409
    );
    // With a second owner, the first may go.
    assert_eq!(
        auth.patch(&format!("/api/v1/organizations/{org}/members/{ub}"), &ta, json!({"role": "owner"})).await.status,
        200
    );
    assert_eq!(auth.delete(&format!("/api/v1/organizations/{org}/members/{ua}"), &ta).await.status, 204);
    assert_eq!(auth.get(&format!("/api/v1/organizations/{org}"), &ta).await.status, 404, "A left");
    assert_eq!(
        auth.delete(&format!("/api/v1/organizations/{org}/members/{ub}"), &tb).await.status,
        409,
        "B is now the last owner"
    );

    // The owner deletes the organisation: its projects and keys go with it.
    let key = a["write_key"]["key"].as_str().unwrap();
    assert_eq!(auth.resolve(key).await.status, 200);
    assert_eq!(auth.delete(&format!("/api/v1/organizations/{org}"), &tb).await.status, 204);
    assert_eq!(auth.get(&format!("/api/v1/projects/{project}"), &tb).await.status, 404);
    assert_eq!(auth.resolve(key).await.status, 404);

    // New organisations: the creator owns them.
    let o = auth.post("/api/v1/organizations", Some(&ta), json!({"name": "Second org"})).await;
    assert_eq!((o.status, o.body["role"].as_str()), (201, Some("owner")), "{o:?}");
    let renamed = auth.patch(&format!("/api/v1/organizations/{}", id(&o.body)), &ta, json!({"name": "Renamed"})).await;
    assert_eq!(renamed.body["name"], "Renamed");
    assert_eq!(auth.post("/api/v1/organizations", Some(&ta), json!({"name": ""})).await.status, 400);
    assert_eq!(auth.get("/api/v1/organizations", &ta).await.body.as_array().unwrap().len(), 1, "A left the first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_token_is_required_when_configured() {
    let auth = Auth::start(&[("CAIRN_INTERNAL_TOKEN", "internal-e2e-secret")]).await;
    let s = auth.signup("internal@example.com").await;
    let key = s["write_key"]["key"].as_str().unwrap();
    let body = json!({"key": key});
    let none = auth.call(Method::POST, "/internal/v1/write-keys/resolve", None, Some(body.clone())).await;
    assert_eq!((none.status, none.body["error"].as_str()), (401, Some("internal_unauthorized")), "{none:?}");
    let wrong = auth
        .call(Method::POST, "/internal/v1/write-keys/resolve", Some("internal-e2e-secreT"), Some(body.clone()))
        .await;
    assert_eq!(wrong.status, 401);
    let right =
        auth.call(Method::POST, "/internal/v1/write-keys/resolve", Some("internal-e2e-secret"), Some(body)).await;
    assert_eq!(right.status, 200, "{right:?}");
    let a = auth.call(Method::POST, "/internal/v1/authenticate", None, Some(json!({"credential": token(&s)}))).await;
    assert_eq!(a.status, 401);
    let a = auth
        .call(
            Method::POST,
            "/internal/v1/authenticate",
            Some("internal-e2e-secret"),
            Some(json!({"credential": token(&s)})),
        )
        .await;
    assert_eq!(a.status, 200);
    // The shared client: the right token resolves; a wrong one is an error, not "invalid".
    let client = |token: &str| {
        AuthClient::new(AuthClientConfig {
            url: format!("http://{}", auth.service.addr),
            internal_token: Some(token.to_string().into()),
            cache_ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            stale_for: Duration::from_secs(600),
            max_entries: 1000,
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    };
    let good = client("internal-e2e-secret");
    let principal = good.authenticate(&token(&s)).await.unwrap().unwrap();
    assert_eq!(principal.user_id, id(&s["user"]));
    assert!(principal.can(id(&s["project"]), Permission::InsightsWrite));
    assert_eq!(good.authenticate("nonsense").await.unwrap(), None);
    let resolved = good.resolve_write_key(key).await.unwrap().unwrap();
    assert_eq!(resolved.project_id, id(&s["project"]));
    assert_eq!(good.resolve_write_key("phc_nope").await.unwrap(), None);
    let bad = client("wrong");
    assert!(bad.authenticate(&token(&s)).await.is_err());
    assert!(bad.resolve_write_key(key).await.is_err());

    // The public API does not take the internal token.
    assert_eq!(auth.get("/api/v1/me", "internal-e2e-secret").await.status, 401);
    assert!(
        !std::fs::read_to_string(&auth.service.log).unwrap().contains("internal-e2e-secret"),
        "no secrets in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_twice_are_a_no_op_and_secrets_stay_out_of_logs() {
    let pg = TestPostgres::shared().unwrap();
    let db_url = pg.fresh_database("auth").await.unwrap();
    // The migrate subcommand, twice.
    for _ in 0..2 {
        let out = std::process::Command::new(bin_dir().join("cairn-auth"))
            .arg("migrate")
            .env("CAIRN_POSTGRES_URL", &db_url)
            .env("CAIRN_LOG_FORMAT", "text")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
    let mut first = Auth::start_on(&db_url, &[]).await;
    let s = first.signup("twice@example.com").await;
    let log = first.service.log.clone();
    assert!(first.service.terminate(Duration::from_secs(10)).unwrap(), "clean exit on SIGTERM");
    let started = Instant::now();
    let second = Auth::start_on(&db_url, &[]).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    let l = second.post("/api/v1/login", None, json!({"email": "twice@example.com", "password": PASSWORD})).await;
    assert_eq!(l.status, 200, "{l:?}");
    // The same secret: tokens survive the restart.
    assert_eq!(second.get("/api/v1/me", &token(&s)).await.status, 200);
    let db = second.sql().await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&db).await.unwrap();
    assert_eq!(applied as usize, cairn_postgres::MIGRATOR.iter().count());

    let text = std::fs::read_to_string(log).unwrap() + &std::fs::read_to_string(&second.service.log).unwrap();
    for secret in
        [PASSWORD, SECRET, s["refresh_token"].as_str().unwrap(), s["write_key"]["key"].as_str().unwrap(), &token(&s)]
    {
        assert!(!text.contains(secret), "a secret reached the log");
    }
}

/// The revocation feed: each way of taking a right away writes its row (API calls, a project's
/// deletion cascading to its keys, a hand-written UPDATE), a held poll wakes on the commit, and a
/// transaction that commits after a later one (sequence order is not commit order) is still
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revocation_feed_delivers_every_revocation_once_committed() {
    let auth = Auth::start(&[]).await;
    let db = auth.sql().await;
    let s = auth.signup("feed@example.com").await;
    let t = token(&s);
    let (org, project) = (id(&s["organization"]), id(&s["project"]));
    let feed = |body: Value| {
        let url = auth.service.url("/internal/v1/revocations");
        let http = auth.http.clone();
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let seqs = |v: &Value| -> Vec<i64> {
        v["revocations"].as_array().unwrap().iter().map(|r| r["seq"].as_i64().unwrap()).collect()
    };
    let kinds = |v: &Value| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = v["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["kind"].as_str().unwrap().to_string(), r["subject"].as_str().unwrap().to_string()))
            .collect();
        out.sort();
        out.dedup();
        out
    };
    let head = feed(json!({})).await;
    assert_eq!(head["revocations"], json!([]));
    let mut cursor = head["cursor"].as_u64().unwrap();

    // Nothing new: the poll is held for wait_ms.
    let t0 = Instant::now();
    let idle = feed(json!({"since": cursor, "wait_ms": 400})).await;
    assert!(t0.elapsed() >= Duration::from_millis(350), "held {:?}", t0.elapsed());
    assert_eq!(kinds(&idle), vec![]);

    // A slow transaction revokes a key; a later one revokes another and commits first.
    let k1 = auth.post(&format!("/api/v1/projects/{project}/write-keys"), Some(&t), json!({"name": "slow"})).await;
    let k2 = auth.post(&format!("/api/v1/projects/{project}/write-keys"), Some(&t), json!({"name": "fast"})).await;
    let (k1, k2) = (id(&k1.body), id(&k2.body));
    let mut slow = db.begin().await.unwrap();
    sqlx::query("UPDATE write_keys SET revoked_at = now() WHERE id = $1").bind(k1).execute(&mut *slow).await.unwrap();
    assert_eq!(auth.delete(&format!("/api/v1/projects/{project}/write-keys/{k2}"), &t).await.status, 204);
    let first = feed(json!({"since": cursor, "wait_ms": 5000})).await;
    assert_eq!(kinds(&first), vec![("write_key".to_string(), k2.to_string())]);
    cursor = first["cursor"].as_u64().unwrap();
    // The held poll wakes when the slow one commits, and delivers its (lower) seq.
    let waiting = tokio::spawn(feed(json!({"since": cursor, "have": seqs(&first), "wait_ms": 20000})));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    slow.commit().await.unwrap();
    let late = waiting.await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "woken after {:?}", t0.elapsed());
    assert!(kinds(&late).contains(&("write_key".to_string(), k1.to_string())), "{late}");
    assert!(seqs(&late).iter().min() < seqs(&first).iter().min(), "sequence order is not commit order: {late}");
    let (cursor, have) = (late["cursor"].as_u64().unwrap(), seqs(&late));

    // Every other kind, through the API.
    let other = auth.signup("feed-member@example.com").await;
    let added = auth.invite_and_accept(org, &t, "feed-member@example.com", "member", &token(&other)).await;
    assert_eq!(added.status, 200, "{added:?}");
    let member = id(&other["user"]);
    let p2 = auth.post(&format!("/api/v1/organizations/{org}/projects"), Some(&t), json!({"name": "Doomed"})).await;
    let (p2, p2_key) = (id(&p2.body), id(&p2.body["write_key"]));
    let pk = auth.post("/api/v1/personal-keys", Some(&t), json!({"name": "ci", "scopes": ["query:read"]})).await;
    assert_eq!(pk.status, 201, "{pk:?}");
    let pk = id(&pk.body);
    let role =
        auth.patch(&format!("/api/v1/organizations/{org}/members/{member}"), &t, json!({"role": "viewer"})).await;
    assert_eq!(role.status, 200, "{role:?}");
    assert_eq!(auth.delete(&format!("/api/v1/projects/{p2}"), &t).await.status, 204);
    assert_eq!(auth.delete(&format!("/api/v1/personal-keys/{pk}"), &t).await.status, 204);
    let session: String = sqlx::query_scalar("SELECT id::text FROM sessions WHERE user_id = $1 LIMIT 1")
        .bind(member)
        .fetch_one(&db)
        .await
        .unwrap();
    let out = auth.post("/api/v1/logout", Some(&token(&other)), json!({})).await;
    assert_eq!(out.status, 204, "{out:?}");
    let rest = feed(json!({"since": cursor, "have": have})).await;
    let got = kinds(&rest);
    let owner = id(&s["user"]);
    for want in [
        ("user", member.to_string()),      // joined, then re-roled
        ("user", owner.to_string()),       // a project made in their organisation
        ("project", p2.to_string()),       // deleted
        ("write_key", p2_key.to_string()), // with its project
        ("personal_key", pk.to_string()),  // revoked
        ("session", session.clone()),      // logged out
    ] {
        assert!(got.contains(&(want.0.to_string(), want.1.clone())), "{want:?} missing from {got:?}");
    }
    assert_eq!(rest["reset"], json!(false));
    let bad = auth.call(Method::POST, "/internal/v1/revocations", None, Some(json!({"since": "abc"}))).await;
    assert_eq!((bad.status, bad.body["field"].as_str()), (400, Some("since")), "{bad:?}");
}
