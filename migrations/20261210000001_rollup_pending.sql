-- Redirect events recorded through the API's `POST /events` whose rollups the
-- analytics service has not applied yet.
--
-- The API writes such an event's row itself (so `GET /events` reads its own
-- writes), one row here and an outbox row carrying the event as a click, all
-- in one transaction. The analytics consumer folds the click into
-- `link_stats`, `link_stats_hourly` and `rollup_backlog` in the same statement
-- that deletes this row, and only if it deleted it: a redelivered or
-- republished message finds no row and adds nothing. `shortline-analytics
-- rebuild-rollups` counts every event row and empties this table in the same
-- transaction, so a message still in flight then adds nothing either.
--
-- Few rows, each living from the API's commit to the consumer's: no index
-- beyond the primary key.
CREATE TABLE rollup_pending (
    event_id    TEXT        PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
