//! ClickHouse cluster mode: the single-node schema rendered for a cluster of shards and replicas.
//!
//! With `CAIRN_CLICKHOUSE_CLUSTER` (the operator's `spec.clickhouse.cluster`: a cluster named in
//! the servers' `remote_servers`), every migration statement is rewritten here, so the schema is
//! still written once (`schemas/clickhouse/*.sql`):
//!
//! * a table `t` becomes `t_local` on every node (`ON CLUSTER`), with the Replicated form of its
//!   engine (`ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/t_local',
//!   '{replica}')`, the usual macros), and `t` becomes a `Distributed` table over them. Queries
//!   and inserts keep using `t`; nothing else in Cairn names a table differently.
//! * every table is sharded by the hash of the person's distinct id ([`SHARDING_KEYS`]): the rows
//!   of one distinct id (its events, their copy by person, its person overrides and property
//!   operations) are on one shard, so duplicates of an event meet (ReplacingMergeTree collapses
//!   them there), and a person's rows stay local to a shard.
//! * materialized views are created on every node, reading the local table and writing the local
//!   target: a row's copies are made on the shard that stores it.
//! * `ALTER`s (codecs, indexes, TTLs) apply to the local tables; backfills (`INSERT … SELECT`) read
//!   and write through the Distributed tables, each shard copying its own rows
//!   (`parallel_distributed_insert_select = 2`).
//! * `non_replicated_deduplication_window` becomes `replicated_deduplication_window` (the same
//!   number of recent blocks remembered, in Keeper): retried inserts with the same
//!   `insert_deduplication_token` are dropped as on one server.
//!
//! Without a cluster nothing is rewritten. A statement of a shape this module does not know is an
//! error (a unit test renders every migration), never passed through unchanged.

use thiserror::Error;

/// The suffix of a Distributed table's local (replicated) table.
pub const LOCAL_SUFFIX: &str = "_local";

/// Each table's sharding key: the hash of the distinct id, by whichever column holds it, so one
/// distinct id's rows in every table are on the same shard (`person` and `id_hash` are
/// `cityHash64(distinct_id)`). `events_received` has no distinct id: its rows are written by its
/// materialized view on the shard of their event; the key only places direct inserts, which
/// Cairn does not make.
pub const SHARDING_KEYS: &[(&str, &str)] = &[
    ("events", "cityHash64(distinct_id)"),
    ("events_by_person", "person"),
    ("person_overrides", "id_hash"),
    ("person_property_ops", "id_hash"),
    ("distinct_id_activity", "id_hash"),
    ("event_changes", "cityHash64(distinct_id)"),
    ("events_received", "cityHash64(uuid)"),
];

/// A statement the cluster rendering does not know how to rewrite.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClusterDdlError {
    #[error("table {0} has no sharding key for cluster mode (add it to SHARDING_KEYS)")]
    NoShardingKey(String),
    #[error("cannot render for a cluster: {reason}: {statement}")]
    Unsupported { reason: &'static str, statement: String },
}

/// How a platform's ClickHouse is laid out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Topology {
    /// One server (or ClickHouse Cloud, whose SharedMergeTree replicates the single-node DDL).
    #[default]
    Single,
    /// The cluster of this name in the servers' `remote_servers`.
    Cluster(String),
}

impl Topology {
    pub fn from_cluster(cluster: Option<&str>) -> Self {
        match cluster.map(str::trim).filter(|c| !c.is_empty()) {
            Some(c) => Topology::Cluster(c.to_string()),
            None => Topology::Single,
        }
    }

    /// ` ON CLUSTER '<name>'`, or nothing.
    pub fn on_cluster(&self) -> String {
        match self {
            Topology::Single => String::new(),
            Topology::Cluster(c) => format!(" ON CLUSTER {}", quote_string(c)),
        }
    }

    /// The table that stores `table`'s rows (and takes its `ALTER`s): itself, or its local table.
    pub fn storage_table(&self, table: &str) -> String {
        match self {
            Topology::Single => table.to_string(),
            Topology::Cluster(_) => format!("{table}{LOCAL_SUFFIX}"),
        }
    }

