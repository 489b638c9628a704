//! The ClickHouse schema migration runner.
//!
//! Migrations are the files `schemas/clickhouse/NNNN_name.sql`, embedded in the binary at build
//! time and applied in order. Each applied migration is recorded (version, name, checksum) in
//! `cairn_schema_migrations`; a run applies only the missing ones, so running it again is a no-op,
//! and an applied migration whose file has since changed is refused rather than silently skipped.
//! Every statement is written to be idempotent (`IF NOT EXISTS`), so two runners starting at once
//! (two consumer replicas, or the operator and a consumer) are safe.

use clickhouse::Client;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::cluster::Topology;
use super::{server_client, EVENTS_BY_PERSON_TABLE, EVENTS_RECEIVED_TABLE, EVENTS_TABLE, EVENT_CHANGES_TABLE};
use crate::config::ClickHouseConfig;

/// One schema migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A unit test keeps this list equal to the files in
/// `schemas/clickhouse/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "events", sql: include_str!("../../../../schemas/clickhouse/0001_events.sql") },
    Migration {
        version: 2,
        name: "events_by_person",
        sql: include_str!("../../../../schemas/clickhouse/0002_events_by_person.sql"),
    },
    Migration {
        version: 3,
        name: "timestamp_codec",
        sql: include_str!("../../../../schemas/clickhouse/0003_timestamp_codec.sql"),
    },
    Migration {
        version: 4,
        name: "person_overrides",
        sql: include_str!("../../../../schemas/clickhouse/0004_person_overrides.sql"),
    },
    Migration {
        version: 5,
        name: "person_property_ops",
        sql: include_str!("../../../../schemas/clickhouse/0005_person_property_ops.sql"),
    },
    Migration {
        version: 6,
        name: "distinct_id_activity",
        sql: include_str!("../../../../schemas/clickhouse/0006_distinct_id_activity.sql"),
    },
    Migration {
        version: 7,
        name: "event_changes",
        sql: include_str!("../../../../schemas/clickhouse/0007_event_changes.sql"),
    },
    Migration {
        version: 8,
        name: "events_received",
        sql: include_str!("../../../../schemas/clickhouse/0008_events_received.sql"),
    },
];

const MIGRATIONS_TABLE: &str = "cairn_schema_migrations";
/// Backfills (statements that copy data already stored, `INSERT … SELECT`) that a run deferred:
/// see [`Backfills::Deferred`].
pub const BACKFILLS_TABLE: &str = "cairn_backfills";

/// What a migration run does with its backfills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backfills {
    /// Run them as part of the migration (a service migrating at start: the local stack).
    Inline,
    /// Record them in `cairn_backfills` and return: the schema is in place at once, the copy is
    /// run apart (the operator: a copy of a large table must never run inside a reconcile).
    Deferred,
}

/// A backfill statement: an `INSERT … SELECT` (it copies what is stored).
pub fn is_backfill(statement: &str) -> bool {
    let code: String = statement
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("--") && !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let upper = code.to_ascii_uppercase();
    upper.starts_with("INSERT INTO") && upper.contains(" SELECT ")
}

/// A deferred backfill, as `cairn_backfills` records it.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize, serde::Serialize)]
pub struct Backfill {
    pub version: u32,
    pub idx: u32,
    pub name: String,
    pub statement: String,
    /// Deterministic per database and statement: ClickHouse refuses a second query with the same
    /// id while one runs, so two runners never copy at once.
    pub query_id: String,
    /// `pending` or `done`.
    pub state: String,
}

/// Why migrating failed.
#[derive(Debug, Error)]
pub enum MigrationError {
    #[error("ClickHouse refused migration {version} ({name}): {source}")]
    Statement {
        version: u32,
        name: &'static str,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("ClickHouse error while {doing}: {source}")]
    ClickHouse {
        doing: &'static str,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error(
        "migration {version} ({name}) was applied with checksum {applied} but the file now has {current}; \
         applied migrations must never change, add a new one instead"
    )]
    ChecksumMismatch { version: u32, name: String, applied: String, current: String },
    #[error("the database has migration {version}, newer than this binary knows ({known}); upgrade the binary")]
    DatabaseNewer { version: u32, known: u32 },
    #[error("migration {version} ({name}) cannot be made on a cluster: {source}")]
    Cluster {
        version: u32,
        name: &'static str,
        #[source]
        source: super::cluster::ClusterDdlError,
    },
}

