-- Scheduling, ingest settings, stream key roles, API keys, transitions and audit.
--
-- Portable SQL, as in 0001: TEXT and BIGINT only (booleans are 0/1, lists are
-- comma-separated TEXT of values from fixed alphabets), times in Unix microseconds,
-- no auto-increment (keys are random TEXT ids or per-parent sequence numbers).

-- The lifecycle is scheduled → live → ended → archived, or cancelled; the
-- walking skeleton's "created" is what is now "scheduled".
UPDATE events SET state = 'scheduled' WHERE state = 'created';

ALTER TABLE events ADD COLUMN description TEXT;
-- Publishing window; NULL starts_at = open now, NULL ends_at = no end.
ALTER TABLE events ADD COLUMN starts_at BIGINT;
ALTER TABLE events ADD COLUMN ends_at BIGINT;
-- 'public' or 'entitled'.
ALTER TABLE events ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public';
-- What subscription plans include.
ALTER TABLE events ADD COLUMN category TEXT;
ALTER TABLE events ADD COLUMN ladder TEXT;
ALTER TABLE events ADD COLUMN part_target_ms BIGINT;
ALTER TABLE events ADD COLUMN dvr_window_secs BIGINT;
-- Allowed publisher protocols, e.g. 'rtmp,srt'; NULL = all.
ALTER TABLE events ADD COLUMN ingest_protocols TEXT;
ALTER TABLE events ADD COLUMN backup_ingest BIGINT NOT NULL DEFAULT 0;
-- Kept as given: ingest needs the passphrase itself to decrypt (SRT AES).
ALTER TABLE events ADD COLUMN srt_passphrase TEXT;
ALTER TABLE events ADD COLUMN srt_latency_ms BIGINT;
-- Kept as given, credentials included: ingest logs in with them.
ALTER TABLE events ADD COLUMN rtsp_url TEXT;
ALTER TABLE events ADD COLUMN rtsp_transport TEXT;
-- ISO 3166-1 alpha-2 lists, e.g. 'US,CA'; NULL = no list.
ALTER TABLE events ADD COLUMN geo_allow TEXT;
ALTER TABLE events ADD COLUMN geo_deny TEXT;
-- The principal the event belongs to (a broadcaster's); NULL = nobody in particular.
ALTER TABLE events ADD COLUMN owner TEXT;
ALTER TABLE events ADD COLUMN updated_at BIGINT;
-- For the reconciler: since when a live event has had no publisher; NULL while
-- one is connected.
ALTER TABLE events ADD COLUMN publisher_gone_at BIGINT;

CREATE INDEX events_state ON events (state);
CREATE INDEX events_starts_at ON events (starts_at);
CREATE INDEX events_owner ON events (owner);

CREATE TABLE event_tags (
    event_id    TEXT    NOT NULL REFERENCES events (id),
    tag         TEXT    NOT NULL,
    PRIMARY KEY (event_id, tag)
);

CREATE INDEX event_tags_tag ON event_tags (tag, event_id);

-- Every state change: from, to, when, why and who.
CREATE TABLE event_transitions (
    event_id    TEXT    NOT NULL REFERENCES events (id),
    -- 0, 1, 2, … per event, in order.
    seq         BIGINT  NOT NULL,
    from_state  TEXT,
    to_state    TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    -- 'api', 'publish', 'publisher_gone', 'window_closed', …
    cause       TEXT    NOT NULL,
    -- API key id, or 'system' for the control plane's own decisions.
    actor       TEXT    NOT NULL,
    PRIMARY KEY (event_id, seq)
);

-- Stream keys get a role; the digest becomes keyed (HMAC-SHA256 with the server's
-- key secret), so digests written by 0001's plain SHA-256 can never match again:
-- mark those keys revoked rather than leave them looking valid.
ALTER TABLE stream_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'primary';
ALTER TABLE stream_keys ADD COLUMN last_used_at BIGINT;
UPDATE stream_keys SET revoked_at = created_at WHERE revoked_at IS NULL;

-- Keys that call the API.
CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,
    -- Lowercase hex HMAC-SHA256 of the whole key; the key itself is never stored.
    key_hash    TEXT    NOT NULL UNIQUE,
    -- 'admin', 'ops', 'broadcaster', 'viewer-service'.
    role        TEXT    NOT NULL,
    -- Who the key acts for; a broadcaster's events belong to its principal.
    principal   TEXT    NOT NULL,
    label       TEXT,
    created_at  BIGINT  NOT NULL,
    -- API key id that created it; NULL for the bootstrap key.
    created_by  TEXT,
    revoked_at  BIGINT
);

-- Who did what, when.
CREATE TABLE audit_log (
    id          TEXT    PRIMARY KEY,
    at          BIGINT  NOT NULL,
    -- API key id, or 'system'.
    actor       TEXT    NOT NULL,
    -- The actor's role at the time, or 'system'.
    actor_role  TEXT    NOT NULL,
    -- 'event.create', 'event.cancel', 'stream_key.revoke', 'api_key.create', …
    action      TEXT    NOT NULL,
    -- 'event', 'stream_key', 'api_key', …
    target_kind TEXT    NOT NULL,
    target_id   TEXT    NOT NULL,
    -- A short JSON object with what changed; never a secret.
    detail      TEXT
);

CREATE INDEX audit_log_at_id ON audit_log (at, id);
