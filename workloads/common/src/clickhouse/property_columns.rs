//! Materialised property columns: frequently used event properties as columns of their own.
//!
//! Every event's properties are one JSON text; a filter or breakdown on a property parses that
//! text for every row read. A property made a column (`ALTER TABLE events ADD COLUMN … MATERIALIZED
//! JSONExtract(properties, '<key>', 'Nullable(String)')`) is computed once, when a row is inserted,
//! and read like any column. Rows stored before the column was added read the same expression
//! computed on the fly, so answers never change; `MATERIALIZE COLUMN` (a background mutation that
//! blocks nothing) then writes it into the older parts.
//!
//! The column's name is derived from the key (`mp_<key as letters, digits and _>_<8 hex of its
//! SHA-256>`) and its comment holds the key, so the query service finds every such column and its
//! key in `system.columns` and reads it wherever the property's JSON would be parsed. The value
//! is exactly the JSON expression's, so a query reads the column or the JSON alike.
//!
//! Which keys: a configured list, and those the query service's statements parse most
//! ([`property_usage`]: each statement names them in its `log_comment`, and ClickHouse's query log
//! keeps that with the statement's duration; the operator chooses from it).

use std::collections::BTreeMap;

use clickhouse::Client;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::cluster::Topology;
use super::EVENTS_TABLE;

/// The prefix of materialised property columns.
pub const PROPERTY_COLUMN_PREFIX: &str = "mp_";
/// What a property column's comment starts with, before its key.
const COMMENT_PREFIX: &str = "cairn property: ";

/// The properties made columns unless configured otherwise: those PostHog's and Cairn's SDKs set
/// on every event and that breakdowns and filters use most.
pub const DEFAULT_PROPERTY_COLUMNS: &[&str] = &[
    "$browser",
    "$os",
    "$device_type",
    "$pathname",
    "$host",
    "$referring_domain",
    "utm_source",
    "utm_medium",
    "utm_campaign",
];

#[derive(Debug, Error)]
pub enum PropertyColumnError {
    #[error("`{0}` cannot be a property column: keys of 1 to 100 letters, digits, and `$ _ - . : /` only")]
    Key(String),
    #[error("ClickHouse refused {doing}: {source}")]
    ClickHouse {
        doing: String,
        #[source]
        source: clickhouse::error::Error,
    },
}

/// Whether `key` may be made a column: it is written into the column's DDL as a literal, so only
/// keys whose text needs no escaping.
pub fn materialisable(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 100
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '$' | '_' | '-' | '.' | ':' | '/'))
}

/// The column that holds `key`.
pub fn column_name(key: &str) -> String {
    let readable: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect::<String>()
        .trim_matches('_')
        .chars()
        .take(40)
        .collect();
    let hash = hex::encode(&Sha256::digest(key.as_bytes())[..4]);
    format!("{PROPERTY_COLUMN_PREFIX}{readable}_{hash}")
}

/// The expression the column holds: the property's text, NULL when missing or JSON null — the
/// query service's own expression for an event property.
pub fn column_expression(key: &str) -> Result<String, PropertyColumnError> {
    if !materialisable(key) {
        return Err(PropertyColumnError::Key(key.to_string()));
    }
    Ok(format!("JSONExtract(properties, '{key}', 'Nullable(String)')"))
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ColumnRow {
    name: String,
    comment: String,
}

/// The property columns of the events table: key → column.
pub async fn property_columns(db: &Client) -> Result<BTreeMap<String, String>, clickhouse::error::Error> {
    let rows: Vec<ColumnRow> = db
        .query(
            "SELECT name, comment FROM system.columns WHERE database = currentDatabase() AND table = ? \
             AND startsWith(name, ?) AND startsWith(comment, ?)",
        )
        .bind(EVENTS_TABLE)
        .bind(PROPERTY_COLUMN_PREFIX)
        .bind(COMMENT_PREFIX)
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let key = r.comment.strip_prefix(COMMENT_PREFIX)?.to_string();
            (column_name(&key) == r.name).then_some((key, r.name))
        })
        .collect())
}