/// The schema version after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Highest applied migration version.
    pub version: u32,
    /// Versions applied by this run.
    pub applied_now: Vec<u32>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct AppliedRow {
    version: u32,
    name: String,
    checksum: String,
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Creates the database if needed and applies every missing migration in order.
pub async fn migrate(cfg: &ClickHouseConfig) -> Result<SchemaStatus, MigrationError> {
    migrate_with(cfg, MIGRATIONS).await
}

/// [`migrate`], recording backfills instead of running them (see [`Backfills::Deferred`]).
pub async fn migrate_deferring_backfills(cfg: &ClickHouseConfig) -> Result<SchemaStatus, MigrationError> {
    migrate_with_backfills(cfg, MIGRATIONS, Backfills::Deferred).await
}

pub async fn migrate_with(cfg: &ClickHouseConfig, migrations: &[Migration]) -> Result<SchemaStatus, MigrationError> {
    migrate_with_backfills(cfg, migrations, Backfills::Inline).await
}

pub async fn migrate_with_backfills(
    cfg: &ClickHouseConfig,
    migrations: &[Migration],
    backfills: Backfills,
) -> Result<SchemaStatus, MigrationError> {
    let topology = cfg.topology();
    let on_cluster = topology.on_cluster();
    let server = server_client(cfg);
    server
        .query(&format!("CREATE DATABASE IF NOT EXISTS {}{on_cluster}", quote_identifier(&cfg.database)))
        .execute()
        .await
        .map_err(|source| MigrationError::ClickHouse { doing: "creating the database", source })?;
    let db = server.with_database(&cfg.database);

    db.query(&format!(
        "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}{on_cluster} (\
           version UInt32, name String, checksum String, \
           applied_at DateTime64(3, 'UTC') DEFAULT now64(3)\
         ) ENGINE = {} ORDER BY version",
        bookkeeping_engine(&topology, MIGRATIONS_TABLE, "")
    ))
    .execute()
    .await
    .map_err(|source| MigrationError::ClickHouse { doing: "creating the migrations table", source })?;

    let applied: Vec<AppliedRow> = db
        .query(&format!("SELECT version, name, checksum FROM {MIGRATIONS_TABLE} FINAL ORDER BY version"))
        .fetch_all()
        .await
        .map_err(|source| MigrationError::ClickHouse { doing: "reading applied migrations", source })?;

    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newest) = applied.iter().map(|a| a.version).max() {
        if newest > known {
            return Err(MigrationError::DatabaseNewer { version: newest, known });
        }
    }

    let mut applied_now = Vec::new();
    for m in migrations {
        let sum = checksum(m.sql);
        if let Some(a) = applied.iter().find(|a| a.version == m.version) {
            if a.checksum != sum {
                return Err(MigrationError::ChecksumMismatch {
                    version: m.version,
                    name: a.name.clone(),
                    applied: a.checksum.clone(),
                    current: sum,
                });
            }
            continue;
        }
        for (idx, statement) in rendered_statements(&topology, m)?.into_iter().enumerate() {
            if backfills == Backfills::Deferred && is_backfill(&statement) {
                record_backfill(&db, cfg, m, idx as u32, &statement).await?;
                continue;
            }
            db.query(&statement).execute().await.map_err(|source| MigrationError::Statement {
                version: m.version,
                name: m.name,
                source,
            })?;
        }
        db.query(&format!("INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum) VALUES (?, ?, ?)"))
            .bind(m.version)
            .bind(m.name)
            .bind(sum.as_str())
            .execute()
            .await
            .map_err(|source| MigrationError::ClickHouse { doing: "recording a migration", source })?;
        tracing::info!(version = m.version, name = m.name, database = %cfg.database, "applied ClickHouse migration");
        applied_now.push(m.version);
    }
    Ok(SchemaStatus { version: known, applied_now })
}

