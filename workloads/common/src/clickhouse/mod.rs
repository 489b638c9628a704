//! ClickHouse: the client every service builds the same way, the events table's row type, and
//! the schema migration runner (also used by the operator).

mod changes;
mod cluster;
mod events;
mod migrations;
mod persons;
mod property_columns;

pub use changes::{
    merged_properties, ChangeError, ChangeOp, ChangeRecord, ChangeRow, ChangeSet, Skip, EVENT_CHANGES_TABLE,
    MAX_CHANGED_PROPERTIES_BYTES,
};
pub use cluster::{ClusterDdlError, Topology, LOCAL_SUFFIX, SHARDING_KEYS};
pub use events::{EventRow, RecordError, EVENTS_BY_PERSON_TABLE, EVENTS_RECEIVED_TABLE, EVENTS_TABLE};
pub use migrations::{
    apply_event_ttl, backfill_progress, bookkeeping_engine, is_backfill, migrate, migrate_deferring_backfills,
    migrate_with, migrate_with_backfills, pending_backfills, quote_identifier, rendered_statements, run_backfill,
    split_statements, Backfill, Backfills, Migration, MigrationError, SchemaStatus, BACKFILLS_TABLE, MIGRATIONS,
};
pub use persons::{PersonOverrideRow, DISTINCT_ID_ACTIVITY_TABLE, PERSON_OVERRIDES_TABLE, PERSON_PROPERTY_OPS_TABLE};
pub use property_columns::{
    column_expression, column_name, ensure_property_columns, materialisable, property_backfills_running,
    property_columns, property_usage, PropertyColumnError, PropertyColumnsReport, PropertyUsage,
    DEFAULT_PROPERTY_COLUMNS, PROPERTY_COLUMN_PREFIX,
};

use crate::config::ClickHouseConfig;

use crate::config::ExposeSecret;

/// A client for the configured server and database. On a cluster: an insert (through a
/// Distributed table) returns once the shards have stored it, not once it is queued on the node
/// that took it (the consumer commits Kafka offsets only after that); and a subquery or join
/// over another Distributed table runs on each shard against its local table
/// (`distributed_product_mode = 'local'`), which is exact because every table is sharded by the
/// same distinct-id hash (`cluster.rs`), instead of being refused as a double-distributed query.
pub fn client(cfg: &ClickHouseConfig) -> clickhouse::Client {
    let c = server_client(cfg).with_database(&cfg.database);
    match cfg.cluster {
        Some(_) => {
            c.with_setting("distributed_foreground_insert", "1").with_setting("distributed_product_mode", "local")
        }
        None => c,
    }
}

/// A client for the configured server, without a current database (for `CREATE DATABASE`).
pub fn server_client(cfg: &ClickHouseConfig) -> clickhouse::Client {
    let mut c = clickhouse::Client::default().with_url(&cfg.url).with_user(&cfg.user).with_compression(if cfg.lz4 {
        clickhouse::Compression::Lz4
    } else {
        clickhouse::Compression::None
    });
    if let Some(p) = &cfg.password {
        c = c.with_password(p.expose_secret());
    }
    c
}

/// `SELECT 1` against the server: the readiness probe of every service that needs ClickHouse.
pub async fn ping(client: &clickhouse::Client) -> Result<(), clickhouse::error::Error> {
    client.query("SELECT 1").fetch_one::<u8>().await.map(|_| ())
}
