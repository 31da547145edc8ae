-- Daily breakdowns of redirects per link, for GET /urls/{id}/stats. The
-- analytics consumer maintains them in the same transaction as the `redirect`
-- event rows they count (only rows it actually inserted count, so a
-- redelivered click never counts twice), beside link_stats and
-- link_stats_hourly.

-- Referrers by host ('' when the request had no usable Referer: "direct").
CREATE TABLE link_stats_referrers (
    url_id          BIGINT NOT NULL,
    day             DATE   NOT NULL,
    referrer        TEXT   NOT NULL,
    redirect_count  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (url_id, day, referrer)
);

-- User agents by browser family, OS family and device class
-- (desktop, mobile, tablet, bot, other); bots are also flagged.
CREATE TABLE link_stats_agents (
    url_id          BIGINT  NOT NULL,
    day             DATE    NOT NULL,
    browser         TEXT    NOT NULL,
    os              TEXT    NOT NULL,
    device          TEXT    NOT NULL,
    is_bot          BOOLEAN NOT NULL,
    redirect_count  BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (url_id, day, browser, os, device, is_bot)
);
