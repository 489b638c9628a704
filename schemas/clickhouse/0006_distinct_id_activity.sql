-- distinct_id_activity: each distinct id of a project, with when it was first and last seen.
--
-- The persons list groups these by person (through person_overrides) rather than reading every
-- event: one row per distinct id once merged, filled by a materialized view on `events` (each
-- insert block adds its ids' earliest and latest times; AggregatingMergeTree keeps the minimum and
-- the maximum, so a record delivered twice changes nothing). The INSERT … SELECT covers the events
-- stored before this migration, once.
CREATE TABLE IF NOT EXISTS distinct_id_activity
(
    project_id  UInt64,
    id_hash     UInt64,
    distinct_id SimpleAggregateFunction(any, String),
    first_seen  SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen   SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (project_id, id_hash);

CREATE MATERIALIZED VIEW IF NOT EXISTS distinct_id_activity_mv TO distinct_id_activity AS
SELECT project_id, id_hash, d AS distinct_id, f AS first_seen, l AS last_seen
FROM (SELECT project_id, cityHash64(distinct_id) AS id_hash, any(distinct_id) AS d, min(timestamp) AS f, max(timestamp) AS l
      FROM events GROUP BY project_id, id_hash);

INSERT INTO distinct_id_activity (project_id, id_hash, distinct_id, first_seen, last_seen)
SELECT project_id, id_hash, d, f, l
FROM (SELECT project_id, cityHash64(distinct_id) AS id_hash, any(distinct_id) AS d, min(timestamp) AS f, max(timestamp) AS l
      FROM events GROUP BY project_id, id_hash);
