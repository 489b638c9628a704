//! The migration runner against the real ClickHouse engine: idempotent, recorded, refusing an
//! applied migration that changed, and the retention TTL applied and removed.

use cairn_common::clickhouse::{apply_event_ttl, client, migrate, migrate_with, Migration, MigrationError, MIGRATIONS};
use cairn_common::config::ClickHouseConfig;
use cairn_e2e::{unique, TestClickHouse};

fn config(ch: &TestClickHouse, database: &str) -> ClickHouseConfig {
    ClickHouseConfig {
        url: ch.url(),
        database: database.to_string(),
        user: "default".into(),
        password: None,
        lz4: false,
        event_ttl_days: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_are_recorded() {
    let ch = TestClickHouse::shared().unwrap();
    let database = unique("schema");
    let cfg = config(&ch, &database);

    let first = migrate(&cfg).await.unwrap();
    assert_eq!(first.version, MIGRATIONS.len() as u32);
    assert_eq!(first.applied_now, (1..=MIGRATIONS.len() as u32).collect::<Vec<_>>());
    let second = migrate(&cfg).await.unwrap();
    assert!(second.applied_now.is_empty(), "a second run applies nothing");
    assert_eq!(second.version, first.version);

    let db = ch.db(&database);
    assert_eq!(db.scalar("SELECT count() FROM cairn_schema_migrations FINAL").await.unwrap(), MIGRATIONS.len() as u64);
    let columns = db.rows("SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'events' ORDER BY position").await.unwrap();
    let names: Vec<&str> = columns.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["uuid", "project_id", "event", "distinct_id", "properties", "timestamp", "received_at", "ingested_at"]);
    assert_eq!(columns[5]["type"], "DateTime64(3, 'UTC')");
    let engine = db.rows("SELECT engine, partition_key, sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'events'").await.unwrap();
    assert_eq!(engine[0]["engine"], "ReplacingMergeTree");
    assert_eq!(engine[0]["partition_key"], "toYYYYMM(timestamp)");
    assert!(engine[0]["sorting_key"].as_str().unwrap().starts_with("project_id, event, toDate(timestamp)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_applied_migration_is_refused() {
    let ch = TestClickHouse::shared().unwrap();
    let database = unique("schema");
    let cfg = config(&ch, &database);
    migrate(&cfg).await.unwrap();
    let changed = [Migration { version: 1, name: "events", sql: "CREATE TABLE IF NOT EXISTS other (x UInt8) ENGINE = Memory" }];
    match migrate_with(&cfg, &changed).await {
        Err(MigrationError::ChecksumMismatch { version: 1, .. }) => {}
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    let newer = [MIGRATIONS[0], Migration { version: 2, name: "later", sql: "CREATE TABLE IF NOT EXISTS later (x UInt8) ENGINE = Memory" }];
    migrate_with(&cfg, &newer).await.unwrap();
    match migrate(&cfg).await {
        Err(MigrationError::DatabaseNewer { version: 2, .. }) => {}
        other => panic!("an older binary must refuse a newer schema, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_ttl_follows_configuration() {
    let ch = TestClickHouse::shared().unwrap();
    let database = unique("schema");
    let cfg = config(&ch, &database);
    migrate(&cfg).await.unwrap();
    let c = client(&cfg);
    let db = ch.db(&database);
    let create = || async { db.rows("SELECT create_table_query AS q FROM system.tables WHERE database = currentDatabase() AND name = 'events'").await.unwrap()[0]["q"].as_str().unwrap().to_string() };
    assert!(!create().await.contains(" TTL "));
    apply_event_ttl(&c, 30).await.unwrap();
    assert!(create().await.contains("toIntervalDay(30)"), "{}", create().await);
    apply_event_ttl(&c, 30).await.unwrap();
    apply_event_ttl(&c, 90).await.unwrap();
    assert!(create().await.contains("toIntervalDay(90)"));
    apply_event_ttl(&c, 0).await.unwrap();
    assert!(!create().await.contains(" TTL "));
    apply_event_ttl(&c, 0).await.unwrap();
}
