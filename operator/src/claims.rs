//! Who uses a ClickHouse database and a Kafka topic, so that deleting one platform never drops
//! what another still uses.
//!
//! The defaults (`cairn` database, `cairn_events` topic) are the same for every platform, so two
//! platforms pointed at one ClickHouse and one Kafka share them unless told otherwise. Each
//! platform therefore registers itself in the database it uses (`cairn_platforms`: its uid, name,
//! Kafka and topic) once its schema is applied, and releases its claim when it is deleted. The
//! Delete policy drops the database only when no other platform holds a claim on it, and the topic
//! only when no other claim names the same topic on the same Kafka; platforms the operator can see
//! in the API server count as users too (they may not have registered yet). A claim left by a
//! platform deleted while no operator ran keeps the data: the safe side.

use cairn_common::clickhouse::server_client;
use cairn_common::config::ClickHouseConfig;
use serde::Deserialize;

const TABLE: &str = "cairn_platforms";

/// This platform, as its claim records it.
#[derive(Debug, Clone)]
pub struct Claim {
    pub uid: String,
    /// `<namespace>/<name>`.
    pub platform: String,
    pub kafka: String,
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct OtherUser {
    pub platform: String,
    pub kafka: String,
    pub topic: String,
}

fn quote(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// On a cluster, one replicated table across every node (like the migration runner's own).
async fn ensure_table(db: &clickhouse::Client, cfg: &ClickHouseConfig) -> Result<(), clickhouse::error::Error> {
    let topology = cfg.topology();
    db.query(&format!(
        "CREATE TABLE IF NOT EXISTS {TABLE}{} (\
           uid String, platform String, kafka String, topic String, released UInt8, \
           updated_at DateTime64(3, 'UTC') DEFAULT now64(3)\
         ) ENGINE = {} ORDER BY uid",
        topology.on_cluster(),
        cairn_common::clickhouse::bookkeeping_engine(&topology, TABLE, "updated_at")
    ))
    .execute()
    .await
}

fn database_client(cfg: &ClickHouseConfig) -> clickhouse::Client {
    server_client(cfg).with_database(&cfg.database)
}

/// Registers (or refreshes) this platform's claim on the database in `cfg`; writes only when the
/// recorded claim differs.
pub async fn register(cfg: &ClickHouseConfig, claim: &Claim) -> Result<(), clickhouse::error::Error> {
    let db = database_client(cfg);
    ensure_table(&db, cfg).await?;
    let current: Option<OtherUser> = db
        .query(&format!("SELECT platform, kafka, topic FROM {TABLE} FINAL WHERE uid = ? AND released = 0"))
        .bind(&claim.uid)
        .fetch_optional()
        .await?;
    let wanted = OtherUser { platform: claim.platform.clone(), kafka: claim.kafka.clone(), topic: claim.topic.clone() };
    if current.as_ref() == Some(&wanted) {
        return Ok(());
    }
    write(&db, claim, false).await
}

async fn write(db: &clickhouse::Client, claim: &Claim, released: bool) -> Result<(), clickhouse::error::Error> {
    db.query(&format!("INSERT INTO {TABLE} (uid, platform, kafka, topic, released) VALUES (?, ?, ?, ?, ?)"))
        .bind(&claim.uid)
        .bind(&claim.platform)
        .bind(&claim.kafka)
        .bind(&claim.topic)
        .bind(u8::from(released))
        .execute()
        .await
}

/// The other platforms that hold a claim on the database (none if the database or the table
/// does not exist).
pub async fn other_users(cfg: &ClickHouseConfig, uid: &str) -> Result<Vec<OtherUser>, clickhouse::error::Error> {
    if !table_exists(cfg).await? {
        return Ok(Vec::new());
    }
    server_client(cfg)
        .query(&format!(
            "SELECT platform, kafka, topic FROM {}.{TABLE} FINAL WHERE uid != ? AND released = 0 ORDER BY platform",
            quote(&cfg.database)
        ))
        .bind(uid)
        .fetch_all()
        .await
}

/// Releases this platform's claim (it is being deleted).
pub async fn release(cfg: &ClickHouseConfig, claim: &Claim) -> Result<(), clickhouse::error::Error> {
    if !table_exists(cfg).await? {
        return Ok(());
    }
    write(&database_client(cfg), claim, true).await
}

/// Whether the claims table exists (the database may not, or may predate claims).
async fn table_exists(cfg: &ClickHouseConfig) -> Result<bool, clickhouse::error::Error> {
    let n: u64 = server_client(cfg)
        .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
        .bind(&cfg.database)
        .bind(TABLE)
        .fetch_one()
        .await?;
    Ok(n > 0)
}