/// What [`ensure_property_columns`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PropertyColumnsReport {
    /// Columns added now (their backfill started).
    pub added: Vec<String>,
    /// Keys already columns.
    pub present: Vec<String>,
    /// Keys that cannot be columns (see [`materialisable`]).
    pub refused: Vec<String>,
}

/// Makes each of `keys` a column of the events table, where it is not one yet, and starts the
/// backfill of the rows stored before (`MATERIALIZE COLUMN`, a background mutation: nothing
/// waits for it, and reads are exact before it ends). Columns are never dropped here.
///
/// On a cluster the column is added to the local tables of every node and to the Distributed
/// table, MATERIALIZED in both: an insert through the Distributed table leaves it out (the shard
/// computes it), and a read asks the shards for the stored value.
pub async fn ensure_property_columns(
    db: &Client,
    topology: &Topology,
    keys: &[String],
) -> Result<PropertyColumnsReport, PropertyColumnError> {
    let (stored_in, on_cluster) = (topology.storage_table(EVENTS_TABLE), topology.on_cluster());
    let existing = property_columns(db)
        .await
        .map_err(|source| PropertyColumnError::ClickHouse { doing: "reading the property columns".into(), source })?;
    let mut report = PropertyColumnsReport::default();
    for key in keys {
        if existing.contains_key(key) {
            report.present.push(key.clone());
            continue;
        }
        let Ok(expression) = column_expression(key) else {
            report.refused.push(key.clone());
            continue;
        };
        let column = column_name(key);
        let add = |table: &str| {
            format!(
                "ALTER TABLE {table}{on_cluster} ADD COLUMN IF NOT EXISTS {column} LowCardinality(Nullable(String)) \
                 MATERIALIZED {expression} COMMENT '{COMMENT_PREFIX}{key}'"
            )
        };
        let mut statements = vec![add(&stored_in)];
        if stored_in != EVENTS_TABLE {
            statements.push(add(EVENTS_TABLE));
        }
        for statement in statements {
            db.query(&statement).execute().await.map_err(|source| PropertyColumnError::ClickHouse {
                doing: format!("adding the column of `{key}`"),
                source,
            })?;
        }
        report.added.push(key.clone());
    }
    if !report.added.is_empty() {
        // One mutation for every new column (one pass over the stored parts), in the background:
        // the statement returns once the mutation is recorded.
        let columns: Vec<String> =
            report.added.iter().map(|k| format!("MATERIALIZE COLUMN {}", column_name(k))).collect();
        db.query(&format!("ALTER TABLE {stored_in}{on_cluster} {}", columns.join(", ")))
            .with_setting("mutations_sync", "0")
            .execute()
            .await
            .map_err(|source| PropertyColumnError::ClickHouse {
                doing: "backfilling the new property columns".into(),
                source,
            })?;
    }
    Ok(report)
}

/// How much the query service's statements parsed one event property out of the JSON, by
/// ClickHouse's query log (see [`property_usage`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub struct PropertyUsage {
    pub key: String,
    /// Finished statements that parsed it.
    pub queries: u64,
    /// Their time, summed (milliseconds).
    pub duration_ms: u64,
}

