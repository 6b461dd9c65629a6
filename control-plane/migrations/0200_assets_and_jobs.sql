-- VOD assets made from archived events, and the jobs that build and delete them
-- (issue 11).
--
-- Portable SQL, as in 0001: TEXT and BIGINT only (booleans 0/1), times in Unix
-- microseconds, random TEXT ids.

CREATE TABLE assets (
    id                 TEXT    PRIMARY KEY,
    title              TEXT    NOT NULL,
    event_id           TEXT    NOT NULL REFERENCES events (id),
    -- The span asked for; NULL = from the first archived instant / to the event's end.
    source_start       BIGINT,
    source_end         BIGINT,
    -- 'segment' or 'frame'.
    precision          TEXT    NOT NULL,
    -- 'queued', 'processing', 'ready', 'failed', 'cancelled'; the application owns
    -- the set of values.
    state              TEXT    NOT NULL,
    -- 0 to 1000.
    progress_permille  BIGINT  NOT NULL DEFAULT 0,
    -- What the build is doing or waits for.
    stage              TEXT,
    -- Why it failed.
    error              TEXT,
    -- What was built: duration, the span covered, the renditions (a JSON array of
    -- {name, kind, codecs, width, height, bandwidth_bps, duration_ms}), a poster.
    duration_ms        BIGINT,
    range_start        BIGINT,
    range_end          BIGINT,
    renditions         TEXT,
    poster             BIGINT  NOT NULL DEFAULT 0,
    -- Its event's owner, when it was made.
    owner              TEXT,
    -- The event this is the automatic recording of; unique, so an event is recorded
    -- once. NULL for assets made through the API.
    recording_of       TEXT    UNIQUE,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    started_at         BIGINT,
    finished_at        BIGINT,
    -- Deleted through the API: gone from it, kept for the record.
    deleted_at         BIGINT
);

-- Newest-first keyset pagination walks (created_at, id) backwards.
CREATE INDEX assets_created_at_id ON assets (created_at, id);
CREATE INDEX assets_event_id ON assets (event_id);

CREATE TABLE jobs (
    id           TEXT    PRIMARY KEY,
    -- 'asset_build' or 'asset_delete'.
    kind         TEXT    NOT NULL,
    asset_id     TEXT    NOT NULL REFERENCES assets (id),
    -- 'queued', 'running', 'cancelling', 'done', 'failed', 'cancelled'.
    state        TEXT    NOT NULL,
    -- Runs so far (a claim counts one): a job whose process died runs again.
    attempts     BIGINT  NOT NULL DEFAULT 0,
    -- A queued job is not claimed before this (the backoff after a retryable failure).
    not_before   BIGINT  NOT NULL,
    -- The runner holding a running job, and until when; renewed while it runs. An
    -- expired lease lets another runner claim the job.
    lease_owner  TEXT,
    lease_until  BIGINT,
    -- The last failure's reason.
    last_error   TEXT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    finished_at  BIGINT
);

-- Claims look for due queued jobs and expired leases.
CREATE INDEX jobs_state_not_before ON jobs (state, not_before);
CREATE INDEX jobs_asset_id ON jobs (asset_id);
