-- event_changes: events updated or deleted after capture (`PUT`/`DELETE /api/v1/projects/{id}/events/{uuid}`).
--
-- A change travels like every write: query produces it to the events topic with the event's own
-- Kafka key (so it follows the event's creation in the same partition), and the consumer appends
-- the event's whole new version here. Nothing is ever mutated in place:
-- * ReplacingMergeTree(version) keyed by (project_id, uuid): the latest version of an event wins,
--   whatever the order parts are merged in; versions count 1, 2, … (the capture itself is 0, in
--   `events`). Fields in `events`' sorting key (the name, the time) may change: the key here is
--   the uuid alone.
-- * `deleted` marks a deletion (the row keeps the last fields, for `GET` to say what was deleted).
-- * `changed_at` and `change_id` (a UUIDv7) name the change that made the version. A change applies
--   only if it was requested after the one that made the current version, so a record the consumer
--   gets again (a crash before the commit, a replayed dead letter) is never applied twice and an
--   older change never overwrites a newer one, whatever partition or offset it comes from.
-- * `retain_until`: the latest time the event ever had (captured or changed; never decreasing).
--   The retention TTL applies to it, so a version (a deletion above all) outlives the captured row
--   in `events` and an expired change never brings an older version back.
-- * Analyses read `events` without the uuids present here, plus the non-deleted latest versions
--   from here (`EventsSource` in the query service); a project with no change reads `events`
--   alone.
-- * The retention TTL (CAIRN_EVENT_TTL_DAYS) applies here too, on `retain_until`.
CREATE TABLE IF NOT EXISTS event_changes
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
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, uuid)
SETTINGS non_replicated_deduplication_window = 10000;

-- Finding one event by its uuid (`GET …/events/{uuid}`, and the consumer reading the version a
-- change applies to): the uuid is last in `events`' sorting key, so without this index a lookup
-- reads every granule of the project. Parts written before this migration get the index when
-- merged (or by `ALTER TABLE events MATERIALIZE INDEX events_uuid`); until then they are read.
ALTER TABLE events ADD INDEX IF NOT EXISTS events_uuid uuid TYPE bloom_filter(0.001) GRANULARITY 1;
