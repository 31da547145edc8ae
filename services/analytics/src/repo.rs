//! The analytics service's SQL: click rows into `events`, `link_stats` and
//! `rollup_backlog` in one statement (counting only rows that were really
//! inserted), and the rollup job folding the backlog into the breakdowns.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use shortline_shared::events::Click;
use sqlx::PgPool;

use shortline_shared::breakdown::{classify, referrer_host};

/// What one write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// New event rows.
    pub inserted: u64,
    /// Clicks already stored (redelivered or published twice).
    pub duplicates: u64,
}

/// Column arrays for one `UNNEST`.
#[derive(Default)]
struct Columns {
    event_id: Vec<String>,
    url_id: Vec<i64>,
    user_id: Vec<i64>,
    occurred_at: Vec<DateTime<Utc>>,
    details: Vec<String>,
    browser: Vec<String>,
    os: Vec<String>,
    device: Vec<&'static str>,
    is_bot: Vec<bool>,
    referrer: Vec<String>,
}

/// Inserts `redirect` event rows for the clicks (`ON CONFLICT (event_id) DO
/// NOTHING`), adds the rows actually inserted to the per-link rollups
/// `link_stats` (total, last redirect) and `link_stats_hourly`, and appends
/// one `rollup_backlog` row for each of them (folded into the referrer and
/// user-agent breakdowns later by [`fold_backlog`]), in one statement (so one
/// transaction). A click seen before, in the database or earlier in `clicks`,
/// adds nothing.
pub async fn store_clicks(db: &PgPool, clicks: &[Click]) -> Result<Stored, sqlx::Error> {
    let mut seen = HashSet::with_capacity(clicks.len());
    let mut c = Columns::default();
    for click in clicks {
        let id = click.event_id.to_string();
        if !seen.insert(click.event_id) {
            continue;
        }
        let agent = classify(click.user_agent.as_deref());
        let mut details = json!({
            "user_agent": click.user_agent,
            "referrer": click.referrer,
            "short_code": click.short_code,
        });
        if let Some(ip) = &click.ip {
            details["ip"] = json!(ip);
        }
        c.event_id.push(id);
        c.url_id.push(click.url_id);
        c.user_id.push(click.user_id);
        c.occurred_at.push(click.occurred_at);
        c.details.push(details.to_string());
        c.browser.push(agent.browser);
        c.os.push(agent.os);
        c.device.push(agent.device);
        c.is_bot.push(agent.is_bot);
        c.referrer.push(referrer_host(click.referrer.as_deref()));
    }
    let inserted: i64 = sqlx::query_scalar(
        "WITH input AS (
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[],
                                  $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[], $10::text[])
                 AS r(event_id, url_id, user_id, occurred_at, details, browser, os, device, is_bot, referrer)
         ),
         ins AS (
             INSERT INTO events (event_id, url_id, user_id, event_type, occurred_at, details)
             SELECT event_id, url_id, user_id, 'redirect', occurred_at, details::jsonb FROM input
             ON CONFLICT (event_id) DO NOTHING
             RETURNING event_id
         ),
         fresh AS (
             SELECT i.* FROM input i JOIN ins USING (event_id)
         ),
         totals AS (
             INSERT INTO link_stats (url_id, redirect_count, last_redirect_at)
             SELECT url_id, count(*), max(occurred_at) FROM fresh GROUP BY url_id ORDER BY url_id
             ON CONFLICT (url_id) DO UPDATE
                 SET redirect_count = link_stats.redirect_count + EXCLUDED.redirect_count,
                     last_redirect_at = GREATEST(link_stats.last_redirect_at, EXCLUDED.last_redirect_at)
             RETURNING 1
         ),
         hourly AS (
             INSERT INTO link_stats_hourly (url_id, hour, redirect_count)
             SELECT url_id, date_trunc('hour', occurred_at, 'UTC'), count(*) FROM fresh
             GROUP BY 1, 2 ORDER BY 1, 2
             ON CONFLICT (url_id, hour) DO UPDATE
                 SET redirect_count = link_stats_hourly.redirect_count + EXCLUDED.redirect_count
             RETURNING 1
         ),
         backlog AS (
             INSERT INTO rollup_backlog (url_id, occurred_at, referrer, browser, os, device, is_bot)
             SELECT url_id, occurred_at, referrer, browser, os, device, is_bot FROM fresh
         )
         -- Data-modifying CTEs always run to completion, read or not.
         SELECT count(*) FROM ins",
    )
    .bind(&c.event_id)
    .bind(&c.url_id)
    .bind(&c.user_id)
    .bind(&c.occurred_at)
    .bind(&c.details)
    .bind(&c.browser)
    .bind(&c.os)
    .bind(&c.device)
    .bind(&c.is_bot)
    .bind(&c.referrer)
    .fetch_one(db)
    .await?;
    let inserted = inserted.max(0) as u64;
    Ok(Stored {
        inserted,
        duplicates: clicks.len() as u64 - inserted,
    })
}

