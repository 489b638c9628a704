-- Invitations, and every refresh token a session has used.
--
-- * An organisation admin invites an email; the person with that email accepts with the
--   invitation's one-time token (kept here as a SHA-256 digest only) once signed in. Nobody
--   becomes a member without accepting, and inviting says nothing about whether the email has an
--   account.
-- * A refresh token is used once. Each rotation records the digest it replaced, so that
--   presenting any earlier token of a session (not only the last one) reveals a stolen token
--   and revokes the session.

CREATE TABLE invitations (
    id              BIGSERIAL PRIMARY KEY,
    organization_id BIGINT      NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           TEXT        NOT NULL,
    role            TEXT        NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    token_hash      TEXT        NOT NULL UNIQUE,
    invited_by      BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    accepted_at     TIMESTAMPTZ,
    accepted_by     BIGINT      REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX invitations_organization_idx ON invitations (organization_id);

CREATE TABLE used_refresh_tokens (
    hash       TEXT PRIMARY KEY,
    session_id UUID        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    used_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX used_refresh_tokens_session_idx ON used_refresh_tokens (session_id);
