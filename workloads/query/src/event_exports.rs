//! Scheduled exports of new events to files: a project's events, window after window of their
//! `received_at`, each window one file (JSON lines or CSV) in a local directory or an
//! S3-compatible bucket — resumable, and each event in exactly one file.
//!
//! How "exactly once" holds (`schemas/postgres/0012_event_exports.sql` keeps the state):
//! - Windows are fixed: `[k·interval, (k+1)·interval)` of `received_at`, the time capture received
//!   the event — the same on every copy of it (a redelivered Kafka record is the same record).
//!   A file holds its window's events, each uuid once (`LIMIT 1 BY uuid`), so a redelivery that
//!   stored a second copy is still one line.
//! - A window is written only once it is closed: every event received in it is stored. The
//!   consumer commits a record only after inserting it, so when the consumer group has no backlog
//!   every record produced so far is stored, and otherwise every record older than the oldest
//!   one not consumed is. Capture produces an event within its produce timeout of receiving it:
//!   the windows closed are those ending `CAIRN_EXPORT_SETTLE_SECS` before that bound.
//! - The file's name is its window (`…/{start}-{end}.jsonl`), written whole (a local file under a
//!   temporary name, fsynced, renamed; an object PUT whole) before the cursor moves past it, and
//!   only by the replica holding the export's lease, from the cursor it started at. A run that
//!   dies between the two writes the window again: the same name, the same events.
//!
//! Events changed after capture are exported as captured; events of persons being deleted are
//! left out, and events deleted before their window was written are not in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_common::config::KafkaConfig;
use cairn_common::http::ApiError;
use cairn_postgres::api_error as db_error;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::explorer::iso;
use crate::s3::S3Config;
use crate::sql::Sql;

