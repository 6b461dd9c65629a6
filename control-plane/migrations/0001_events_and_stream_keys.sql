-- Events and their stream keys.
--
-- Portable SQL: the same file must run on SQLite (embedded) and PostgreSQL
-- (distributed), so only TEXT, BIGINT, plain constraints and plain indexes.
-- Times are BIGINT Unix microseconds (UTC): they order, compare and index the
-- same way on both databases.

CREATE TABLE events (
    -- Public event id, used in playback URLs.
    id          TEXT    PRIMARY KEY,
    title       TEXT    NOT NULL,
    -- Lifecycle state; the application owns the set of values so that later
    -- states do not need a table rebuild on SQLite.
    state       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- Newest-first keyset pagination walks (created_at, id) backwards.
CREATE INDEX events_created_at_id ON events (created_at, id);

CREATE TABLE stream_keys (
    id          TEXT    PRIMARY KEY,
    event_id    TEXT    NOT NULL REFERENCES events (id),
    -- Lowercase hex SHA-256 of the whole key; the key itself is never stored.
    key_hash    TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT
);

CREATE INDEX stream_keys_event_id ON stream_keys (event_id);