    /// A system table of every node: `system.<table>` of the one server, or
    /// `clusterAllReplicas('<cluster>', system.<table>)` — for what each node keeps of its own
    /// (disks, query log, mutations of its local tables).
    pub fn system_table(&self, table: &str) -> String {
        match self {
            Topology::Single => format!("system.{table}"),
            Topology::Cluster(c) => format!("clusterAllReplicas({}, system.{table})", quote_string(c)),
        }
    }

    /// One migration statement as this topology runs it (one or more statements).
    pub fn render(&self, statement: &str) -> Result<Vec<String>, ClusterDdlError> {
        match self {
            Topology::Single => Ok(vec![statement.to_string()]),
            Topology::Cluster(c) => render_for_cluster(statement, c),
        }
    }
}

impl crate::config::ClickHouseConfig {
    /// How this configuration's ClickHouse is laid out (`CAIRN_CLICKHOUSE_CLUSTER`).
    pub fn topology(&self) -> Topology {
        Topology::from_cluster(self.cluster.as_deref())
    }
}

fn quote_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn sharding_key(table: &str) -> Result<&'static str, ClusterDdlError> {
    SHARDING_KEYS
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, k)| *k)
        .ok_or_else(|| ClusterDdlError::NoShardingKey(table.into()))
}

/// The statement without its `--` comment lines and surrounding blank space.
fn code_of(statement: &str) -> String {
    statement.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n").trim().to_string()
}

