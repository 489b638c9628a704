//! The migration runner against the real ClickHouse engine: idempotent, recorded, refusing an
//! applied migration that changed, and the retention TTL applied and removed.

use cairn_common::clickhouse::{
    apply_event_ttl, client, migrate, migrate_with, Migration, MigrationError, Topology, MIGRATIONS,
};
use cairn_e2e::{unique, TestClickHouse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_are_recorded() {
    let ch = TestClickHouse::shared().unwrap();
    let database = unique("schema");
    let cfg = ch.config(&database);

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
    assert_eq!(
        names,
        ["uuid", "project_id", "event", "distinct_id", "properties", "timestamp", "received_at", "ingested_at"]
    );
    assert_eq!(columns[5]["type"], "DateTime64(3, 'UTC')");
    let engine = db.rows("SELECT engine, partition_key, sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'events'").await.unwrap();
    assert_eq!(engine[0]["engine"], "ReplacingMergeTree");
    assert_eq!(engine[0]["partition_key"], "toYYYYMM(timestamp)");
    assert!(engine[0]["sorting_key"].as_str().unwrap().starts_with("project_id, event, toDate(timestamp)"));
    // The event time of both tables is stored with T64 (0003), and reads back to the millisecond.
    let codecs = db
        .rows("SELECT table, compression_codec FROM system.columns WHERE database = currentDatabase() AND name = 'timestamp' AND table IN ('events', 'events_by_person') ORDER BY table")
        .await
        .unwrap();
    assert_eq!(codecs.len(), 2, "{codecs:?}");
    for c in &codecs {
        assert_eq!(c["compression_codec"], "CODEC(T64, LZ4)", "{c}");
    }
    db.rows("INSERT INTO events (uuid, project_id, event, distinct_id, properties, timestamp, received_at) VALUES (generateUUIDv4(), 1, 'e', 'd', '{}', '2026-11-27 10:11:12.345', now64(3))")
        .await
        .unwrap();
    let stored = db.rows("SELECT toString(timestamp) AS t FROM events_by_person").await.unwrap();
    assert_eq!(stored[0]["t"], "2026-11-27 10:11:12.345");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_applied_migration_is_refused() {
    let ch = TestClickHouse::shared().unwrap();
    let database = unique("schema");
    let cfg = ch.config(&database);
    migrate(&cfg).await.unwrap();
    let mut changed = MIGRATIONS.to_vec();
    changed[0] =
        Migration { version: 1, name: "events", sql: "CREATE TABLE IF NOT EXISTS other (x UInt8) ENGINE = Memory" };
    match migrate_with(&cfg, &changed).await {
        Err(MigrationError::ChecksumMismatch { version: 1, .. }) => {}
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    let later = MIGRATIONS.len() as u32 + 1;
    let mut newer = MIGRATIONS.to_vec();
    newer.push(Migration {
        version: later,
        name: "later",
        sql: "CREATE TABLE IF NOT EXISTS later (x UInt8) ENGINE = Memory",
    });
    migrate_with(&cfg, &newer).await.unwrap();
    match migrate(&cfg).await {
        Err(MigrationError::DatabaseNewer { version, .. }) if version == later => {}
        other => panic!("an older binary must refuse a newer schema, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_ttl_follows_configuration() {
    let ch = TestClickHouse::shared().unwrap();
    let database = unique("schema");
    let cfg = ch.config(&database);
    migrate(&cfg).await.unwrap();
    let c = client(&cfg);
    let db = ch.db(&database);
    let create = |table: &'static str| {
        let db = db.clone();
        async move {
            let sql = format!("SELECT create_table_query AS q FROM system.tables WHERE database = currentDatabase() AND name = '{table}'");
            db.rows(&sql).await.unwrap()[0]["q"].as_str().unwrap().to_string()
        }
    };
    for table in ["events", "events_by_person", "event_changes"] {
        assert!(!create(table).await.contains(" TTL "));
    }
    apply_event_ttl(&c, &Topology::Single, 30).await.unwrap();
    for table in ["events", "events_by_person", "event_changes"] {
        assert!(create(table).await.contains("toIntervalDay(30)"), "{}", create(table).await);
    }
    assert!(create("event_changes").await.contains("TTL toDateTime(retain_until)"), "a version outlives its capture");
    apply_event_ttl(&c, &Topology::Single, 30).await.unwrap();
    apply_event_ttl(&c, &Topology::Single, 90).await.unwrap();
    for table in ["events", "events_by_person", "event_changes"] {
        assert!(create(table).await.contains("toIntervalDay(90)"));
    }
    apply_event_ttl(&c, &Topology::Single, 0).await.unwrap();
    for table in ["events", "events_by_person", "event_changes"] {
        assert!(!create(table).await.contains(" TTL "));
    }
    apply_event_ttl(&c, &Topology::Single, 0).await.unwrap();
}

/// `events_by_person` holds every event of `events`: those stored before its migration (copied
/// once) and every later insert (the materialized view), with the same duplicates collapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_by_person_mirrors_events() {
    let ch = TestClickHouse::shared().unwrap();
    let database = unique("schema");
    let cfg = ch.config(&database);
    migrate_with(&cfg, &MIGRATIONS[..1]).await.unwrap();
    let db = ch.db(&database);
    let row = |uuid: &str, user: &str, ts: &str| {
        serde_json::json!({"uuid": uuid, "project_id": 7, "event": "pageview", "distinct_id": user,
                           "properties": "{}", "timestamp": ts, "received_at": ts})
    };
    let before = [
        row("0190f1a2-0000-7000-8000-000000000001", "u1", "2026-11-01 10:00:00.001"),
        row("0190f1a2-0000-7000-8000-000000000002", "u2", "2026-11-01 10:00:00.002"),
    ];
    db.insert_json("events", &before).await.unwrap();
    migrate(&cfg).await.unwrap();
    // After the migration: a new event, and the first one delivered a second time.
    let after = [row("0190f1a2-0000-7000-8000-000000000003", "u1", "2026-11-02 10:00:00.003"), before[0].clone()];
    db.insert_json("events", &after).await.unwrap();

    let mirror = db
        .rows("SELECT toString(uuid) AS uuid, person, toString(timestamp) AS ts FROM events_by_person FINAL ORDER BY uuid")
        .await
        .unwrap();
    let events = db
        .rows("SELECT toString(uuid) AS uuid, toString(cityHash64(distinct_id)) AS person, toString(timestamp) AS ts FROM events FINAL ORDER BY uuid")
        .await
        .unwrap();
    assert_eq!(mirror.len(), 3, "{mirror:?}");
    assert_eq!(events.len(), 3, "{events:?}");
    for (m, e) in mirror.iter().zip(&events) {
        assert_eq!(m["uuid"], e["uuid"]);
        assert_eq!(m["person"].to_string().trim_matches('"'), e["person"].as_str().unwrap());
        assert_eq!(m["ts"], e["ts"]);
    }
}

/// The local ClickHouse stand-in (stack/clickhouse/chserver.py over chdb) must refuse what a real
/// server refuses: chdb's streaming insert reports a violated constraint as success and stores
/// nothing, so an insert through the stand-in that silently lost rows would hide data loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_refuses_rows_that_a_server_refuses() {
    let ch = TestClickHouse::shared().unwrap();
    let database = unique("refuse");
    let db = ch.db(&database);
    ch.db("default").rows(&format!("CREATE DATABASE {database}")).await.unwrap();
    db.rows("CREATE TABLE t (a String, CONSTRAINT c CHECK a != 'bad') ENGINE = MergeTree ORDER BY a").await.unwrap();
    let err =
        db.insert_json("t", &[serde_json::json!({"a": "good"}), serde_json::json!({"a": "bad"})]).await.unwrap_err();
    assert!(err.to_string().contains("469") && err.to_string().contains("VIOLATED_CONSTRAINT"), "{err}");
    db.insert_json("t", &[serde_json::json!({"a": "good"})]).await.unwrap();
    assert_eq!(db.scalar("SELECT count() FROM t").await.unwrap(), 1);
}

/// Cluster mode's schema (`CAIRN_CLICKHOUSE_CLUSTER`), as far as one engine can take it: every
/// statement every migration renders for a cluster is parsed by ClickHouse's own parser
/// (`EXPLAIN AST`, and `formatQuery` prints it back with its `ON CLUSTER` and engines); the local
/// tables and views are created for real — Replicated engines with their Keeper paths, under the
/// engine's in-process Keeper and the `{shard}`/`{replica}` macros — twice (idempotent). Not run
/// here: `ON CLUSTER` itself (the engine has no distributed DDL), the Distributed tables (no native
/// TCP port), and any write to a Replicated table (the engine does not run the replication
/// threads, so its replicas stay read-only: the `ALTER`s and inserts are parsed, not executed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_schema_parses_and_its_replicated_tables_are_made_on_one_node() {
    let ch = TestClickHouse::shared().unwrap();
    let database = unique("cluster");
    let db = ch.db(&database);
    let cluster = Topology::Cluster("cairn".into());
    let statements: Vec<String> =
        MIGRATIONS.iter().flat_map(|m| cairn_common::clickhouse::rendered_statements(&cluster, m).unwrap()).collect();

    let server = ch.db("default");
    for st in &statements {
        let ast = server.rows(&format!("EXPLAIN AST {st}")).await.unwrap_or_else(|e| panic!("{e}\n{st}"));
        assert!(!ast.is_empty(), "{st}");
        let printed = server
            .rows(&format!("SELECT formatQuery('{}') AS q", st.replace('\\', "\\\\").replace('\'', "\\'")))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{st}"));
        let printed = printed[0]["q"].as_str().unwrap().to_string();
        if !st.starts_with("INSERT") {
            assert!(printed.contains("ON CLUSTER cairn"), "{printed}");
        }
    }
    let creates = statements.iter().filter(|s| s.starts_with("CREATE TABLE")).count();
    let distributed = statements.iter().filter(|s| s.contains("ENGINE = Distributed('cairn'")).count();
    assert_eq!(creates, 2 * distributed, "each table: a Replicated local table and a Distributed table over it");
    assert_eq!(distributed, cairn_common::clickhouse::SHARDING_KEYS.len());

    // The local tables and views, on this one node (without ON CLUSTER), twice.
    server.rows(&format!("CREATE DATABASE {database}")).await.unwrap();
    let local: Vec<String> = statements
        .iter()
        .filter(|s| s.starts_with("CREATE") && !s.contains("ENGINE = Distributed"))
        .map(|s| s.replace(" ON CLUSTER 'cairn'", ""))
        .collect();
    for round in 0..2 {
        for st in &local {
            db.rows(st).await.unwrap_or_else(|e| panic!("round {round}: {e}\n{st}"));
        }
    }
    let replicas = db
        .rows(
            "SELECT table, zookeeper_path, replica_name FROM system.replicas WHERE database = currentDatabase() ORDER BY table",
        )
        .await
        .unwrap();
    let tables: Vec<&str> = replicas.iter().map(|r| r["table"].as_str().unwrap()).collect();
    assert_eq!(
        tables,
        [
            "distinct_id_activity_local",
            "event_changes_local",
            "events_by_person_local",
            "events_local",
            "events_received_local",
            "person_overrides_local",
            "person_property_ops_local"
        ]
    );
    for r in &replicas {
        assert_eq!(r["zookeeper_path"], format!("/clickhouse/tables/01/{database}/{}", r["table"].as_str().unwrap()));
        assert_eq!(r["replica_name"], "replica-1");
    }
    let settings = db
        .rows(
            "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'events_local'",
        )
        .await
        .unwrap();
    assert!(settings[0]["create_table_query"].as_str().unwrap().contains("replicated_deduplication_window = 10000"));
    let views = db
        .scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND engine = 'MaterializedView'")
        .await
        .unwrap();
    assert_eq!(views, 4, "the views, on the local tables");
    server.rows(&format!("DROP DATABASE {database} SYNC")).await.unwrap();
}
