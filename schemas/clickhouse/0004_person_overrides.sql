-- person_overrides: the distinct ids that belong to a person other than their own.
--
-- A distinct id's person is cityHash64 of the id itself (the `person` of events_by_person) until
-- an identity event moves it: the persons worker decides that in PostgreSQL and copies the moved
-- ids here. Analyses aggregate per distinct id first, then map each id's hash through this table
-- (an id without a row stays its own person), so events stored before a merge count for the
-- merged person with no rewrite of the events.
--
-- * One row per (project, id) survives: the highest version, PostgreSQL's count of the id's
--   moves. Readers take argMax(person_id, version) per id, so a copy written twice or out of order
--   reads the same before and after merges.
-- * Small: only ids that took part in a merge (typically the anonymous id of each login).
CREATE TABLE IF NOT EXISTS person_overrides
(
    project_id UInt64,
    id_hash    UInt64,
    person_id  UInt64,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, id_hash);
