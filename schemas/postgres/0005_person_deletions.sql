-- Deletion of a person on request (GDPR/CCPA): a tracked job per person.
--
-- * The query service records the job with the person's distinct ids as they are at the request
--   (DELETE /persons/{id}); while it is pending, analyses and the persons list leave those ids'
--   events out; once it is done, the events are gone.
-- * The consumer runs pending jobs: lightweight deletes of the ids' rows in every ClickHouse
--   table that holds them (events, events_by_person, person_property_ops, distinct_id_activity,
--   person_overrides), then the persons rows here; then the job is done. A failed attempt is
--   retried (attempts, last_error); jobs survive restarts.
-- * The job stays listed after it is done (what was deleted, when, by whom). Events of those ids
--   captured after the job ran are a new person's. Events captured before the request that were
--   still waiting in Kafka when the job ran arrive after it: deleting the person again removes them.
CREATE TABLE person_deletions (
    id            BIGSERIAL   PRIMARY KEY,
    project_id    BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    person_id     BIGINT      NOT NULL,
    distinct_ids  TEXT[]      NOT NULL,
    status        TEXT        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    requested_by  BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ,
    attempts      INT         NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE INDEX person_deletions_project_idx ON person_deletions (project_id, id);
CREATE INDEX person_deletions_pending_idx ON person_deletions (id) WHERE status = 'pending';