/// A migration's statements as `topology` runs them, in order.
pub fn rendered_statements(topology: &Topology, m: &Migration) -> Result<Vec<String>, MigrationError> {
    let mut out = Vec::new();
    for statement in split_statements(m.sql) {
        let rendered = topology.render(&statement).map_err(|source| MigrationError::Cluster {
            version: m.version,
            name: m.name,
            source,
        })?;
        out.extend(rendered);
    }
    Ok(out)
}

/// The engine of a runner's own table: on a cluster, one replicated table across every node
/// (its Keeper path has no `{shard}`), so any node a runner reaches knows what was applied.
pub fn bookkeeping_engine(topology: &Topology, table: &str, version_column: &str) -> String {
    match topology {
        Topology::Single if version_column.is_empty() => "ReplacingMergeTree".into(),
        Topology::Single => format!("ReplacingMergeTree({version_column})"),
        Topology::Cluster(_) => {
            let extra = if version_column.is_empty() { String::new() } else { format!(", {version_column}") };
            format!(
                "ReplicatedReplacingMergeTree('/clickhouse/tables/cairn/{{database}}/{table}', '{{replica}}'{extra})"
            )
        }
    }
}

async fn ensure_backfills_table(db: &Client, topology: &Topology) -> Result<(), MigrationError> {
    db.query(&format!(
        "CREATE TABLE IF NOT EXISTS {BACKFILLS_TABLE}{} (\
           version UInt32, idx UInt32, name String, statement String, query_id String, \
           state LowCardinality(String), updated_at DateTime64(3, 'UTC') DEFAULT now64(3)\
         ) ENGINE = {} ORDER BY (version, idx)",
        topology.on_cluster(),
        bookkeeping_engine(topology, BACKFILLS_TABLE, "updated_at")
    ))
    .execute()
    .await
    .map_err(|source| MigrationError::ClickHouse { doing: "creating the backfills table", source })
}

async fn record_backfill(
    db: &Client,
    cfg: &ClickHouseConfig,
    m: &Migration,
    idx: u32,
    statement: &str,
) -> Result<(), MigrationError> {
    ensure_backfills_table(db, &cfg.topology()).await?;
    let b = Backfill {
        version: m.version,
        idx,
        name: m.name.to_string(),
        statement: statement.to_string(),
        query_id: format!("cairn-backfill-{}-{}-{}", cfg.database, m.version, idx),
        state: "pending".into(),
    };
    write_backfill(db, &b).await?;
    tracing::info!(version = m.version, name = m.name, database = %cfg.database, "backfill deferred");
    Ok(())
}

async fn write_backfill(db: &Client, b: &Backfill) -> Result<(), MigrationError> {
    db.query(&format!(
        "INSERT INTO {BACKFILLS_TABLE} (version, idx, name, statement, query_id, state) VALUES (?, ?, ?, ?, ?, ?)"
    ))
    .bind(b.version)
    .bind(b.idx)
    .bind(b.name.as_str())
    .bind(b.statement.as_str())
    .bind(b.query_id.as_str())
    .bind(b.state.as_str())
    .execute()
    .await
    .map_err(|source| MigrationError::ClickHouse { doing: "recording a backfill", source })
}

/// The backfills not done yet, in order (none when nothing was ever deferred).
pub async fn pending_backfills(client: &Client) -> Result<Vec<Backfill>, MigrationError> {
    let exists: u64 = client
        .query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(BACKFILLS_TABLE)
        .fetch_one()
        .await
        .map_err(|source| MigrationError::ClickHouse { doing: "looking for backfills", source })?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    client
        .query(&format!(
            "SELECT version, idx, name, statement, query_id, state FROM {BACKFILLS_TABLE} FINAL \
             WHERE state != 'done' ORDER BY version, idx"
        ))
        .fetch_all()
        .await
        .map_err(|source| MigrationError::ClickHouse { doing: "reading backfills", source })
}

