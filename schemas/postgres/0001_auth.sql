-- Auth: users, organisations, memberships, projects, API keys and sessions.
--
-- Secrets are never stored: passwords as argon2id PHC strings, API keys, refresh tokens as
-- SHA-256 hex digests. A key's first characters (`display_prefix`) are kept so people can tell
-- their keys apart.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT        NOT NULL,
    name          TEXT        NOT NULL DEFAULT '',
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Emails are unique whatever their case.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE organizations (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    organization_id BIGINT      NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT        NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

CREATE TABLE projects (
    id              BIGSERIAL PRIMARY KEY,
    organization_id BIGINT      NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            TEXT        NOT NULL,
    timezone        TEXT        NOT NULL DEFAULT 'UTC',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX projects_organization_idx ON projects (organization_id);

-- Project write keys: public, capture only.
CREATE TABLE write_keys (
    id             BIGSERIAL PRIMARY KEY,
    project_id     BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name           TEXT        NOT NULL DEFAULT '',
    key_hash       TEXT        NOT NULL UNIQUE,
    display_prefix TEXT        NOT NULL,
    created_by     BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at   TIMESTAMPTZ,
    revoked_at     TIMESTAMPTZ
);
CREATE INDEX write_keys_project_idx ON write_keys (project_id);

-- Personal secret keys: query access on behalf of a user, limited to some projects (NULL: every
-- project the user can read) and some scopes.
CREATE TABLE personal_keys (
    id             BIGSERIAL PRIMARY KEY,
    user_id        BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT        NOT NULL DEFAULT '',
    key_hash       TEXT        NOT NULL UNIQUE,
    display_prefix TEXT        NOT NULL,
    project_ids    BIGINT[],
    scopes         TEXT[]      NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at   TIMESTAMPTZ,
    expires_at     TIMESTAMPTZ,
    revoked_at     TIMESTAMPTZ
);
CREATE INDEX personal_keys_user_idx ON personal_keys (user_id);

-- A login: the access tokens it issues carry its id (`sid`); logout revokes it. Refresh tokens
-- rotate: each use replaces the hash, and presenting an old one revokes the whole session.
CREATE TABLE sessions (
    id                   UUID PRIMARY KEY,
    user_id              BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_hash         TEXT        NOT NULL UNIQUE,
    previous_refresh_hash TEXT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    refreshed_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at           TIMESTAMPTZ NOT NULL,
    revoked_at           TIMESTAMPTZ,
    user_agent           TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_previous_refresh_idx ON sessions (previous_refresh_hash);
