-- Deferred breakdowns. Upserting link_stats_referrers and link_stats_agents
-- for every click batch was close to half of the analytics consumer's
-- Postgres time (issue #4). Whoever inserts a `redirect` event row now
-- appends, in the same statement or transaction, one row here with what
-- those two breakdowns need (the user agent already classified, the referrer
-- already reduced to its host); the analytics service's rollup job folds
-- these rows into them and deletes them in one transaction, so each event
-- counts exactly once. The per-link rollups link_stats (total and last
-- redirect) and link_stats_hourly are still updated with the event row.
--
-- Append-only between two runs of the job, read whole and deleted by `id`:
-- no index beyond the primary key, so an append costs little.
CREATE TABLE rollup_backlog (
    id           BIGSERIAL   PRIMARY KEY,
    url_id       BIGINT      NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    referrer     TEXT        NOT NULL,
    browser      TEXT        NOT NULL,
    os           TEXT        NOT NULL,
    device       TEXT        NOT NULL,
    is_bot       BOOLEAN     NOT NULL,
    -- When the row was appended (its transaction's start): the job's
    -- deferral limit and the backlog-age gauge read the oldest one.
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
