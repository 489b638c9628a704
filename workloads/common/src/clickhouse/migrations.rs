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

use super::{server_client, EVENTS_BY_PERSON_TABLE, EVENTS_TABLE};
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
];

const MIGRATIONS_TABLE: &str = "cairn_schema_migrations";

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

pub async fn migrate_with(cfg: &ClickHouseConfig, migrations: &[Migration]) -> Result<SchemaStatus, MigrationError> {
    let server = server_client(cfg);
    server
        .query(&format!("CREATE DATABASE IF NOT EXISTS {}", quote_identifier(&cfg.database)))
        .execute()
        .await
        .map_err(|source| MigrationError::ClickHouse { doing: "creating the database", source })?;
    let db = server.with_database(&cfg.database);

    db.query(&format!(
        "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (\
           version UInt32, name String, checksum String, \
           applied_at DateTime64(3, 'UTC') DEFAULT now64(3)\
         ) ENGINE = ReplacingMergeTree ORDER BY version"
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
        for statement in split_statements(m.sql) {
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

/// Sets the events' retention, in `events` and in its copy `events_by_person`: `days` > 0 keeps
/// events that many days after their timestamp; 0 removes the TTL. Idempotent.
pub async fn apply_event_ttl(client: &Client, days: u32) -> Result<(), MigrationError> {
    for table in [EVENTS_TABLE, EVENTS_BY_PERSON_TABLE] {
        apply_table_ttl(client, table, days).await?;
    }
    tracing::info!(days, "set events retention");
    Ok(())
}

async fn apply_table_ttl(client: &Client, table: &str, days: u32) -> Result<(), MigrationError> {
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
        format!("ALTER TABLE {table} REMOVE TTL")
    } else {
        if has_ttl && create.contains(&wanted) {
            return Ok(());
        }
        format!("ALTER TABLE {table} MODIFY TTL toDateTime(timestamp) + toIntervalDay({days})")
    };
    client
        .query(&sql)
        .execute()
        .await
        .map_err(|source| MigrationError::ClickHouse { doing: "setting the events TTL", source })?;
    Ok(())
}

/// Quotes an identifier for ClickHouse with backticks.
fn quote_identifier(name: &str) -> String {
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
