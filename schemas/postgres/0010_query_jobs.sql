-- Analyses run as jobs (`POST /api/v1/projects/{id}/query-jobs`), and the cache of their results.
--
-- * A job is recorded `queued`, run by the query replica that accepted it (`running`), and ends
--   `done` (with its result), `failed` (with the error the synchronous route would have answered)
--   or `cancelled`. Every replica reads every job: a client may poll any of them.
-- * While it runs, its replica writes the job's progress (rows read, rows to read, from ClickHouse's
--   `system.processes`) and `heartbeat_at` about twice a second. A job whose heartbeat stopped (its
--   replica died) is failed by the next reader.
-- * Cancelling sets `cancel_requested`; the replica running the job sees it at its next heartbeat,
--   stops the analysis and kills its ClickHouse statements.
-- * `request_key` (SHA-256 of the kind and the request as the API parsed it) finds an identical job:
--   one queued or running is joined rather than started again; one done within the cache TTL
--   (CAIRN_QUERY_CACHE_TTL_SECONDS) answers at once. Deleting a person, changing an event or
--   loading sample data makes the project's results uncacheable (`cacheable = false`) and sets
--   the project's barrier (`query_cache_barriers`): a job started before it is neither joined nor
--   reused. A change goes through Kafka and the consumer, so its barrier lies a grace period
--   ahead (jobs started before the consumer applied it would read the old data).
-- * Only the user who started a job may cancel it (others who joined it keep it running).
-- * Jobs are deleted a day after they end (a project keeps at most its 1,000 latest).
CREATE TABLE query_jobs (
    id               UUID        PRIMARY KEY,
    project_id       BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    created_by       BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    kind             TEXT        NOT NULL CHECK (kind IN ('trends', 'funnels', 'retention')),
    request          JSONB       NOT NULL,
    request_key      TEXT        NOT NULL,
    status           TEXT        NOT NULL DEFAULT 'queued'
                                 CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    rows_read        BIGINT      NOT NULL DEFAULT 0,
    total_rows       BIGINT      NOT NULL DEFAULT 0,
    result           JSONB,
    error            JSONB,
    cancel_requested BOOLEAN     NOT NULL DEFAULT false,
    cacheable        BOOLEAN     NOT NULL DEFAULT true,
    runner           TEXT        NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    heartbeat_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ
);
CREATE INDEX query_jobs_key_idx ON query_jobs (project_id, request_key, created_at DESC);
CREATE INDEX query_jobs_active_idx ON query_jobs (created_by, project_id) WHERE status IN ('queued', 'running');
CREATE INDEX query_jobs_finished_idx ON query_jobs (finished_at);
CREATE INDEX query_jobs_project_idx ON query_jobs (project_id, created_at DESC);

CREATE TABLE query_cache_barriers (
    project_id BIGINT      PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    not_before TIMESTAMPTZ NOT NULL
);
