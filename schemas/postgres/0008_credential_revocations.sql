-- Revocations (and other changes of rights), as a feed the services that cache credentials follow.
--
-- Capture and query cache what the auth service answers about a credential (CAIRN_AUTH_CACHE_TTL_SECS,
-- at most 60 s). So that a revoked credential stops working at once rather than when its cache
-- entry expires, every change that takes a right away records a row here, in the same transaction
-- (triggers, so no path forgets it: an API call, a cascade from an organisation's or a user's
-- deletion, a hand-written UPDATE):
--
-- * write_key    (a write key's id)    the key was revoked or deleted;
-- * project      (a project's id)      the project was deleted: its write keys, and every
--                                      principal's grant in it;
-- * personal_key (a personal key's id) the key was revoked, changed or deleted;
-- * session      (a session's uuid)    the login was revoked (logout, refresh-token reuse) or deleted;
-- * user         (a user's id)         the user's rights changed: a membership made, changed or
--                                      removed, a project made in one of their organisations, or
--                                      the user is gone.
--
-- Each insert notifies `cairn_revocations`; the auth service wakes the long polls of
-- GET /internal/v1/revocations, and the callers drop the cache entries the row names. The auth
-- service prunes rows older than a day; a caller that fell further behind drops its whole cache.
CREATE TABLE credential_revocations (
    seq        BIGSERIAL   PRIMARY KEY,
    kind       TEXT        NOT NULL CHECK (kind IN ('write_key', 'project', 'personal_key', 'session', 'user')),
    subject    TEXT        NOT NULL,
    revoked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The writing transaction: the feed's cursor is a snapshot's xmin, so a row whose transaction
    -- commits after a later one's (sequence order is not commit order) is still delivered.
    tx         XID8        NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX credential_revocations_tx_idx ON credential_revocations (tx);
CREATE INDEX credential_revocations_revoked_at_idx ON credential_revocations (revoked_at);

CREATE FUNCTION record_revocation(kind TEXT, subject TEXT) RETURNS void AS $$
BEGIN
    INSERT INTO credential_revocations (kind, subject) VALUES (kind, subject);
    PERFORM pg_notify('cairn_revocations', '');
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION write_key_revoked() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.revoked_at IS NULL THEN
            PERFORM record_revocation('write_key', OLD.id::text);
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL OR OLD.key_hash <> NEW.key_hash
       OR OLD.project_id <> NEW.project_id THEN
        PERFORM record_revocation('write_key', OLD.id::text);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER write_keys_revoked AFTER UPDATE OR DELETE ON write_keys
    FOR EACH ROW EXECUTE FUNCTION write_key_revoked();

CREATE FUNCTION personal_key_revoked() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM record_revocation('personal_key', OLD.id::text);
        RETURN OLD;
    END IF;
    -- Anything but the usage stamp may narrow what the key can do.
    IF (OLD.revoked_at, OLD.expires_at, OLD.key_hash, OLD.project_ids, OLD.scopes, OLD.user_id)
       IS DISTINCT FROM (NEW.revoked_at, NEW.expires_at, NEW.key_hash, NEW.project_ids, NEW.scopes, NEW.user_id) THEN
        PERFORM record_revocation('personal_key', OLD.id::text);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER personal_keys_revoked AFTER UPDATE OR DELETE ON personal_keys
    FOR EACH ROW EXECUTE FUNCTION personal_key_revoked();

CREATE FUNCTION session_revoked() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.revoked_at IS NULL THEN
            PERFORM record_revocation('session', OLD.id::text);
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
        PERFORM record_revocation('session', OLD.id::text);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER sessions_revoked AFTER UPDATE OF revoked_at OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION session_revoked();

CREATE FUNCTION project_revoked() RETURNS trigger AS $$
BEGIN
    PERFORM record_revocation('project', OLD.id::text);
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER projects_revoked AFTER DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION project_revoked();

-- Memberships: a removal or a new role takes rights away; a new membership, or a new project in
-- an organisation, adds some, and is recorded too, so that a cached principal does not answer 404
-- for a project its user just made.
CREATE FUNCTION membership_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM record_revocation('user', NEW.user_id::text);
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM record_revocation('user', OLD.user_id::text);
        RETURN OLD;
    END IF;
    IF OLD.role <> NEW.role OR OLD.user_id <> NEW.user_id OR OLD.organization_id <> NEW.organization_id THEN
        PERFORM record_revocation('user', OLD.user_id::text);
        PERFORM record_revocation('user', NEW.user_id::text);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER memberships_changed AFTER INSERT OR UPDATE OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION membership_changed();

CREATE FUNCTION project_created() RETURNS trigger AS $$
BEGIN
    INSERT INTO credential_revocations (kind, subject)
        SELECT 'user', m.user_id::text FROM memberships m WHERE m.organization_id = NEW.organization_id;
    PERFORM pg_notify('cairn_revocations', '');
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER projects_created AFTER INSERT ON projects
    FOR EACH ROW EXECUTE FUNCTION project_created();

CREATE FUNCTION user_revoked() RETURNS trigger AS $$
BEGIN
    PERFORM record_revocation('user', OLD.id::text);
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_revoked AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION user_revoked();