/// The identifier at the start of `s` and what follows it.
fn identifier(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

/// Replaces the table names `tables` read after `FROM`/`JOIN` with their local tables.
fn local_sources(select: &str) -> String {
    let mut out = String::with_capacity(select.len() + 16);
    let mut rest = select;
    while let Some(at) = find_keyword(rest, &["FROM", "JOIN"]) {
        let (before, after) = rest.split_at(at.0 + at.1);
        out.push_str(before);
        let spaces = after.len() - after.trim_start().len();
        out.push_str(&after[..spaces]);
        let after = &after[spaces..];
        match identifier(after) {
            Some((name, tail)) if SHARDING_KEYS.iter().any(|(t, _)| *t == name) => {
                out.push_str(name);
                out.push_str(LOCAL_SUFFIX);
                rest = tail;
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// The first of `keywords` in `s` as a whole word (outside quotes): (position, length).
fn find_keyword(s: &str, keywords: &[&str]) -> Option<(usize, usize)> {
    let bytes = s.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == b'\\' {
                i += 2;
                continue;
            }
            if b == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if b == b'\'' || b == b'"' || b == b'`' {
            quote = Some(b);
            i += 1;
            continue;
        }
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if word_start {
            for k in keywords {
                let end = i + k.len();
                if end <= bytes.len()
                    && s.get(i..end).is_some_and(|w| w.eq_ignore_ascii_case(k))
                    && (end == bytes.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_'))
                {
                    return Some((i, k.len()));
                }
            }
        }
        i += 1;
    }
    None
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let s = s.trim_start();
    s.get(..prefix.len()).filter(|head| head.eq_ignore_ascii_case(prefix)).map(|_| &s[prefix.len()..])
}

/// The text of a balanced `( … )` at the start of `s` (with the parentheses) and what follows.
fn parenthesized(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if !s.starts_with('(') {
        return None;
    }
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => quote = Some(c),
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[..=i], &s[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// `SETTINGS a = 1, b = 2` with `non_replicated_deduplication_window` as
/// `replicated_deduplication_window`.
fn replicated_settings(rest: &str) -> String {
    let Some((at, len)) = find_keyword(rest, &["SETTINGS"]) else { return rest.to_string() };
    let (head, settings) = (&rest[..at], &rest[at + len..]);
    let kept: Vec<String> = settings
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix("non_replicated_deduplication_window") {
            Some(value) => format!("replicated_deduplication_window{value}"),
            None => s.to_string(),
        })
        .collect();
    format!("{head}SETTINGS {}", kept.join(", "))
}

fn unsupported(reason: &'static str, statement: &str) -> ClusterDdlError {
    ClusterDdlError::Unsupported { reason, statement: statement.to_string() }
}

fn render_for_cluster(statement: &str, cluster: &str) -> Result<Vec<String>, ClusterDdlError> {
    let code = code_of(statement);
    let on_cluster = format!(" ON CLUSTER {}", quote_string(cluster));

    if let Some(rest) = strip_prefix_ci(&code, "CREATE TABLE IF NOT EXISTS") {
        let (table, rest) = identifier(rest).ok_or_else(|| unsupported("no table name", &code))?;
        let key = sharding_key(table)?;
        let (columns, rest) = parenthesized(rest).ok_or_else(|| unsupported("no column list", &code))?;
        let rest = strip_prefix_ci(rest, "ENGINE")
            .and_then(|r| r.trim_start().strip_prefix('='))
            .ok_or_else(|| unsupported("no ENGINE", &code))?;
        let (engine, rest) = identifier(rest).ok_or_else(|| unsupported("no engine name", &code))?;
        if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
            return Err(unsupported("only MergeTree-family engines are made Replicated", &code));
        }
        let (args, rest) = match parenthesized(rest) {
            Some((args, rest)) => (args[1..args.len() - 1].trim().to_string(), rest),
            None => (String::new(), rest),
        };
        let local = format!("{table}{LOCAL_SUFFIX}");
        let mut engine_args = format!("'/clickhouse/tables/{{shard}}/{{database}}/{local}', '{{replica}}'");
        if !args.is_empty() {
            engine_args.push_str(", ");
            engine_args.push_str(&args);
        }
        let rest = replicated_settings(rest.trim());
        let create_local = format!(
            "CREATE TABLE IF NOT EXISTS {local}{on_cluster}\n{columns}\nENGINE = Replicated{engine}({engine_args})\n{rest}"
        );
        let create_distributed = format!(
            "CREATE TABLE IF NOT EXISTS {table}{on_cluster} AS {local}\nENGINE = Distributed({}, currentDatabase(), {local}, {key})",
            quote_string(cluster)
        );
        return Ok(vec![create_local.trim_end().to_string(), create_distributed]);
    }

    if let Some(rest) = strip_prefix_ci(&code, "CREATE MATERIALIZED VIEW IF NOT EXISTS") {
        let (view, rest) = identifier(rest).ok_or_else(|| unsupported("no view name", &code))?;
        let rest = strip_prefix_ci(rest, "TO").ok_or_else(|| unsupported("a view without TO", &code))?;
        let (target, rest) = identifier(rest).ok_or_else(|| unsupported("no target table", &code))?;
        sharding_key(target)?;
        let select = strip_prefix_ci(rest, "AS").ok_or_else(|| unsupported("no AS SELECT", &code))?;
        return Ok(vec![format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {view}{on_cluster} TO {target}{LOCAL_SUFFIX} AS{}",
            local_sources(select)
        )]);
    }

    if let Some(rest) = strip_prefix_ci(&code, "ALTER TABLE") {
        let (table, rest) = identifier(rest).ok_or_else(|| unsupported("no table name", &code))?;
        sharding_key(table)?;
        let changes_columns = find_keyword(rest, &["ADD COLUMN", "DROP COLUMN", "RENAME COLUMN"]).is_some();
        if changes_columns {
            // The Distributed table would need the same change: not made by any migration yet.
            return Err(unsupported("column changes need the Distributed table changed too", &code));
        }
        return Ok(vec![format!("ALTER TABLE {table}{LOCAL_SUFFIX}{on_cluster}{rest}")]);
    }

    if let Some(rest) = strip_prefix_ci(&code, "INSERT INTO") {
        let (table, _) = identifier(rest).ok_or_else(|| unsupported("no table name", &code))?;
        sharding_key(table)?;
        if find_keyword(&code, &["SETTINGS"]).is_some() {
            return Err(unsupported("a backfill with its own SETTINGS", &code));
        }
        return Ok(vec![format!("{code}\nSETTINGS parallel_distributed_insert_select = 2")]);
    }

    Err(unsupported("not a CREATE TABLE, CREATE MATERIALIZED VIEW, ALTER TABLE or INSERT … SELECT", &code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_becomes_replicated_local_tables_and_a_distributed_table() {
        let sql = "-- comment\nCREATE TABLE IF NOT EXISTS events\n(\n    uuid UUID,\n    distinct_id String\n)\nENGINE = ReplacingMergeTree\nORDER BY uuid\nSETTINGS non_replicated_deduplication_window = 10000, index_granularity = 8192";
        let out = Topology::Cluster("prod".into()).render(sql).unwrap();
        assert_eq!(out.len(), 2);
        assert!(
            out[0].starts_with("CREATE TABLE IF NOT EXISTS events_local ON CLUSTER 'prod'\n(\n    uuid UUID,"),
            "{}",
            out[0]
        );
        assert!(
            out[0].contains(
                "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events_local', '{replica}')"
            ),
            "{}",
            out[0]
        );
        assert!(
            out[0]
                .ends_with("ORDER BY uuid\nSETTINGS replicated_deduplication_window = 10000, index_granularity = 8192"),
            "{}",
            out[0]
        );
        assert_eq!(
            out[1],
            "CREATE TABLE IF NOT EXISTS events ON CLUSTER 'prod' AS events_local\n\
             ENGINE = Distributed('prod', currentDatabase(), events_local, cityHash64(distinct_id))"
        );
        assert_eq!(Topology::Single.render(sql).unwrap(), vec![sql.to_string()], "one server: unchanged");
    }

    #[test]
    fn engine_arguments_are_kept_after_the_replication_path() {
        let sql = "CREATE TABLE IF NOT EXISTS person_overrides (project_id UInt64, id_hash UInt64, version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY (project_id, id_hash)";
        let out = Topology::Cluster("c".into()).render(sql).unwrap();
        assert!(out[0].contains("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/person_overrides_local', '{replica}', version)"), "{}", out[0]);
        assert!(out[1].ends_with("person_overrides_local, id_hash)"));
    }

    #[test]
    fn views_read_and_write_local_tables_alters_go_to_them_backfills_copy_per_shard() {
        let c = Topology::Cluster("c".into());
        let view = c
            .render("CREATE MATERIALIZED VIEW IF NOT EXISTS events_received_mv TO events_received AS\nSELECT project_id, received_at, uuid FROM events")
            .unwrap();
        assert_eq!(
            view,
            vec!["CREATE MATERIALIZED VIEW IF NOT EXISTS events_received_mv ON CLUSTER 'c' TO events_received_local AS\nSELECT project_id, received_at, uuid FROM events_local"]
        );
        let nested = c
            .render("CREATE MATERIALIZED VIEW IF NOT EXISTS v TO distinct_id_activity AS SELECT a FROM (SELECT 'FROM events' AS a FROM events GROUP BY a)")
            .unwrap();
        assert_eq!(
            nested[0],
            "CREATE MATERIALIZED VIEW IF NOT EXISTS v ON CLUSTER 'c' TO distinct_id_activity_local AS SELECT a FROM (SELECT 'FROM events' AS a FROM events_local GROUP BY a)",
            "a subquery's table is local too; a string is not a table"
        );
        assert_eq!(
            c.render("ALTER TABLE events MODIFY COLUMN timestamp CODEC(T64, LZ4)").unwrap(),
            vec!["ALTER TABLE events_local ON CLUSTER 'c' MODIFY COLUMN timestamp CODEC(T64, LZ4)"]
        );
        assert_eq!(
            c.render("INSERT INTO events_received (project_id) SELECT project_id FROM events").unwrap(),
            vec!["INSERT INTO events_received (project_id) SELECT project_id FROM events\nSETTINGS parallel_distributed_insert_select = 2"]
        );
    }

    #[test]
    fn unknown_shapes_and_tables_are_errors_not_passed_through() {
        let c = Topology::Cluster("c".into());
        assert_eq!(
            c.render("CREATE TABLE IF NOT EXISTS other (a UInt8) ENGINE = MergeTree ORDER BY a"),
            Err(ClusterDdlError::NoShardingKey("other".into()))
        );
        assert!(c.render("DROP TABLE events").is_err());
        assert!(c.render("ALTER TABLE events ADD COLUMN x String").is_err());
        assert!(c.render("CREATE TABLE IF NOT EXISTS events (a UInt8) ENGINE = Log").is_err());
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(Topology::Cluster("it's".into()).on_cluster(), " ON CLUSTER 'it\\'s'");
        assert_eq!(Topology::from_cluster(Some(" ")), Topology::Single);
        assert_eq!(Topology::from_cluster(Some("c")).storage_table("events"), "events_local");
        assert_eq!(Topology::from_cluster(Some("c")).system_table("disks"), "clusterAllReplicas('c', system.disks)");
        assert_eq!(Topology::Single.system_table("disks"), "system.disks");
    }
}
