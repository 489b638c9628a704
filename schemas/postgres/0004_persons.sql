-- Persons (issue 20): which distinct ids belong to one person, decided by the persons worker.
--
-- * A distinct id that never took part in an identity event is its own person, with no row here:
--   its person id is ClickHouse's cityHash64 of the id (cairn_persons::id_hash), so queries need
--   no lookup for it. Rows exist for persons an identity event touched.
-- * Person ids are unsigned 64-bit hashes, kept in BIGINT with the same bits (two's complement).
-- * The worker decides one project's identity events at a time (a transaction-scoped advisory
--   lock per project), so that a merge, which touches two ids on different Kafka partitions,
--   never races another decision on the same persons.
-- * Each decision is recorded by its event's uuid: a record delivered again is decided once.
-- * The ids a decision moved are written to an outbox in the same transaction; the worker copies
--   them into ClickHouse's person_overrides and then deletes them, so a crash between the two
--   stores loses nothing (the copy is idempotent: the row with the highest version wins).

CREATE TABLE persons (
    project_id  BIGINT      NOT NULL,
    id          BIGINT      NOT NULL,
    -- An identified person (a user id was asserted for it) is never merged into another by an
    -- event (cairn_persons::identity).
    identified  BOOLEAN     NOT NULL DEFAULT false,
    -- The time of the earliest identity event that touched it.
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, id)
);

CREATE TABLE person_distinct_ids (
    project_id  BIGINT NOT NULL,
    distinct_id TEXT   NOT NULL,
    person_id   BIGINT NOT NULL,
    -- Raised each time the id moves to another person: the override's version in ClickHouse.
    version     BIGINT NOT NULL,
    PRIMARY KEY (project_id, distinct_id)
);
CREATE INDEX person_distinct_ids_person_idx ON person_distinct_ids (project_id, person_id);

CREATE TABLE identity_decisions (
    project_id  BIGINT      NOT NULL,
    event_uuid  UUID        NOT NULL,
    -- identify, alias or merge_dangerously
    kind        TEXT        NOT NULL,
    target      TEXT        NOT NULL,
    source      TEXT,
    -- unchanged, illegal_id, identify, join, merge or refused
    decision    TEXT        NOT NULL,
    -- The person the target id belongs to after the decision.
    person_id   BIGINT      NOT NULL,
    event_time  TIMESTAMPTZ NOT NULL,
    decided_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, event_uuid)
);

CREATE TABLE person_overrides_outbox (
    seq         BIGSERIAL PRIMARY KEY,
    project_id  BIGINT NOT NULL,
    id_hash     BIGINT NOT NULL,
    person_id   BIGINT NOT NULL,
    version     BIGINT NOT NULL
);

-- Whether $merge_dangerously may merge two identified persons (write keys are public: off unless
-- a project's admin turns it on).
ALTER TABLE projects ADD COLUMN allow_merge_dangerously BOOLEAN NOT NULL DEFAULT false;