/// Advisory-lock key (`pg_try_advisory_xact_lock`) that lets one rollup job
/// at a time, across every replica, fold the backlog.
const ROLLUP_LOCK: i64 = 0x5348_4c4e_524f_4c4c;

/// Takes up to `max_events` of the oldest `rollup_backlog` rows, adds them to
/// the daily breakdowns `link_stats_referrers` and `link_stats_agents`
/// (upserts in key order) and deletes exactly those rows, in one statement
/// under the rollup advisory lock (one transaction: a row is counted once or
/// not at all). `None` when another job holds the lock; otherwise the number
/// of backlog rows folded.
pub async fn fold_backlog(db: &PgPool, max_events: i64) -> Result<Option<u64>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(ROLLUP_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        tx.rollback().await?;
        return Ok(None);
    }
    // Hundreds of thousands of rows are grouped two ways: in memory, not in
    // temporary files, and with more time than the pool's statement timeout
    // (sized for requests) gives, or a large backlog could never be folded.
    sqlx::query("SET LOCAL work_mem = '64MB'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL statement_timeout = '300s'")
        .execute(&mut *tx)
        .await?;
    let folded: i64 = sqlx::query_scalar(
        "WITH taken AS (
             DELETE FROM rollup_backlog
             WHERE id IN (SELECT id FROM rollup_backlog ORDER BY id LIMIT $1)
             RETURNING url_id, occurred_at, referrer, browser, os, device, is_bot
         ),
         referrers AS (
             INSERT INTO link_stats_referrers (url_id, day, referrer, redirect_count)
             SELECT url_id, (occurred_at AT TIME ZONE 'UTC')::date, referrer, count(*) FROM taken
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
             ON CONFLICT (url_id, day, referrer) DO UPDATE
                 SET redirect_count = link_stats_referrers.redirect_count + EXCLUDED.redirect_count
         ),
         agents AS (
             INSERT INTO link_stats_agents (url_id, day, browser, os, device, is_bot, redirect_count)
             SELECT url_id, (occurred_at AT TIME ZONE 'UTC')::date, browser, os, device, is_bot, count(*)
             FROM taken GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
             ON CONFLICT (url_id, day, browser, os, device, is_bot) DO UPDATE
                 SET redirect_count = link_stats_agents.redirect_count + EXCLUDED.redirect_count
         )
         SELECT count(*) FROM taken",
    )
    .bind(max_events)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(folded.max(0) as u64))
}

/// Age in seconds of the oldest `rollup_backlog` row (`None`: empty).
pub async fn oldest_backlog_age(db: &PgPool) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM clock_timestamp() - created_at)::float8
         FROM rollup_backlog ORDER BY id LIMIT 1",
    )
    .fetch_optional(db)
    .await
}

/// One of the most redirected links of the last two hourly buckets.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TopLink {
    pub url_id: i64,
    pub short_code: String,
    pub redirects: i64,
}

/// The `limit` links with the most redirects in the current and the previous
/// hour (from `link_stats_hourly`), most redirected first.
pub async fn top_links(db: &PgPool, limit: i64) -> Result<Vec<TopLink>, sqlx::Error> {
    sqlx::query_as(
        "SELECT h.url_id, u.short_code, sum(h.redirect_count)::bigint AS redirects
         FROM link_stats_hourly h
         JOIN urls u ON u.id = h.url_id
         WHERE h.hour >= date_trunc('hour', now()) - interval '1 hour'
         GROUP BY h.url_id, u.short_code
         ORDER BY redirects DESC, h.url_id
         LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}