/// The event properties that the query service's statements over this database parsed out of
/// the JSON (the `properties` of their `log_comment`, written by the query service) in the last
/// `days` days, by at least `min_queries` statements, costliest first (summed duration), at
/// most `limit`; keys that cannot be columns are left out, and those in [`NEVER_CHOSEN`].
/// Statements that failed count too (a time limit hit is the cost a column saves most). Read
/// from `system.query_log`: where
/// the server keeps none, or this account may not read it, the error says so.
///
/// On a cluster, every node's query log (each logs the statements it received).
pub async fn property_usage(
    db: &Client,
    topology: &Topology,
    days: u32,
    min_queries: u64,
    limit: u64,
) -> Result<Vec<PropertyUsage>, clickhouse::error::Error> {
    let database = database_by_name(db, topology).await?;
    let mut query = db
        .query(&format!(
            "SELECT key, count() AS queries, sum(query_duration_ms) AS duration_ms FROM {} \
             ARRAY JOIN JSONExtract(log_comment, 'properties', 'Array(String)') AS key \
             WHERE event_date >= today() - ? AND event_time >= now() - toIntervalDay(?) \
             AND type IN ('QueryFinish', 'ExceptionWhileProcessing') AND query_kind = 'Select' \
             AND has(databases, {}) \
             AND startsWith(log_comment, '{{') AND key != '' AND key NOT IN ? \
             GROUP BY key HAVING queries >= ? ORDER BY duration_ms DESC, queries DESC, key LIMIT ?",
            topology.system_table("query_log"),
            database_expression(&database)
        ))
        .bind(days)
        .bind(days);
    if let Some(name) = &database {
        query = query.bind(name.as_str());
    }
    let rows: Vec<PropertyUsage> = query.bind(NEVER_CHOSEN).bind(min_queries).bind(limit).fetch_all().await?;
    // The query service names only keys that can be columns; a statement from elsewhere might not.
    Ok(rows.into_iter().filter(|r| materialisable(&r.key)).collect())
}

/// How a statement over `topology`'s system tables names this client's database: `None` on one
/// server (the statement says `currentDatabase()`); on a cluster its name, read here (the filter
/// runs on every node, whose current database is not this client's), bound as a parameter.
async fn database_by_name(db: &Client, topology: &Topology) -> Result<Option<String>, clickhouse::error::Error> {
    match topology {
        Topology::Single => Ok(None),
        Topology::Cluster(_) => db.query("SELECT currentDatabase()").fetch_one().await.map(Some),
    }
}

/// The placeholder or expression for [`database_by_name`]'s answer.
fn database_expression(database: &Option<String>) -> &'static str {
    if database.is_some() {
        "?"
    } else {
        "currentDatabase()"
    }
}

/// Properties never chosen from usage: ids with a new value on nearly every event or session,
/// which a LowCardinality column would hold badly and no filter or breakdown gains from (they
/// are parsed to group events into sessions, or counted distinct).
pub const NEVER_CHOSEN: &[&str] =
    &["$session_id", "$window_id", "$insert_id", "$device_id", "$anon_distinct_id", "$user_id", "distinct_id", "token"];

/// Backfills of property columns still running (`MATERIALIZE COLUMN` mutations not done): on a
/// cluster, of the local tables on every node.
pub async fn property_backfills_running(db: &Client, topology: &Topology) -> Result<u64, clickhouse::error::Error> {
    let database = database_by_name(db, topology).await?;
    let mut query = db.query(&format!(
        "SELECT count() FROM {} WHERE database = {} AND table = ? AND NOT is_done \
         AND position(command, 'MATERIALIZE COLUMN') > 0",
        topology.system_table("mutations"),
        database_expression(&database)
    ));
    if let Some(name) = &database {
        query = query.bind(name.as_str());
    }
    query.bind(topology.storage_table(EVENTS_TABLE).as_str()).fetch_one().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_readable_and_distinct() {
        assert_eq!(column_name("$browser"), format!("mp_browser_{}", &hex::encode(Sha256::digest(b"$browser"))[..8]));
        assert_ne!(column_name("$browser"), column_name("browser"));
        assert!(column_name(&"x".repeat(100)).len() <= 3 + 40 + 1 + 8);
    }

    #[test]
    fn only_keys_that_need_no_escaping_become_columns() {
        for key in ["$browser", "utm_source", "$current_url", "a.b:c/d-e"] {
            assert!(materialisable(key), "{key}");
        }
        for key in ["", "it's", "a\\b", "a b", "ключ", &"x".repeat(101)] {
            assert!(!materialisable(key), "{key}");
            assert!(column_expression(key).is_err());
        }
        assert_eq!(column_expression("$os").unwrap(), "JSONExtract(properties, '$os', 'Nullable(String)')");
    }
}
