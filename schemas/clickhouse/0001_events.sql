-- The events table: one row per captured event.
--
-- * ReplacingMergeTree keyed (through ORDER BY) by the event's uuid: a record that Kafka delivers
--   twice (a consumer crash between insert and offset commit) collapses into one row. Queries read
--   with FINAL (or aggregate by uuid) so that duplicates that have not been merged yet are never
--   counted.
-- * non_replicated_deduplication_window: the consumer sends an insert_deduplication_token per batch,
--   so a retried insert of the same batch is dropped by ClickHouse itself.
-- * Partitioned by month; ordered for filters by project, event and time; sampled by person.
-- * The retention TTL is not part of this file: it is configuration (CAIRN_EVENT_TTL_DAYS, the
--   AnalyticsPlatform's spec.eventTtlDays) applied after the migrations by ALTER TABLE ... MODIFY TTL.
CREATE TABLE IF NOT EXISTS events
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, event, toDate(timestamp), cityHash64(distinct_id), uuid)
SAMPLE BY cityHash64(distinct_id)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 8192;
