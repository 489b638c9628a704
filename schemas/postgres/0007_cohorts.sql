-- Saved cohorts: a set of persons that can filter any analysis (`{"type": "cohort", "key": "id",
-- "value": <id>}`).
--
-- * Dynamic: `definition` holds person property filters and behaviour ("did `purchase` at least 2
--   times in the last 30 days"), all of which a person must meet; evaluated when queried, so a
--   cohort is always current.
-- * Static: `static_ids`, the distinct ids given (from a CSV); their persons, as identity makes them.
-- * `size` is the number of persons when last computed (on demand, or by query's periodic pass).
CREATE TABLE cohorts (
    id               BIGSERIAL   PRIMARY KEY,
    project_id       BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name             TEXT        NOT NULL,
    definition       JSONB,
    static_ids       TEXT[],
    created_by       BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    size             BIGINT,
    size_computed_at TIMESTAMPTZ,
    CHECK ((definition IS NULL) <> (static_ids IS NULL))
);
CREATE INDEX cohorts_project_idx ON cohorts (project_id, id);