/// Where exports may write, and how they run (`CAIRN_EXPORT_*`).
#[derive(Debug, Clone)]
pub struct ExportsConfig {
    /// `CAIRN_EXPORT_LOCAL_ROOT`: local destinations are directories under it (unset: refused).
    pub local_root: Option<PathBuf>,
    /// `CAIRN_EXPORT_S3_*`: the S3-compatible service bucket destinations are in (unset: refused).
    pub s3: Option<S3Config>,
    /// `CAIRN_EXPORT_POLL_SECS`: how often a replica looks for exports with windows to write.
    pub poll: Duration,
    /// `CAIRN_EXPORT_SETTLE_SECS`: how long after receiving an event capture may still produce it.
    pub settle: Duration,
    /// `CAIRN_CONSUMER_GROUP`: the consumer group whose progress closes windows.
    pub consumer_group: String,
    /// `CAIRN_EXPORT_DEDUP_HOURS`: an event received again within this long after its first
    /// receipt is not exported again.
    pub dedup_horizon: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    fn clickhouse(self) -> &'static str {
        match self {
            Format::Jsonl => "JSONEachRow",
            Format::Csv => "CSVWithNames",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Where the files go. The project and the export are always part of the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Destination {
    /// A directory under `CAIRN_EXPORT_LOCAL_ROOT` (relative; empty: the root itself).
    Local {
        #[serde(default)]
        path: String,
    },
    /// A bucket of the configured S3-compatible service, and a key prefix.
    S3 {
        bucket: String,
        #[serde(default)]
        prefix: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportInput {
    pub name: String,
    pub destination: Destination,
    #[serde(default = "default_format")]
    pub format: Format,
    /// Window length in seconds, 60 to 86,400 (default 3,600).
    #[serde(default)]
    pub interval_seconds: Option<i32>,
    /// The first window's start (RFC 3339; default now, rounded down to the interval): to export
    /// events received before the export was made.
    #[serde(default)]
    pub start_at: Option<String>,
}

fn default_format() -> Format {
    Format::Jsonl
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportPatch {
    pub name: Option<String>,
    pub paused: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventExport {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub destination: Destination,
    pub format: Format,
    pub interval_seconds: i32,
    /// Events received before this are in files (RFC 3339).
    pub exported_until: String,
    pub paused: bool,
    pub files_written: i64,
    pub events_exported: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_run_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportFile {
    pub window_start: String,
    pub window_end: String,
    /// The file's path under the local root, or `s3://bucket/key`.
    pub location: String,
    pub events: i64,
    pub bytes: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub written_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportFiles {
    pub results: Vec<ExportFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventExports {
    pub results: Vec<EventExport>,
}

type ExportRow = (
    i64,
    i64,
    String,
    sqlx::types::Json<Destination>,
    String,
    i32,
    i64,
    bool,
    i64,
    i64,
    Option<OffsetDateTime>,
    Option<String>,
    OffsetDateTime,
);
const COLUMNS: &str = "id, project_id, name, destination, format, interval_seconds, cursor_ms, paused, files_written, \
                       events_exported, last_run_at, last_error, created_at";

fn to_export(r: ExportRow) -> EventExport {
    EventExport {
        id: r.0,
        project_id: r.1,
        name: r.2,
        destination: r.3 .0,
        format: if r.4 == "csv" { Format::Csv } else { Format::Jsonl },
        interval_seconds: r.5,
        exported_until: iso(r.6),
        paused: r.7,
        files_written: r.8,
        events_exported: r.9,
        last_run_at: r.10,
        last_error: r.11,
        created_at: r.12,
    }
}

/// A path or prefix a person gave: relative, segments of letters, digits and `- _ .`, no `..`.
fn check_path(field: &str, path: &str) -> Result<String, ApiError> {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.len() > 200 {
        return Err(ApiError::invalid(field, "at most 200 characters"));
    }
    for segment in trimmed.split('/').filter(|s| !s.is_empty()) {
        if segment == "."
            || segment == ".."
            || !segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ApiError::invalid(
                field,
                "relative, of letters, digits and - _ . between slashes, without . or ..",
            ));
        }
    }
    Ok(trimmed.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/"))
}

fn check_destination(cfg: &ExportsConfig, d: &Destination) -> Result<Destination, ApiError> {
    match d {
        Destination::Local { path } => {
            if cfg.local_root.is_none() {
                return Err(ApiError::invalid(
                    "destination.kind",
                    "local destinations are off on this server (CAIRN_EXPORT_LOCAL_ROOT is not set)",
                ));
            }
            Ok(Destination::Local { path: check_path("destination.path", path)? })
        }
        Destination::S3 { bucket, prefix } => {
            if cfg.s3.is_none() {
                return Err(ApiError::invalid(
                    "destination.kind",
                    "S3 destinations are off on this server (CAIRN_EXPORT_S3_ENDPOINT is not set)",
                ));
            }
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid_bucket {
                return Err(ApiError::invalid(
                    "destination.bucket",
                    "a bucket name: 3 to 63 lowercase letters, digits, - and .",
                ));
            }
            Ok(Destination::S3 { bucket: bucket.clone(), prefix: check_path("destination.prefix", prefix)? })
        }
    }
}

/// The window of `ms` (its start), for windows of `interval_ms`.
pub fn window_start(ms: i64, interval_ms: i64) -> i64 {
    ms.div_euclid(interval_ms) * interval_ms
}

/// The file of a window, relative to the destination: `project-{p}/export-{id}/{start}-{end}.{ext}`
/// with the window's bounds as UTC times (`20261205T100000Z`), so names sort by time.
pub fn file_name(project_id: i64, export_id: i64, start_ms: i64, end_ms: i64, format: Format) -> String {
    let t = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string()).unwrap_or_default()
    };
    format!("project-{project_id}/export-{export_id}/{}-{}.{}", t(start_ms), t(end_ms), format.as_str())
}

pub async fn create(
    pg: &PgPool,
    cfg: &ExportsConfig,
    project_id: u64,
    user_id: i64,
    input: ExportInput,
) -> Result<EventExport, ApiError> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "1 to 200 characters"));
    }
    let destination = check_destination(cfg, &input.destination)?;
    let interval = input.interval_seconds.unwrap_or(3600);
    if !(60..=86_400).contains(&interval) {
        return Err(ApiError::invalid("interval_seconds", "between 60 and 86400"));
    }
    let interval_ms = i64::from(interval) * 1000;
    let start = match input.start_at.as_deref() {
        None => jiff::Timestamp::now(),
        Some(t) => {
            t.parse::<jiff::Timestamp>().map_err(|e| ApiError::invalid("start_at", format!("an RFC 3339 time: {e}")))?
        }
    };
    let cursor = window_start(start.as_millisecond(), interval_ms);
    let row: ExportRow = sqlx::query_as(&format!(
        "INSERT INTO event_exports (project_id, name, destination, format, interval_seconds, cursor_ms, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(project_id as i64)
    .bind(name)
    .bind(sqlx::types::Json(&destination))
    .bind(input.format.as_str())
    .bind(interval)
    .bind(cursor)
    .bind(user_id)
    .fetch_one(pg)
    .await
    .map_err(db_error)?;
    Ok(to_export(row))
}

pub async fn list(pg: &PgPool, project_id: u64) -> Result<EventExports, ApiError> {
    let rows: Vec<ExportRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM event_exports WHERE project_id = $1 ORDER BY id"))
            .bind(project_id as i64)
            .fetch_all(pg)
            .await
            .map_err(db_error)?;
    Ok(EventExports { results: rows.into_iter().map(to_export).collect() })
}

pub async fn get(pg: &PgPool, project_id: u64, id: i64) -> Result<EventExport, ApiError> {
    let row: Option<ExportRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM event_exports WHERE project_id = $1 AND id = $2"))
            .bind(project_id as i64)
            .bind(id)
            .fetch_optional(pg)
            .await
            .map_err(db_error)?;
    row.map(to_export).ok_or_else(|| ApiError::not_found("event export"))
}

pub async fn update(pg: &PgPool, project_id: u64, id: i64, patch: ExportPatch) -> Result<EventExport, ApiError> {
    if let Some(name) = &patch.name {
        if name.trim().is_empty() || name.trim().chars().count() > 200 {
            return Err(ApiError::invalid("name", "1 to 200 characters"));
        }
    }
    let row: Option<ExportRow> = sqlx::query_as(&format!(
        "UPDATE event_exports SET name = COALESCE($3, name), paused = COALESCE($4, paused), updated_at = now() \
         WHERE project_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(project_id as i64)
    .bind(id)
    .bind(patch.name.as_deref().map(str::trim))
    .bind(patch.paused)
    .fetch_optional(pg)
    .await
    .map_err(db_error)?;
    row.map(to_export).ok_or_else(|| ApiError::not_found("event export"))
}

/// Deletes the export (the files it wrote stay where they are).
pub async fn delete(pg: &PgPool, project_id: u64, id: i64) -> Result<(), ApiError> {
    let done = sqlx::query("DELETE FROM event_exports WHERE project_id = $1 AND id = $2")
        .bind(project_id as i64)
        .bind(id)
        .execute(pg)
        .await
        .map_err(db_error)?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("event export"));
    }
    Ok(())
}

pub async fn files(pg: &PgPool, project_id: u64, id: i64) -> Result<ExportFiles, ApiError> {
    get(pg, project_id, id).await?;
    let rows: Vec<(i64, i64, String, i64, i64, OffsetDateTime)> = sqlx::query_as(
        "SELECT window_start_ms, window_end_ms, location, events, bytes, written_at FROM event_export_files \
         WHERE export_id = $1 ORDER BY window_start_ms DESC LIMIT 1000",
    )
    .bind(id)
    .fetch_all(pg)
    .await
    .map_err(db_error)?;
    Ok(ExportFiles {
        results: rows
            .into_iter()
            .map(|r| ExportFile {
                window_start: iso(r.0),
                window_end: iso(r.1),
                location: r.2,
                events: r.3,
                bytes: r.4,
                written_at: r.5,
            })
            .collect(),
    })
}

// ---- the runner ---------------------------------------------------------------------------------

/// How long a replica holds an export while writing it; renewed per window.
const LEASE_SECS: f64 = 600.0;
/// Windows written per turn before the export is put back (others' turn, fresh bound).
const WINDOWS_PER_TURN: usize = 24;

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("ClickHouse: {0}")]
    ClickHouse(String),
    #[error("writing the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    S3(#[from] crate::s3::S3Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("{0}")]
    Config(String),
}

pub struct Runner {
    pub cfg: ExportsConfig,
    pub kafka: KafkaConfig,
    pub pg: PgPool,
    pub engine: Engine,
    pub http: reqwest::Client,
    pub owner: String,
}

/// Up to where windows may be closed now (ms since the epoch): see the module's doc.
async fn closable_until(runner: &Runner) -> Result<i64, String> {
    let now = jiff::Timestamp::now().as_millisecond();
    let lag = cairn_common::kafka::lag::group_lag(
        &runner.kafka,
        &runner.kafka.topic,
        &runner.cfg.consumer_group,
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| format!("cannot read the consumer group's progress: {e}"))?;
    let settle = runner.cfg.settle.as_millis() as i64;
    if lag.records == 0 {
        return Ok(now - settle);
    }
    match lag.oldest_timestamp_ms {
        Some(oldest) => Ok(oldest.min(now) - settle),
        None => Err(format!("{} events wait to be stored and the oldest one's time cannot be read", lag.records)),
    }
}

impl Runner {
    /// Runs until `stop`: every `poll`, takes one export with a closed window, writes its closed
    /// windows, puts it back.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.turn().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "event exports: a turn failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.cfg.poll) => {}
            }
        }
    }

    /// Whether `events_received` holds every stored event (its backfill, run apart by the
    /// operator, is done): until then windows cannot be cut.
    async fn receipts_complete(&self) -> Result<bool, RunError> {
        let ch = &self.engine.ch;
        let ch_err = |e: clickhouse::error::Error| RunError::ClickHouse(e.to_string());
        let exists: u64 = ch
            .query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?")
            .bind(cairn_common::clickhouse::BACKFILLS_TABLE)
            .fetch_one()
            .await
            .map_err(ch_err)?;
        if exists == 0 {
            return Ok(true);
        }
        let pending: u64 = ch
            .query(&format!(
                "SELECT count() FROM {} FINAL WHERE name = ? AND state != 'done'",
                cairn_common::clickhouse::BACKFILLS_TABLE
            ))
            .bind(cairn_common::clickhouse::EVENTS_RECEIVED_TABLE)
            .fetch_one()
            .await
            .map_err(ch_err)?;
        Ok(pending == 0)
    }

    /// One export's turn; `Ok(true)` when one was taken (there may be more).
    async fn turn(&self) -> Result<bool, RunError> {
        // The earliest next window end of the exports free to take: without one that could be
        // closed by now, neither ClickHouse nor Kafka is asked anything (the usual case).
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(cursor_ms + interval_seconds::bigint * 1000) FROM event_exports \
             WHERE NOT paused AND (lease_until IS NULL OR lease_until < now())",
        )
        .fetch_one(&self.pg)
        .await?;
        let now = jiff::Timestamp::now().as_millisecond();
        if next.is_none_or(|end| end > now - self.cfg.settle.as_millis() as i64) {
            return Ok(false);
        }
        if !self.receipts_complete().await? {
            tracing::debug!("event exports wait for the events_received backfill");
            return Ok(false);
        }
        let bound = match closable_until(self).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "event exports wait");
                return Ok(false);
            }
        };
        // An export whose next window is closed, not held by another replica.
        let taken: Option<(i64, i64, sqlx::types::Json<Destination>, String, i32, i64)> = sqlx::query_as(
            "UPDATE event_exports SET lease_owner = $1, lease_until = now() + make_interval(secs => $2) \
             WHERE id = (SELECT id FROM event_exports WHERE NOT paused \
                 AND cursor_ms + interval_seconds::bigint * 1000 <= $3 \
                 AND (lease_until IS NULL OR lease_until < now()) \
                 ORDER BY COALESCE(last_run_at, '-infinity'::timestamptz) LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, project_id, destination, format, interval_seconds, cursor_ms",
        )
        .bind(&self.owner)
        .bind(LEASE_SECS)
        .bind(bound)
        .fetch_optional(&self.pg)
        .await?;
        let Some((id, project_id, destination, format, interval, mut cursor)) = taken else {
            return Ok(false);
        };
        let format = if format == "csv" { Format::Csv } else { Format::Jsonl };
        let interval_ms = i64::from(interval) * 1000;
        let mut outcome: Result<(), RunError> = Ok(());
        for _ in 0..WINDOWS_PER_TURN {
            if cursor + interval_ms > bound {
                break;
            }
            let end = cursor + interval_ms;
            match self.write_window(id, project_id, &destination.0, format, cursor, end).await {
                Ok((location, events, bytes)) => {
                    // Only from the cursor this turn started at, while the lease is ours.
                    let moved = sqlx::query(
                        "WITH moved AS (UPDATE event_exports SET cursor_ms = $3, files_written = files_written + 1, \
                             events_exported = events_exported + $4, last_run_at = now(), last_error = NULL, \
                             lease_until = now() + make_interval(secs => $6), updated_at = now() \
                           WHERE id = $1 AND lease_owner = $5 AND cursor_ms = $2 RETURNING id) \
                         INSERT INTO event_export_files (export_id, window_start_ms, window_end_ms, location, events, bytes) \
                         SELECT id, $2, $3, $7, $4, $8 FROM moved \
                         ON CONFLICT (export_id, window_start_ms) DO UPDATE SET location = EXCLUDED.location, \
                             events = EXCLUDED.events, bytes = EXCLUDED.bytes, written_at = now()",
                    )
                    .bind(id)
                    .bind(cursor)
                    .bind(end)
                    .bind(events as i64)
                    .bind(&self.owner)
                    .bind(LEASE_SECS)
                    .bind(&location)
                    .bind(bytes as i64)
                    .execute(&self.pg)
                    .await?;
                    if moved.rows_affected() == 0 {
                        tracing::warn!(export = id, "event export: the lease was lost; another replica goes on");
                        return Ok(true);
                    }
                    tracing::info!(
                        export = id,
                        project = project_id,
                        location,
                        events,
                        bytes,
                        "event export: window written"
                    );
                    cursor = end;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let error = outcome.as_ref().err().map(|e| e.to_string());
        if let Some(e) = &error {
            tracing::warn!(export = id, project = project_id, error = %e, "event export: a window failed; it is tried again");
        }
        sqlx::query(
            "UPDATE event_exports SET lease_owner = NULL, lease_until = NULL, last_error = COALESCE($3, last_error), \
             last_run_at = CASE WHEN $3 IS NULL THEN last_run_at ELSE now() END WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(&self.owner)
        .bind(&error)
        .execute(&self.pg)
        .await?;
        Ok(error.is_none())
    }

    /// Writes one window's file: answers its location, events and bytes.
    async fn write_window(
        &self,
        export_id: i64,
        project_id: i64,
        destination: &Destination,
        format: Format,
        start: i64,
        end: i64,
    ) -> Result<(String, u64, u64), RunError> {
        let engine = crate::deletions::engine_for(&self.engine, &self.pg, project_id as u64)
            .await
            .map_err(|e| RunError::ClickHouse(e.message))?;
        // The window's events: those whose earliest receipt is in it (a receipt within the
        // dedup horizon before it means an earlier window has the event), one stored copy of
        // each (any: a retry sends the same event), with the earliest receipt as `received_at` —
        // so a window written again is the same file, whichever copies merges left.
        let mut sql = Sql::new();
        let p = sql.u64(project_id as u64);
        let from = sql.millis(start);
        let to = sql.millis(end);
        let horizon = sql.millis(start - self.cfg.dedup_horizon.as_millis() as i64);
        let receipts = format!(
            "(SELECT uuid, min(received_at) AS first FROM {} WHERE project_id = {p} AND received_at >= {horizon} \
             AND received_at < {to} GROUP BY uuid HAVING first >= {from})",
            cairn_common::clickhouse::EVENTS_RECEIVED_TABLE
        );
        sql.push(&format!(
            "SELECT toString(e.uuid) AS uuid, e.event AS event, e.distinct_id AS distinct_id, {} AS timestamp, {} AS received_at, \
             e.properties AS properties FROM (SELECT * FROM events WHERE project_id = {p} AND received_at >= {from} \
             AND uuid IN (SELECT uuid FROM {receipts})",
            crate::export::iso_sql("e.timestamp"),
            crate::export::iso_sql("r.first")
        ));
        engine.source.exclude(&mut sql, "cityHash64(distinct_id)");
        sql.push(&format!(
            " ORDER BY received_at, uuid LIMIT 1 BY uuid) AS e INNER JOIN {receipts} AS r ON e.uuid = r.uuid ORDER BY r.first, e.uuid"
        ));
        let name = file_name(project_id, export_id, start, end, format);
        match destination {
            Destination::Local { path } => {
                let root = self
                    .cfg
                    .local_root
                    .as_ref()
                    .ok_or_else(|| RunError::Config("CAIRN_EXPORT_LOCAL_ROOT is not set".into()))?;
                let dir = if path.is_empty() { root.clone() } else { root.join(path) };
                let file = dir.join(&name);
                let (events, bytes, _) = self.spool(&engine, &sql, format, &file).await?;
                Ok((file.strip_prefix(root).unwrap_or(&file).display().to_string(), events, bytes))
            }
            Destination::S3 { bucket, prefix } => {
                let s3 = self
                    .cfg
                    .s3
                    .as_ref()
                    .ok_or_else(|| RunError::Config("CAIRN_EXPORT_S3_ENDPOINT is not set".into()))?;
                let key = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
                let spool = std::env::temp_dir().join(format!("cairn-export-{export_id}-{start}.part"));
                let written = self.spool(&engine, &sql, format, &spool).await;
                let result = match written {
                    Ok((events, bytes, sha)) => crate::s3::put_file(
                        &self.http,
                        s3,
                        bucket,
                        &key,
                        crate::s3::Upload {
                            path: &spool,
                            len: bytes,
                            sha256: &sha,
                            content_type: format.content_type(),
                        },
                    )
                    .await
                    .map(|()| (format!("s3://{bucket}/{key}"), events, bytes))
                    .map_err(RunError::from),
                    Err(e) => Err(e),
                };
                let _ = tokio::fs::remove_file(&spool).await;
                result
            }
        }
    }

    /// Streams the statement's output into `file` (under a temporary name, fsynced, then renamed):
    /// answers the events (lines, less a CSV header), bytes and SHA-256 (hex).
    async fn spool(
        &self,
        engine: &Engine,
        sql: &Sql,
        format: Format,
        file: &Path,
    ) -> Result<(u64, u64, String), RunError> {
        if let Some(dir) = file.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = file.with_extension(format!("{}.tmp", format.as_str()));
        let mut out = tokio::fs::File::create(&tmp).await?;
        let mut cursor =
            engine.stream_bytes(sql, format.clickhouse()).map_err(|e| RunError::ClickHouse(e.to_string()))?;
        let mut hash = Sha256::new();
        let (mut lines, mut bytes) = (0u64, 0u64);
        loop {
            let chunk = tokio::time::timeout(engine.timeout, cursor.next())
                .await
                .map_err(|_| RunError::ClickHouse("the window's statement ran past its time limit".into()))?
                .map_err(|e| RunError::ClickHouse(e.to_string()))?;
            let Some(chunk) = chunk else { break };
            hash.update(&chunk);
            bytes += chunk.len() as u64;
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        out.sync_all().await?;
        drop(out);
        tokio::fs::rename(&tmp, file).await?;
        if let Some(dir) = file.parent() {
            // The rename itself durable.
            if let Ok(d) = tokio::fs::File::open(dir).await {
                let _ = d.sync_all().await;
            }
        }
        let events = if format == Format::Csv { lines.saturating_sub(1) } else { lines };
        Ok((events, bytes, hex::encode(hash.finalize())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_names_are_fixed_by_the_interval() {
        let h = 3_600_000;
        assert_eq!(window_start(5 * h + 123, h), 5 * h);
        assert_eq!(window_start(-1, h), -h);
        let name = file_name(7, 3, 1_796_464_800_000, 1_796_468_400_000, Format::Jsonl);
        assert_eq!(name, "project-7/export-3/20261205T100000Z-20261205T110000Z.jsonl");
    }

    #[test]
    fn paths_stay_under_the_root() {
        assert_eq!(check_path("p", "/a/b/").unwrap(), "a/b");
        assert_eq!(check_path("p", "").unwrap(), "");
        for bad in ["../x", "a/../../b", "a b", "./a", "a/./b", "ü"] {
            assert!(check_path("p", bad).is_err(), "{bad}");
        }
    }
}
