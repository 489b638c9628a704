-- Scheduled exports of new events to files (`/api/v1/projects/{id}/event-exports`): each export
-- writes the events its project received in consecutive windows of `interval_seconds`, one file
-- per window, to a local directory or an S3-compatible bucket.
--
-- * A window is [cursor_ms, cursor_ms + interval) of the events' `received_at` (capture's clock,
--   the same on every redelivered copy of an event), closed only once every event received in it
--   is stored: the consumer group has consumed past it on every partition and capture's produce
--   time has passed. Its file is named by the window, and holds each event once.
-- * `cursor_ms` moves past a window only after its file is written (and fsynced, or PUT): a run
--   that dies in between writes the same window again, to the same name, with the same events.
-- * One query replica runs an export at a time: it takes a lease (`lease_owner`, `lease_until`),
--   renews it per window, and moves the cursor only if it still holds the lease and the cursor is
--   where it started.
CREATE TABLE event_exports (
    id               BIGSERIAL   PRIMARY KEY,
    project_id       BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name             TEXT        NOT NULL,
    destination      JSONB       NOT NULL,
    format           TEXT        NOT NULL CHECK (format IN ('jsonl', 'csv')),
    interval_seconds INTEGER     NOT NULL CHECK (interval_seconds BETWEEN 60 AND 86400),
    cursor_ms        BIGINT      NOT NULL,
    paused           BOOLEAN     NOT NULL DEFAULT false,
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ,
    files_written    BIGINT      NOT NULL DEFAULT 0,
    events_exported  BIGINT      NOT NULL DEFAULT 0,
    last_run_at      TIMESTAMPTZ,
    last_error       TEXT,
    created_by       BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX event_exports_project_idx ON event_exports (project_id, id);
CREATE INDEX event_exports_due_idx ON event_exports (lease_until) WHERE NOT paused;

-- The files written (the last of each window: a window written again replaces its row).
CREATE TABLE event_export_files (
    export_id        BIGINT      NOT NULL REFERENCES event_exports (id) ON DELETE CASCADE,
    window_start_ms  BIGINT      NOT NULL,
    window_end_ms    BIGINT      NOT NULL,
    location         TEXT        NOT NULL,
    events           BIGINT      NOT NULL,
    bytes            BIGINT      NOT NULL,
    written_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (export_id, window_start_ms)
);
