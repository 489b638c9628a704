//! The SDKs against the real pipeline: each suite runs in its own language against a capture and
//! consumer started here (own topic and database), and checks in ClickHouse that its events
//! arrived, exactly once and intact.
//!
//! - sdks/python: pytest (the Python SDK's unit and integration tests, and PostHog's own Python SDK
//!   sending to Cairn unchanged).
//! - sdks/web: vitest (unit tests), the package build (ESM, CommonJS, declarations, browser
//!   bundle), then a real Chromium driven by playwright-core (the web SDK's browser bundle and
//!   PostHog's posthog-js sending from a page; its identify and alias calls end as one person).
//!
//! Every suite reads the same variables: CAIRN_CAPTURE_URL, CAIRN_API_KEY, CAIRN_PROJECT_ID,
//! CAIRN_CLICKHOUSE_URL, CAIRN_CLICKHOUSE_DATABASE. `stack/sdks.sh install` provides Chromium,
//! the npm packages and the Python environment (`make deps` runs it; so does each test here).

use std::process::{Command, Stdio};

use cairn_e2e::{repo_root, tools_dir, Pipeline, Service, TestClickHouse, TestKafka, TestPostgres};

struct Suite {
    _capture: Service,
    _consumer: Service,
    env: Vec<(String, String)>,
}

async fn pipeline(key: &str, project: u64) -> Suite {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    // Persons too: the SDKs' identity calls must end as one person.
    let pg = TestPostgres::shared().unwrap();
    let url = pg.fresh_database("sdks").await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    cairn_postgres::migrate(&pool).await.unwrap();
    let mut p = Pipeline::new(&kafka, &ch, &format!("{key}={project}"));
    p.persons(&url);
    let consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();
    let env = vec![
        ("CAIRN_CAPTURE_URL".to_string(), format!("http://{}", capture.addr)),
        ("CAIRN_API_KEY".to_string(), key.to_string()),
        ("CAIRN_PROJECT_ID".to_string(), project.to_string()),
        ("CAIRN_CLICKHOUSE_URL".to_string(), ch.url()),
        ("CAIRN_CLICKHOUSE_DATABASE".to_string(), p.database.clone()),
    ];
    Suite { _capture: capture, _consumer: consumer, env }
}

fn install_sdk_tools(parts: &[&str]) {
    run(
        "stack/sdks.sh install",
        Command::new("bash").arg(repo_root().join("stack/sdks.sh")).arg("install").args(parts),
    );
}

/// Runs a command to completion; on failure, panics with everything it printed.
fn run(what: &str, cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("── {what}\n{stdout}{stderr}");
    assert!(out.status.success(), "{what} failed ({}):\n{stdout}\n{stderr}", out.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_and_posthog_python_send_to_capture() {
    install_sdk_tools(&["python"]);
    let suite = pipeline("phc_sdk_python", 4101).await;
    let dir = repo_root().join("sdks/python");
    run(
        "pytest sdks/python",
        Command::new(tools_dir().join("sdk-venv/bin/python"))
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
            .current_dir(&dir)
            .env("PYTHONPATH", dir.join("src"))
            .envs(suite.env.iter().map(|(k, v)| (k, v))),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_sdk_and_posthog_js_send_from_chromium() {
    install_sdk_tools(&["chromium", "web"]);
    let dir = repo_root().join("sdks/web");
    run("web SDK unit tests (vitest)", Command::new("npm").args(["test", "--silent"]).current_dir(&dir));
    run("web SDK build", Command::new("npm").args(["run", "build", "--silent"]).current_dir(&dir));
    let suite = pipeline("phc_sdk_web", 4102).await;
    let chromium = std::env::var("CAIRN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    run(
        "web SDK in Chromium (playwright-core)",
        Command::new("node")
            .arg("e2e/browser.mjs")
            .current_dir(&dir)
            .env("CAIRN_CHROMIUM", chromium)
            .envs(suite.env.iter().map(|(k, v)| (k, v))),
    );
}
