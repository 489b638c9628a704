//! Persons in analyses: every analysis counts persons, not distinct ids.
//!
//! A distinct id's person is `cityHash64(distinct_id)` unless an identity event moved it, in which
//! case `person_overrides` (copied there by the consumer's persons pipeline) says whose it is.
//! Analyses first aggregate per distinct id (its hash), then join the project's overrides — a
//! small table, keyed by that hash — and aggregate per person. Events stored before a merge thus
//! count for the merged person with no rewrite of the events.

use cairn_common::clickhouse::PERSON_OVERRIDES_TABLE;

use crate::sql::Sql;

/// The alias of the joined overrides.
pub const OVERRIDES: &str = "o";

/// ` LEFT JOIN (the project's overrides) AS o ON {left} = o.id_hash`, where `left` is a distinct
/// id's hash. Of an id's rows, the highest version holds.
pub fn join_overrides(sql: &mut Sql, project_id: u64, left: &str) {
    let project = sql.u64(project_id);
    sql.push(" LEFT JOIN (SELECT id_hash, argMax(person_id, version) AS person_id FROM ")
        .push(PERSON_OVERRIDES_TABLE)
        .push(" WHERE project_id = ")
        .push(&project)
        .push(" GROUP BY id_hash) AS ")
        .push(OVERRIDES)
        .push(" ON ")
        .push(left)
        .push(" = ")
        .push(OVERRIDES)
        .push(".id_hash");
}

/// The person of the id whose hash is `left`, after [`join_overrides`]: an id without an
/// override (the join's default, 0) is its own person.
pub fn person_of(left: &str) -> String {
    format!("if({OVERRIDES}.person_id = 0, {left}, {OVERRIDES}.person_id)")
}
