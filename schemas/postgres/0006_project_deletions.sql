-- Deleting a project deletes its events (tracked, asynchronous).
--
-- * Every deletion of a project row — DELETE /projects/{id}, or its organisation's deletion
--   cascading to it — records a job here, in the same transaction (a trigger), so no path forgets
--   it. The project's write keys go with the row: capture stops accepting them once its cache of
--   resolved keys expires (CAIRN_AUTH_CACHE_TTL_SECS, at most 60 s).
-- * The consumer runs the job: lightweight deletes of the project's rows in every ClickHouse table,
--   and of its persons in PostgreSQL. It runs it twice, the second time after
--   CAIRN_CONSUMER_PROJECT_DELETION_REPEAT_MS, to take the events that capture accepted within its
--   cache window or that were still waiting in Kafka at the first pass.
CREATE TABLE project_deletions (
    id           BIGSERIAL   PRIMARY KEY,
    project_id   BIGINT      NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status       TEXT        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    passes       INT         NOT NULL DEFAULT 0,
    not_before   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ,
    attempts     INT         NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX project_deletions_pending_idx ON project_deletions (not_before) WHERE status = 'pending';

CREATE FUNCTION record_project_deletion() RETURNS trigger AS $$
BEGIN
    INSERT INTO project_deletions (project_id) VALUES (OLD.id);
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER projects_deleted AFTER DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION record_project_deletion();