/// Runs a deferred backfill under its query id (ClickHouse refuses the same id while it runs:
/// `QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING`), then records it done. A copy repeated after a crash
/// is harmless: the target collapses duplicates like any redelivery.
pub async fn run_backfill(client: &Client, b: &Backfill, timeout: std::time::Duration) -> Result<(), MigrationError> {
    let secs = timeout.as_secs().max(1).to_string();
    client
        .clone()
        .with_setting("query_id", b.query_id.as_str())
        .with_setting("max_execution_time", secs)
        .query(&b.statement)
        .execute()
        .await
        .map_err(|source| MigrationError::Statement { version: b.version, name: "backfill", source })?;
    let done = Backfill { state: "done".into(), ..b.clone() };
    write_backfill(client, &done).await?;
    tracing::info!(version = b.version, name = %b.name, "backfill done");
    Ok(())
}

/// Whether a statement with `query_id` runs now, and how far it is: (rows read, rows to read).
pub async fn backfill_progress(client: &Client, query_id: &str) -> Result<Option<(u64, u64)>, MigrationError> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Progress {
        read_rows: u64,
        total_rows_approx: u64,
    }
    let row: Option<Progress> = client
        .query("SELECT read_rows, total_rows_approx FROM system.processes WHERE query_id = ? LIMIT 1")
        .bind(query_id)
        .fetch_optional()
        .await
        .map_err(|source| MigrationError::ClickHouse { doing: "reading a backfill's progress", source })?;
    Ok(row.map(|p| (p.read_rows, p.total_rows_approx)))
}

/// Sets the events' retention, in `events`, in its copy `events_by_person` and in the changed
/// versions `event_changes`: `days` > 0 keeps events that many days after their timestamp; 0
/// removes the TTL. Idempotent.
pub async fn apply_event_ttl(client: &Client, topology: &Topology, days: u32) -> Result<(), MigrationError> {
    // Changed versions expire by the latest time their event ever had (`retain_until`), so a
    // version (a deletion above all) never expires before the captured row it replaces.
    for (table, column) in [
        (EVENTS_TABLE, "timestamp"),
        (EVENTS_BY_PERSON_TABLE, "timestamp"),
        (EVENT_CHANGES_TABLE, "retain_until"),
        (EVENTS_RECEIVED_TABLE, "received_at"),
    ] {
        apply_table_ttl(client, topology, table, column, days).await?;
    }
    tracing::info!(days, "set events retention");
    Ok(())
}

async fn apply_table_ttl(
    client: &Client,
    topology: &Topology,
    table: &str,
    column: &str,
    days: u32,
) -> Result<(), MigrationError> {
    // On a cluster the TTL is the local tables' (where the rows are), set on every node.
    let (table, on_cluster) = (topology.storage_table(table), topology.on_cluster());
    let table = table.as_str();
    let create: String = client
        .query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(table)
        .fetch_one()
        .await
        .map_err(|source| MigrationError::ClickHouse { doing: "reading the events table definition", source })?;
    let wanted = format!("toIntervalDay({days})");
    let has_ttl = create.contains(" TTL ");
    let sql = if days == 0 {
        if !has_ttl {
            return Ok(());
        }
        format!("ALTER TABLE {table}{on_cluster} REMOVE TTL")
    } else {
        if has_ttl && create.contains(&wanted) {
            return Ok(());
        }
        format!("ALTER TABLE {table}{on_cluster} MODIFY TTL toDateTime({column}) + toIntervalDay({days})")
    };
    client
        .query(&sql)
        .execute()
        .await
        .map_err(|source| MigrationError::ClickHouse { doing: "setting the events TTL", source })?;
    Ok(())
}

