//! Scheduled exports of new events to files, through the real pipeline: events sent to capture,
//! through Kafka and the consumer into ClickHouse; query's exporter writes one file per window to
//! a local directory and to an S3-compatible store (s3proxy, signature V4 checked), closing a
//! window only once the consumer group has consumed past it. Every event lands in exactly one file
//! — also when a client sent it twice, and when a window is written again (the cursor moved back,
//! as after a crash between the file and the cursor) — and the export resumes where it was.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use cairn_e2e::{
    call, sign_up, unique, wait_until, Pipeline, Service, TestClickHouse, TestKafka, TestPostgres, TestS3,
};
use serde_json::{json, Value};
use uuid::Uuid;

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Whether the export has written every event received before `t`.
fn passed(export: &Value, t: time::OffsetDateTime) -> bool {
    export["exported_until"]
        .as_str()
        .and_then(|u| time::OffsetDateTime::parse(u, &time::format_description::well_known::Rfc3339).ok())
        .is_some_and(|u| u > t)
}

fn files_under(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|e| e.to_str()) == Some(ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The uuids in each file (JSON lines, or CSV whose first column is the uuid).
fn uuids_of(files: &[std::path::PathBuf]) -> Result<BTreeMap<String, usize>> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(f)?;
        let csv = f.extension().and_then(|e| e.to_str()) == Some("csv");
        for (i, line) in text.lines().enumerate() {
            if csv && i == 0 {
                if !line.starts_with("\"uuid\"") && !line.starts_with("uuid") {
                    bail!("{}: header {line}", f.display());
                }
                continue;
            }
            let uuid = if csv {
                line.split(',').next().unwrap_or_default().trim_matches('"').to_string()
            } else {
                serde_json::from_str::<Value>(line)?["uuid"].as_str().unwrap_or_default().to_string()
            };
            *seen.entry(uuid).or_default() += 1;
        }
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_events_reach_files_exactly_once() -> Result<()> {
    let kafka = TestKafka::shared()?;
    let ch = TestClickHouse::shared()?;
    let pg = TestPostgres::shared()?;
    let s3 = TestS3::shared()?;
    let bucket = unique("exports").replace('_', "-").to_lowercase();
    let bucket_dir = s3.bucket(&bucket)?;
    let pg_url = pg.fresh_database("exports").await?;
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CAIRN_POSTGRES_URL".into(), pg_url.clone());
    env.insert("CAIRN_AUTH_TOKEN_SECRET".into(), "a-test-secret-of-enough-length-0123456789".into());
    env.insert("CAIRN_INTERNAL_TOKEN".into(), "exports-internal-token".into());
    let auth = Service::start("auth", &env).await?;
    auth.wait_ready(Duration::from_secs(60)).await?;
    let account = sign_up(&auth, &format!("{}@exports.example", unique("exp"))).await?;
    let other = sign_up(&auth, &format!("{}@exports.example", unique("other"))).await?;
    let project = account.project_id;
    let p = Pipeline::new(&kafka, &ch, &format!("phc_exp={project},phc_other={}", other.project_id));
    let _consumer = p.consumer().await?;
    let capture = p.capture().await?;

    let root = std::env::temp_dir().join(unique("cairn_exports"));
    std::fs::create_dir_all(&root)?;
    for (k, v) in &p.env {
        env.insert(k.clone(), v.clone());
    }
    env.insert("CAIRN_AUTH_URL".into(), auth.url(""));
    env.insert("CAIRN_EXPORT_LOCAL_ROOT".into(), root.display().to_string());
    env.insert("CAIRN_EXPORT_S3_ENDPOINT".into(), s3.url());
    env.insert("CAIRN_EXPORT_S3_ACCESS_KEY_ID".into(), TestS3::IDENTITY.into());
    env.insert("CAIRN_EXPORT_S3_SECRET_ACCESS_KEY".into(), TestS3::SECRET.into());
    env.insert("CAIRN_EXPORT_POLL_SECS".into(), "1".into());
    env.insert("CAIRN_EXPORT_SETTLE_SECS".into(), "2".into());
    let query = Service::start("query", &env).await?;
    query.wait_ready(Duration::from_secs(60)).await?;
    let api = |path: &str| query.url(&format!("/api/v1/projects/{project}{path}"));
    let token = account.access_token.clone();

    // Two exports of one-minute windows from a minute ago: JSON lines to a directory, CSV to S3.
    let start_at = rfc3339(time::OffsetDateTime::now_utc() - time::Duration::seconds(60));
    let (status, local) = call(
        "POST",
        &api("/event-exports"),
        Some(&token),
        Some(&json!({"name": "to disk", "destination": {"kind": "local", "path": "lake/raw"}, "interval_seconds": 60, "start_at": start_at})),
    )
    .await?;
    assert_eq!(status, 201, "{local}");
    let (status, remote) = call(
        "POST",
        &api("/event-exports"),
        Some(&token),
        Some(&json!({"name": "to s3", "destination": {"kind": "s3", "bucket": bucket, "prefix": "cairn"}, "format": "csv", "interval_seconds": 60, "start_at": start_at})),
    )
    .await?;
    assert_eq!(status, 201, "{remote}");
    // Refused: a path out of the root, an unknown destination kind, a viewer-level key.
    for body in [
        json!({"name": "x", "destination": {"kind": "local", "path": "../etc"}}),
        json!({"name": "x", "destination": {"kind": "ftp"}}),
        json!({"name": "x", "destination": {"kind": "s3", "bucket": "A_B"}}),
        json!({"name": "x", "destination": {"kind": "local"}, "interval_seconds": 5}),
    ] {
        let (status, v) = call("POST", &api("/event-exports"), Some(&token), Some(&body)).await?;
        assert_eq!(status, 400, "{body}: {v}");
    }
    let (status, _) = call("GET", &api("/event-exports"), Some(&other.access_token), None).await?;
    assert!(status == 403 || status == 404, "{status}");

    // Events over about a minute and a half, some sent twice (a client's retry: the same uuid and
    // body, a later receipt), some for the other project.
    let mut sent: BTreeSet<String> = BTreeSet::new();
    let mut retried = Vec::new();
    for wave in 0..6 {
        let mut batch = Vec::new();
        for i in 0..40 {
            let uuid = Uuid::now_v7();
            // As an SDK sends it: its own uuid and timestamp, the same again on a retry.
            let ts = rfc3339(time::OffsetDateTime::now_utc());
            let body = json!({"event": "pageview", "distinct_id": format!("u{}", i % 7), "uuid": uuid, "timestamp": ts,
                              "properties": {"wave": wave, "i": i, "note": "a, \"quoted\"\nline"}});
            if i % 10 == 0 {
                retried.push(body.clone());
            }
            sent.insert(uuid.to_string());
            batch.push(body);
        }
        let r = reqwest::Client::new()
            .post(capture.url("/batch"))
            .json(&json!({"api_key": "phc_exp", "batch": batch}))
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        let r = reqwest::Client::new()
            .post(capture.url("/batch"))
            .json(&json!({"api_key": "phc_other", "batch": [{"event": "pageview", "distinct_id": "o", "uuid": Uuid::now_v7()}]}))
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        if wave == 3 {
            // The retries, a window or two after the first sends.
            let r = reqwest::Client::new()
                .post(capture.url("/batch"))
                .json(&json!({"api_key": "phc_exp", "batch": retried}))
                .send()
                .await?;
            assert_eq!(r.status(), 200);
        }
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    let last_sent = time::OffsetDateTime::now_utc();

    // Both exports catch up past the last event.
    for export in [&local, &remote] {
        let id = export["id"].as_i64().unwrap_or_default();
        wait_until("the export to pass the last event", Duration::from_secs(150), || async {
            match call("GET", &api(&format!("/event-exports/{id}")), Some(&token), None).await {
                Ok((200, e)) => passed(&e, last_sent),
                _ => false,
            }
        })
        .await?;
    }
    let local_dir = root.join("lake/raw").join(format!("project-{project}/export-{}", local["id"]));
    let local_files = files_under(&local_dir, "jsonl");
    let got = uuids_of(&local_files)?;
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), sent, "every event of the project, none of the other's");
    assert!(got.values().all(|n| *n == 1), "each once: {:?}", got.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>());
    assert!(local_files.len() >= 2, "one file per window: {local_files:?}");
    let s3_dir = bucket_dir.join("cairn").join(format!("project-{project}/export-{}", remote["id"]));
    let s3_files = files_under(&s3_dir, "csv");
    let got = uuids_of(&s3_files)?;
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), sent);
    assert!(got.values().all(|n| *n == 1));
    // A line carries the event as stored.
    // (A window without events is an empty file: its absence would leave readers guessing.)
    let text: String = local_files.iter().map(|f| std::fs::read_to_string(f).unwrap_or_default()).collect();
    let first: Value = serde_json::from_str(text.lines().next().unwrap_or("{}"))?;
    let props: Value = serde_json::from_str(first["properties"].as_str().unwrap_or("{}"))?;
    assert_eq!(props["note"], "a, \"quoted\"\nline");
    assert!(first["received_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    // The API lists the files, with the events in each.
    let (_, files) = call("GET", &api(&format!("/event-exports/{}/files", local["id"])), Some(&token), None).await?;
    let listed: i64 =
        files["results"].as_array().into_iter().flatten().map(|f| f["events"].as_i64().unwrap_or(0)).sum();
    assert_eq!(listed, sent.len() as i64, "{files}");

    // The cursor moved back (a crash after the files were written, before the cursor moved):
    // the windows are written again, to the same names, with the same events.
    let before: Vec<(std::path::PathBuf, String)> =
        local_files.iter().map(|f| (f.clone(), std::fs::read_to_string(f).unwrap_or_default())).collect();
    let (pool, id) = (sqlx::PgPool::connect(&pg_url).await?, local["id"].as_i64().unwrap_or_default());
    sqlx::query("UPDATE event_exports SET cursor_ms = (SELECT min(window_start_ms) FROM event_export_files WHERE export_id = $1) WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await?;
    wait_until("the export to write the windows again", Duration::from_secs(60), || async {
        match call("GET", &api(&format!("/event-exports/{id}")), Some(&token), None).await {
            Ok((200, e)) => passed(&e, last_sent),
            _ => false,
        }
    })
    .await?;
    let after = files_under(&local_dir, "jsonl");
    assert_eq!(after, local_files, "the same files");
    for (f, text) in &before {
        // (Compared without printing: the files are long.)
        let again = std::fs::read_to_string(f)?;
        if &again != text {
            bail!(
                "{} rewritten with other content:\n{}\n---\n{}",
                f.display(),
                &text[..text.len().min(600)],
                &again[..again.len().min(600)]
            );
        }
    }
    let got = uuids_of(&after)?;
    assert!(got.values().all(|n| *n == 1) && got.len() == sent.len());

    // Paused, nothing moves; deleted, it is gone (its files stay).
    let (status, paused) =
        call("PATCH", &api(&format!("/event-exports/{id}")), Some(&token), Some(&json!({"paused": true}))).await?;
    assert_eq!((status, paused["paused"].as_bool()), (200, Some(true)), "{paused}");
    let (status, _) = call("DELETE", &api(&format!("/event-exports/{id}")), Some(&token), None).await?;
    assert_eq!(status, 204);
    let (status, _) = call("GET", &api(&format!("/event-exports/{id}")), Some(&token), None).await?;
    assert_eq!(status, 404);
    assert_eq!(files_under(&local_dir, "jsonl").len(), local_files.len());
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
