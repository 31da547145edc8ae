-- Shortline initial schema: users, links (urls), the contract's event log, the
-- transactional outbox, and per-link redirect rollups.
--
-- Integrity notes:
-- * Users are soft-deleted (`deleted_at`) so that their links, which outlive
--   them, keep a meaningful `user_id`. Uniqueness of username and email holds
--   among live users only.
-- * `urls.user_id` and the event log's ids are deliberately not foreign keys:
--   imported data sets may reference rows that were skipped as duplicates, and
--   the event log is an append-only history that must never block a write.
--   The API checks existence before every write it makes itself.

CREATE TABLE users (
    id          BIGSERIAL PRIMARY KEY,
    username    TEXT        NOT NULL,
    email       TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX users_username_key ON users (username) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE deleted_at IS NULL;

CREATE TABLE urls (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT      NOT NULL,
    short_code    TEXT        NOT NULL,
    original_url  TEXT        NOT NULL,
    title         TEXT,
    is_active     BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at    TIMESTAMPTZ,
    CONSTRAINT urls_short_code_key UNIQUE (short_code)
);
CREATE INDEX urls_user_id_idx ON urls (user_id, id);
CREATE INDEX urls_is_active_idx ON urls (is_active, id);

-- The contract's event log. `id` is the contract's integer id; `event_id` is
-- the ULID that travels with the event through NATS and makes every insert
-- idempotent (`ON CONFLICT (event_id) DO NOTHING`).
CREATE TABLE events (
    id           BIGSERIAL PRIMARY KEY,
    event_id     TEXT        NOT NULL,
    url_id       BIGINT,
    user_id      BIGINT,
    event_type   TEXT        NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    details      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_details_is_object CHECK (jsonb_typeof(details) = 'object')
);
-- Every event-log filter is served by an index that also yields `id` order,
-- so filtered pages (offset or keyset) never sort.
CREATE INDEX events_url_id_idx ON events (url_id, id);
CREATE INDEX events_user_id_idx ON events (user_id, id);
CREATE INDEX events_event_type_idx ON events (event_type, id);
CREATE INDEX events_occurred_at_idx ON events (occurred_at);

-- Transactional outbox: written in the same transaction as the change it
-- describes, published to JetStream by the relay, deleted after the ack.
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    event_id    TEXT        NOT NULL UNIQUE,
    subject     TEXT        NOT NULL,
    payload     JSONB       NOT NULL,
    headers     JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts    INTEGER     NOT NULL DEFAULT 0,
    last_error  TEXT
);

-- Wake the relay as soon as a transaction that wrote outbox rows commits
-- (NOTIFY is delivered at commit, once per transaction and payload).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shortline_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Per-link redirect rollups, maintained in the same transaction as the
-- `redirect` event rows they count.
CREATE TABLE link_stats (
    url_id            BIGINT PRIMARY KEY,
    redirect_count    BIGINT      NOT NULL DEFAULT 0,
    last_redirect_at  TIMESTAMPTZ
);

CREATE TABLE link_stats_hourly (
    url_id          BIGINT      NOT NULL,
    hour            TIMESTAMPTZ NOT NULL,
    redirect_count  BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (url_id, hour)
);
