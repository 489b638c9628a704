-- Generated from schemas/clickhouse/*.sql by workloads/common/src/clickhouse/cluster.rs
-- (`make docs`): what the migrations run on a cluster named `cairn`, statement by statement.

-- 0001_events
CREATE TABLE IF NOT EXISTS events_local ON CLUSTER 'cairn'
(
    uuid        UUID,
    project_id  UInt64,
    event       LowCardinality(String),
    distinct_id String,
    properties  String CODEC(ZSTD(3)),
    timestamp   DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events_local', '{replica}')
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, event, toDate(timestamp), cityHash64(distinct_id), uuid)
SAMPLE BY cityHash64(distinct_id)
SETTINGS replicated_deduplication_window = 10000, index_granularity = 8192;

CREATE TABLE IF NOT EXISTS events ON CLUSTER 'cairn' AS events_local
ENGINE = Distributed('cairn', currentDatabase(), events_local, cityHash64(distinct_id));


-- 0002_events_by_person
CREATE TABLE IF NOT EXISTS events_by_person_local ON CLUSTER 'cairn'
(
    project_id UInt64,
    person     UInt64,
    event      LowCardinality(String),
    timestamp  DateTime64(3, 'UTC'),
    uuid       UUID
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events_by_person_local', '{replica}')
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, person, toDate(timestamp), event, uuid);

CREATE TABLE IF NOT EXISTS events_by_person ON CLUSTER 'cairn' AS events_by_person_local
ENGINE = Distributed('cairn', currentDatabase(), events_by_person_local, person);

CREATE MATERIALIZED VIEW IF NOT EXISTS events_by_person_mv ON CLUSTER 'cairn' TO events_by_person_local AS
SELECT project_id, cityHash64(distinct_id) AS person, event, timestamp, uuid FROM events_local;

INSERT INTO events_by_person (project_id, person, event, timestamp, uuid)
SELECT project_id, cityHash64(distinct_id), event, timestamp, uuid FROM events
SETTINGS parallel_distributed_insert_select = 2;


-- 0003_timestamp_codec
ALTER TABLE events_local ON CLUSTER 'cairn' MODIFY COLUMN timestamp CODEC(T64, LZ4);

ALTER TABLE events_by_person_local ON CLUSTER 'cairn' MODIFY COLUMN timestamp CODEC(T64, LZ4);


-- 0004_person_overrides
CREATE TABLE IF NOT EXISTS person_overrides_local ON CLUSTER 'cairn'
(
    project_id UInt64,
    id_hash    UInt64,
    person_id  UInt64,
    version    UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/person_overrides_local', '{replica}', version)
ORDER BY (project_id, id_hash);

CREATE TABLE IF NOT EXISTS person_overrides ON CLUSTER 'cairn' AS person_overrides_local
ENGINE = Distributed('cairn', currentDatabase(), person_overrides_local, id_hash);


-- 0005_person_property_ops
CREATE TABLE IF NOT EXISTS person_property_ops_local ON CLUSTER 'cairn'
(
    project_id UInt64,
    id_hash    UInt64,
    key        String,
    op         UInt8,
    value      String,
    timestamp  DateTime64(3, 'UTC') CODEC(T64, LZ4),
    uuid       UUID
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/person_property_ops_local', '{replica}')
ORDER BY (project_id, id_hash, key, timestamp, uuid, op);

CREATE TABLE IF NOT EXISTS person_property_ops ON CLUSTER 'cairn' AS person_property_ops_local
ENGINE = Distributed('cairn', currentDatabase(), person_property_ops_local, id_hash);

CREATE MATERIALIZED VIEW IF NOT EXISTS person_property_ops_mv ON CLUSTER 'cairn' TO person_property_ops_local AS
SELECT project_id, cityHash64(distinct_id) AS id_hash, o.1 AS key, o.2 AS op, o.3 AS value, timestamp, uuid
FROM events_local
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
WHERE position(properties, '"$set') > 0 OR position(properties, '"$unset') > 0
SETTINGS parallel_distributed_insert_select = 2;


-- 0006_distinct_id_activity
CREATE TABLE IF NOT EXISTS distinct_id_activity_local ON CLUSTER 'cairn'
(
    project_id  UInt64,
    id_hash     UInt64,
    distinct_id SimpleAggregateFunction(any, String),
    first_seen  SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen   SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/distinct_id_activity_local', '{replica}')
ORDER BY (project_id, id_hash);

CREATE TABLE IF NOT EXISTS distinct_id_activity ON CLUSTER 'cairn' AS distinct_id_activity_local
ENGINE = Distributed('cairn', currentDatabase(), distinct_id_activity_local, id_hash);

CREATE MATERIALIZED VIEW IF NOT EXISTS distinct_id_activity_mv ON CLUSTER 'cairn' TO distinct_id_activity_local AS
SELECT project_id, id_hash, d AS distinct_id, f AS first_seen, l AS last_seen
FROM (SELECT project_id, cityHash64(distinct_id) AS id_hash, any(distinct_id) AS d, min(timestamp) AS f, max(timestamp) AS l
      FROM events_local GROUP BY project_id, id_hash);

INSERT INTO distinct_id_activity (project_id, id_hash, distinct_id, first_seen, last_seen)
SELECT project_id, id_hash, d, f, l
FROM (SELECT project_id, cityHash64(distinct_id) AS id_hash, any(distinct_id) AS d, min(timestamp) AS f, max(timestamp) AS l
      FROM events GROUP BY project_id, id_hash)
SETTINGS parallel_distributed_insert_select = 2;


-- 0007_event_changes
CREATE TABLE IF NOT EXISTS event_changes_local ON CLUSTER 'cairn'
(
    project_id       UInt64,
    uuid             UUID,
    version          UInt64,
    deleted          UInt8,
    event            LowCardinality(String),
    distinct_id      String,
    properties       String CODEC(ZSTD(3)),
    timestamp        DateTime64(3, 'UTC'),
    received_at      DateTime64(3, 'UTC'),
    changed_at       DateTime64(3, 'UTC'),
    change_id        UUID,
    retain_until     DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/event_changes_local', '{replica}', version)
ORDER BY (project_id, uuid)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS event_changes ON CLUSTER 'cairn' AS event_changes_local
ENGINE = Distributed('cairn', currentDatabase(), event_changes_local, cityHash64(distinct_id));

ALTER TABLE events_local ON CLUSTER 'cairn' ADD INDEX IF NOT EXISTS events_uuid uuid TYPE bloom_filter(0.001) GRANULARITY 1;


-- 0008_events_received
CREATE TABLE IF NOT EXISTS events_received_local ON CLUSTER 'cairn'
(
    project_id  UInt64,
    received_at DateTime64(3, 'UTC') CODEC(T64, ZSTD(1)),
    uuid        UUID
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events_received_local', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (project_id, received_at, uuid);

CREATE TABLE IF NOT EXISTS events_received ON CLUSTER 'cairn' AS events_received_local
ENGINE = Distributed('cairn', currentDatabase(), events_received_local, cityHash64(uuid));

CREATE MATERIALIZED VIEW IF NOT EXISTS events_received_mv ON CLUSTER 'cairn' TO events_received_local AS
SELECT project_id, received_at, uuid FROM events_local;

ALTER TABLE events_local ON CLUSTER 'cairn' ADD INDEX IF NOT EXISTS events_received_at received_at TYPE minmax GRANULARITY 1;

INSERT INTO events_received (project_id, received_at, uuid)
SELECT project_id, received_at, uuid FROM events
SETTINGS parallel_distributed_insert_select = 2;

