-- Saved insights (a query definition plus how to show it) and dashboards, per project.

CREATE TABLE insights (
    id          BIGSERIAL PRIMARY KEY,
    project_id  BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL,
    description TEXT        NOT NULL DEFAULT '',
    -- {"kind": "trends" | "funnels" | "retention", ...the query request}
    query       JSONB       NOT NULL,
    -- chart type, colours, legend: whatever the dashboard needs to draw it.
    display     JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_by  BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX insights_project_idx ON insights (project_id, updated_at DESC);

CREATE TABLE dashboards (
    id          BIGSERIAL PRIMARY KEY,
    project_id  BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL,
    description TEXT        NOT NULL DEFAULT '',
    created_by  BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX dashboards_project_idx ON dashboards (project_id, updated_at DESC);

-- An insight placed on a dashboard, with its position and size in the grid.
CREATE TABLE dashboard_tiles (
    dashboard_id BIGINT  NOT NULL REFERENCES dashboards (id) ON DELETE CASCADE,
    insight_id   BIGINT  NOT NULL REFERENCES insights (id) ON DELETE CASCADE,
    layout       JSONB   NOT NULL DEFAULT '{}'::jsonb,
    position     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dashboard_id, insight_id)
);
CREATE INDEX dashboard_tiles_insight_idx ON dashboard_tiles (insight_id);
