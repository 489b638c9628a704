-- The analyses added to the jobs (and the cache): stickiness, lifecycle, paths and sessions.
ALTER TABLE query_jobs DROP CONSTRAINT IF EXISTS query_jobs_kind_check;
ALTER TABLE query_jobs ADD CONSTRAINT query_jobs_kind_check
    CHECK (kind IN ('trends', 'funnels', 'retention', 'stickiness', 'lifecycle', 'paths', 'sessions'));
