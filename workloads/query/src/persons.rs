//! Persons in analyses: every analysis counts persons, not distinct ids.
//!
//! A distinct id's person is `cityHash64(distinct_id)` unless an identity event moved it, in which
//! case `person_overrides` (copied there by the consumer's persons pipeline) says whose it is.
//! Analyses first aggregate per distinct id (its hash), then join the project's overrides — a
//! small table, keyed by that hash — and aggregate per person. Events stored before a merge thus
//! count for the merged person with no rewrite of the events.

use cairn_common::clickhouse::{PERSON_OVERRIDES_TABLE, PERSON_PROPERTY_OPS_TABLE};

use crate::sql::Sql;

/// The alias of the joined overrides.
pub const OVERRIDES: &str = "o";

/// ` LEFT JOIN (the project's overrides) AS o ON {left} = o.id_hash`, where `left` is a distinct
/// id's hash. Of an id's rows, the highest version holds.
pub fn join_overrides(sql: &mut Sql, project_id: u64, left: &str) {
    let overrides = overrides(sql, project_id);
    sql.push(" LEFT JOIN ")
        .push(&overrides)
        .push(" AS ")
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

/// The column a statement joins in with [`join_person_properties`]: the event's person's
/// properties as a JSON object (empty when the person has none).
pub const PERSON_PROPERTIES: &str = "person_properties";

/// The project's overrides, latest per id: `(SELECT id_hash, argMax(person_id, version) AS
/// person_id … GROUP BY id_hash)`.
pub(crate) fn overrides(sql: &mut Sql, project_id: u64) -> String {
    let project = sql.u64(project_id);
    format!(
        "(SELECT id_hash, argMax(person_id, version) AS person_id FROM {PERSON_OVERRIDES_TABLE} WHERE project_id = {project} GROUP BY id_hash)"
    )
}

/// The persons of a project that have properties, with them: `(SELECT person, properties …)`.
///
/// Each distinct id's operations (`person_property_ops`) are taken to its person, and each key's
/// operations folded in event-time order — (timestamp, uuid, op) with op 1 `$set_once`, 2 `$set`,
/// 3 `$unset` — as `cairn_persons::properties::fold` does: `$set` gives the value, `$unset`
/// removes it, `$set_once` gives it only where there is none. Values are JSON texts, so the
/// properties are a JSON object that the event properties' expressions read alike.
pub fn persons_with_properties(sql: &mut Sql, project_id: u64) -> String {
    let project = sql.u64(project_id);
    let overrides = overrides(sql, project_id);
    format!(
        "(SELECT person, concat('{{', arrayStringConcat(groupArray(concat(toJSONString(key), ':', val)), ','), '}}') AS properties \
         FROM (SELECT person, key, arrayFold((acc, x) -> multiIf(x.3 = 2, x.4, x.3 = 3, '', acc = '', x.4, acc), \
         arraySort(groupArray((t, u, op, value))), '') AS val \
         FROM (SELECT if(ov.person_id = 0, ops.id_hash, ov.person_id) AS person, ops.key AS key, ops.timestamp AS t, \
         ops.uuid AS u, ops.op AS op, ops.value AS value \
         FROM {PERSON_PROPERTY_OPS_TABLE} AS ops LEFT JOIN {overrides} AS ov ON ops.id_hash = ov.id_hash \
         WHERE ops.project_id = {project}) GROUP BY person, key) WHERE val != '' GROUP BY person)"
    )
}

/// ` LEFT JOIN (each distinct id hash of a person with properties, and the properties) AS pp ON
/// cityHash64(distinct_id) = pp.id_hash`: after it, [`PERSON_PROPERTIES`] is each event's
/// person's properties (empty for a person without any, so every property reads as missing).
pub fn join_person_properties(sql: &mut Sql, project_id: u64) {
    let persons = persons_with_properties(sql, project_id);
    let overrides = overrides(sql, project_id);
    // A person's ids: the one it is named after (its hash is the person) and those moved to it.
    sql.push(" LEFT JOIN (SELECT arrayJoin(arrayPushBack(ids.ids, pp.person)) AS id_hash, pp.properties AS ")
        .push(PERSON_PROPERTIES)
        .push(" FROM ")
        .push(&persons)
        .push(" AS pp LEFT JOIN (SELECT person_id, groupArray(id_hash) AS ids FROM ")
        .push(&overrides)
        .push(
            " GROUP BY person_id) AS ids ON pp.person = ids.person_id) AS pp ON cityHash64(distinct_id) = pp.id_hash",
        );
}
