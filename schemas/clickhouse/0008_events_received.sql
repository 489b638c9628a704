-- events_received: when each event was received (capture's clock, `received_at`), by project and
-- time — what scheduled event exports cut their windows from.
--
-- * An export writes each event in the window of its first receipt. A client that sends an event
--   again (a retry) makes a second row in `events` with a later `received_at`, and the two merge
--   into one (the later) in `events`: there the first receipt is lost. Here the sorting key holds
--   `received_at`, so every receipt stays a row (a record Kafka delivered twice is the same
--   receipt, and merges): an event is in window [a, b) when its earliest receipt is.
-- * Ordered by (project_id, received_at): a window's events are a range of the key.
-- * A materialized view fills it on every insert into `events`; the INSERT … SELECT copies the
--   events stored before this migration once (a backfill the operator runs apart; exports wait
--   for it).
-- * 28 bytes a row before compression; the retention TTL is set by CAIRN_EVENT_TTL_DAYS as for
--   `events`.
-- * `events` gets a minmax index on `received_at`, so a window's rows are read from the recent
--   granules only.
CREATE TABLE IF NOT EXISTS events_received
(
    project_id  UInt64,
    received_at DateTime64(3, 'UTC') CODEC(T64, ZSTD(1)),
    uuid        UUID
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (project_id, received_at, uuid);

CREATE MATERIALIZED VIEW IF NOT EXISTS events_received_mv TO events_received AS
SELECT project_id, received_at, uuid FROM events;

ALTER TABLE events ADD INDEX IF NOT EXISTS events_received_at received_at TYPE minmax GRANULARITY 1;

INSERT INTO events_received (project_id, received_at, uuid)
SELECT project_id, received_at, uuid FROM events;
