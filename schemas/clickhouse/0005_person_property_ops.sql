-- person_property_ops: every $set, $set_once and $unset an event carries, one row per key.
--
-- A person's properties are a fold of the operations of all their distinct ids, per key in
-- event-time order (timestamp, then uuid, then set_once < set < unset within one event): $set
-- gives the value, $unset removes it, $set_once gives it only if the key has none at that point
-- (cairn_persons::properties::fold states the rule; the query service folds the same way with
-- arrayFold). Kept as operations rather than as a person row so that late events, replays and
-- merges (ids joining a person) change the result only through which operations there are: the
-- fold is computed when queried.
--
-- * op: 1 = $set_once, 2 = $set, 3 = $unset (its value empty). value: the JSON text of the value.
-- * Filled from `events` by a materialized view (the top-level $set/$set_once/$unset of PostHog's
--   SDKs are kept in properties by capture); the view skips events without them cheaply. The
--   INSERT … SELECT copies the operations of the events stored before this migration, once.
-- * A record delivered twice gives the same rows: the sort key collapses them, and the fold does
--   not change with a repeated operation anyway. No TTL: persons outlive the events' retention.
CREATE TABLE IF NOT EXISTS person_property_ops
(
    project_id UInt64,
    id_hash    UInt64,
    key        String,
    op         UInt8,
    value      String,
    timestamp  DateTime64(3, 'UTC') CODEC(T64, LZ4),
    uuid       UUID
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, id_hash, key, timestamp, uuid, op);

CREATE MATERIALIZED VIEW IF NOT EXISTS person_property_ops_mv TO person_property_ops AS
SELECT project_id, cityHash64(distinct_id) AS id_hash, o.1 AS key, o.2 AS op, o.3 AS value, timestamp, uuid
FROM events
ARRAY JOIN arrayConcat(
    arrayMap(kv -> (kv.1, toUInt8(1), kv.2), JSONExtractKeysAndValuesRaw(properties, '$set_once')),
    arrayMap(kv -> (kv.1, toUInt8(2), kv.2), JSONExtractKeysAndValuesRaw(properties, '$set')),
    arrayMap(k -> (k, toUInt8(3), ''),
        if(JSONType(properties, '$unset') = 'Array', JSONExtract(properties, '$unset', 'Array(String)'), JSONExtractKeys(properties, '$unset')))
) AS o
WHERE position(properties, '"$set') > 0 OR position(properties, '"$unset') > 0;

INSERT INTO person_property_ops (project_id, id_hash, key, op, value, timestamp, uuid)
SELECT project_id, cityHash64(distinct_id) AS id_hash, o.1 AS key, o.2 AS op, o.3 AS value, timestamp, uuid
FROM events
ARRAY JOIN arrayConcat(
    arrayMap(kv -> (kv.1, toUInt8(1), kv.2), JSONExtractKeysAndValuesRaw(properties, '$set_once')),
    arrayMap(kv -> (kv.1, toUInt8(2), kv.2), JSONExtractKeysAndValuesRaw(properties, '$set')),
    arrayMap(k -> (k, toUInt8(3), ''),
        if(JSONType(properties, '$unset') = 'Array', JSONExtract(properties, '$unset', 'Array(String)'), JSONExtractKeys(properties, '$unset')))
) AS o
WHERE position(properties, '"$set') > 0 OR position(properties, '"$unset') > 0;