/// Quotes an identifier for ClickHouse with backticks.
pub fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// Splits a file of SQL into statements at `;`, ignoring semicolons inside quotes and comments,
/// and dropping statements that are only comments.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut has_code = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                // A line comment: skip to the end of the line.
                for n in chars.by_ref() {
                    if n == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            '\'' | '"' | '`' => {
                has_code = true;
                current.push(c);
                while let Some(n) = chars.next() {
                    current.push(n);
                    if n == '\\' {
                        if let Some(escaped) = chars.next() {
                            current.push(escaped);
                        }
                    } else if n == c {
                        break;
                    }
                }
            }
            ';' => {
                if has_code {
                    out.push(current.trim().to_string());
                }
                current.clear();
                has_code = false;
            }
            _ => {
                if !c.is_whitespace() {
                    has_code = true;
                }
                current.push(c);
            }
        }
    }
    if has_code {
        out.push(current.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every migration as cluster mode runs it, for the cluster `cairn`: the golden file
    /// `schemas/clickhouse/cluster/cairn.sql` (run `make docs` after changing a migration or the
    /// rendering; the e2e test clickhouse_schema.rs parses each statement with the engine).
    pub fn cluster_golden() -> String {
        let topology = Topology::Cluster("cairn".into());
        let mut out = String::from(
            "-- Generated from schemas/clickhouse/*.sql by workloads/common/src/clickhouse/cluster.rs\n\
             -- (`make docs`): what the migrations run on a cluster named `cairn`, statement by statement.\n",
        );
        for m in MIGRATIONS {
            out.push_str(&format!("\n-- {:04}_{}\n", m.version, m.name));
            for statement in rendered_statements(&topology, m).unwrap() {
                out.push_str(&statement);
                out.push_str(";\n\n");
            }
        }
        out
    }

    #[test]
    fn checked_in_cluster_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/clickhouse/cluster/cairn.sql");
        let generated = cluster_golden();
        if std::env::var_os("CAIRN_WRITE_DOCS").is_some() {
            std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
            std::fs::write(path, &generated).unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(on_disk == generated, "schemas/clickhouse/cluster/cairn.sql is stale: run `make docs`");
        // Split back, it is the statements the runner sends.
        let statements: Vec<String> = split_statements(&generated);
        let expected: usize =
            MIGRATIONS.iter().map(|m| rendered_statements(&Topology::Cluster("cairn".into()), m).unwrap().len()).sum();
        assert_eq!(statements.len(), expected);
    }

    #[test]
    fn migration_list_matches_the_schema_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/clickhouse");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|m| format!("{:04}_{}.sql", m.version, m.name)).collect();
        assert_eq!(files, listed, "MIGRATIONS must list every file in schemas/clickhouse, in order");
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "versions are consecutive from 1");
            let on_disk = std::fs::read_to_string(format!("{dir}/{:04}_{}.sql", m.version, m.name)).unwrap();
            assert_eq!(on_disk, m.sql);
            assert!(!split_statements(m.sql).is_empty());
        }
    }

    #[test]
    fn splits_statements_but_not_quoted_semicolons_or_comments() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE a (x String DEFAULT ';');\n\n-- only a comment;\nSELECT `we;ird`, 'it''s' ;  \n";
        let got = split_statements(sql);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("CREATE TABLE a (x String DEFAULT ';')"));
        assert!(got[1].starts_with("SELECT `we;ird`"));
    }

    #[test]
    fn backfills_are_the_copies_of_stored_data() {
        let statements = split_statements(MIGRATIONS[1].sql);
        let backfills: Vec<bool> = statements.iter().map(|s| is_backfill(s)).collect();
        assert_eq!(backfills, [false, false, true], "events_by_person: table, view, copy");
        assert!(!is_backfill("CREATE MATERIALIZED VIEW v TO t AS SELECT a FROM e"));
        assert!(!is_backfill("INSERT INTO t VALUES (1)"));
    }

    #[test]
    fn checksums_differ_when_sql_does() {
        assert_ne!(checksum("SELECT 1"), checksum("SELECT 2"));
        assert_eq!(checksum("SELECT 1").len(), 64);
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_identifier("cairn"), "`cairn`");
        assert_eq!(quote_identifier("a`b"), "`a\\`b`");
    }
}
