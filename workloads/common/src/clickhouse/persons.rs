//! The person overrides table's row (`schemas/clickhouse/0004_person_overrides.sql`).

use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// The distinct ids that belong to a person other than their own, as the persons worker copies
/// them from PostgreSQL.
pub const PERSON_OVERRIDES_TABLE: &str = "person_overrides";

/// Every `$set`, `$set_once` and `$unset` of every event, one row per key
/// (`schemas/clickhouse/0005_person_property_ops.sql`; filled by a materialized view on `events`).
pub const PERSON_PROPERTY_OPS_TABLE: &str = "person_property_ops";

/// Each distinct id with when it was first and last seen
/// (`schemas/clickhouse/0006_distinct_id_activity.sql`; filled by a materialized view on `events`).
pub const DISTINCT_ID_ACTIVITY_TABLE: &str = "distinct_id_activity";

/// One distinct id's person: `id_hash` is `cityHash64(distinct_id)`; of the rows of one
/// (project, id), the highest `version` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct PersonOverrideRow {
    pub project_id: u64,
    pub id_hash: u64,
    pub person_id: u64,
    pub version: u64,
}
