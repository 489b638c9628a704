-- Sample data loaded into a project (`POST /api/v1/projects/{id}/sample-data`, the dashboard's
-- "Load sample data"): one row per project, written before the events are produced.
-- * A second load is refused once `finished_at` is set.
-- * A load that failed midway (Kafka refused, the service stopped) is completed by the next one:
--   it makes the same events again from `started_at` (the same uuids and times, so those already
--   stored collapse with them) and saves the views not saved yet.
CREATE TABLE sample_data_loads (
    project_id  BIGINT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ
);
