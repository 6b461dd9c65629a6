-- Entitlement: viewer accounts, subscription plans, subscriptions and per-event
-- purchases (pay-per-view).
--
-- Portable SQL, as in 0001 and 0002: TEXT and BIGINT only, times in Unix microseconds,
-- random TEXT ids.

CREATE TABLE accounts (
    id          TEXT    PRIMARY KEY,
    -- Lowercased; one account per address.
    email       TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL
);

-- Newest-first keyset pagination walks (created_at, id) backwards.
CREATE INDEX accounts_created_at_id ON accounts (created_at, id);

CREATE TABLE plans (
    id                       TEXT    PRIMARY KEY,
    name                     TEXT    NOT NULL,
    -- Sessions one account may watch at once under this plan; NULL = no limit.
    max_concurrent_sessions  BIGINT,
    created_at               BIGINT  NOT NULL
);

CREATE INDEX plans_created_at_id ON plans (created_at, id);

-- The event categories a plan includes.
CREATE TABLE plan_categories (
    plan_id     TEXT    NOT NULL REFERENCES plans (id),
    category    TEXT    NOT NULL,
    PRIMARY KEY (plan_id, category)
);

CREATE TABLE subscriptions (
    id           TEXT    PRIMARY KEY,
    account_id   TEXT    NOT NULL REFERENCES accounts (id),
    plan_id      TEXT    NOT NULL REFERENCES plans (id),
    -- 'active', 'past_due' or 'cancelled'; the payment provider's webhook moves it.
    state        TEXT    NOT NULL,
    valid_from   BIGINT  NOT NULL,
    -- NULL = open-ended.
    valid_until  BIGINT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

CREATE INDEX subscriptions_account_id ON subscriptions (account_id);

CREATE TABLE purchases (
    id          TEXT    PRIMARY KEY,
    account_id  TEXT    NOT NULL REFERENCES accounts (id),
    event_id    TEXT    NOT NULL REFERENCES events (id),
    created_at  BIGINT  NOT NULL,
    UNIQUE (account_id, event_id)
);
