//! The analytics service's SQL. The service is the only writer of the
//! per-link read models: click rows into `events` together with
//! `link_stats`, `link_stats_hourly` and `rollup_backlog` in one statement
//! (counting only rows that were really inserted); `redirect` events the
//! write API recorded into the same rollups (once, claiming their
//! `rollup_pending` row); the rollup job folding the backlog into the
//! breakdowns. `rebuild` recomputes all of them from the event rows.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use shortline_shared::events::Click;
use sqlx::{PgConnection, PgPool};

use crate::breakdown::{classify, referrer_host};

/// What one write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// Clicks counted in the rollups now (new event rows, or recorded events
    /// folded for the first time).
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

/// Which clicks a write takes: the redirect service's, whose event rows it
/// inserts, or the write API's recorded `redirect` events, whose rows exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Clicks from the redirect service: insert their event rows.
    Redirects,
    /// Events recorded through `POST /events`: their rows exist.
    Recorded,
}

/// The rollups of the clicks in `fresh` (the ones this statement adds):
/// `link_stats` (total, last redirect), `link_stats_hourly` and one
/// `rollup_backlog` row each. Shared by both heads below, so a click counts
/// the same way whoever recorded its row.
macro_rules! rollups_of_fresh {
    () => {
        "totals AS (
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
         "
    };
}

/// The clicks as one `UNNEST` (the binds of [`store_clicks`]).
macro_rules! clicks_input {
    () => {
        "WITH input AS (
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[],
                                  $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[], $10::text[])
                 AS r(event_id, url_id, user_id, occurred_at, details, browser, os, device, is_bot, referrer)
         ),
         "
    };
}

/// Redirect clicks: the event rows this statement really inserts are fresh.
const STORE_CLICKS: &str = concat!(
    clicks_input!(),
    "ins AS (
             INSERT INTO events (event_id, url_id, user_id, event_type, occurred_at, details)
             SELECT event_id, url_id, user_id, 'redirect', occurred_at, details::jsonb FROM input
             ON CONFLICT (event_id) DO NOTHING
             RETURNING event_id
         ),
         fresh AS (
             SELECT i.* FROM input i JOIN ins USING (event_id)
         ),
         ",
    rollups_of_fresh!(),
    "SELECT count(*) FROM ins"
);

/// Recorded events: the `rollup_pending` rows this statement really deletes
/// are fresh (the event rows are the API's and stay as they are).
const STORE_RECORDED: &str = concat!(
    clicks_input!(),
    "claimed AS (
             DELETE FROM rollup_pending WHERE event_id IN (SELECT event_id FROM input)
             RETURNING event_id
         ),
         fresh AS (
             SELECT i.* FROM input i JOIN claimed USING (event_id)
         ),
         ",
    rollups_of_fresh!(),
    "SELECT count(*) FROM claimed"
);

/// Inserts `redirect` event rows for the clicks (`ON CONFLICT (event_id) DO
/// NOTHING`), adds the rows actually inserted to the per-link rollups
/// `link_stats` (total, last redirect) and `link_stats_hourly`, and appends
/// one `rollup_backlog` row for each of them (folded into the referrer and
/// user-agent breakdowns later by [`fold_backlog`]), in one statement (so one
/// transaction). A click seen before, in the database or earlier in `clicks`,
/// adds nothing.
pub async fn store_clicks(db: &PgPool, clicks: &[Click]) -> Result<Stored, sqlx::Error> {
    store(db, clicks, Source::Redirects).await
}

/// Adds `redirect` events the write API recorded (their rows exist, each
/// with a `rollup_pending` row) to the same rollups as [`store_clicks`], in
/// one statement: exactly the events whose `rollup_pending` row it deletes,
/// so a redelivered message, or one whose event `rebuild-rollups` has
/// counted already, adds nothing.
pub async fn fold_recorded(db: &PgPool, clicks: &[Click]) -> Result<Stored, sqlx::Error> {
    store(db, clicks, Source::Recorded).await
}

/// Writes clicks of either kind (see [`store_clicks`], [`fold_recorded`]).
pub async fn store(db: &PgPool, clicks: &[Click], source: Source) -> Result<Stored, sqlx::Error> {
    let mut seen = HashSet::with_capacity(clicks.len());
    let mut c = Columns::default();
    for click in clicks {
        let id = click.event_id.to_string();
        if !seen.insert(click.event_id) {
            continue;
        }
        let agent = classify(click.user_agent.as_deref());
        // Only inserted rows keep their details; recorded rows have theirs.
        let details = match source {
            Source::Redirects => {
                let mut details = json!({
                    "user_agent": click.user_agent,
                    "referrer": click.referrer,
                    "short_code": click.short_code,
                });
                if let Some(ip) = &click.ip {
                    details["ip"] = json!(ip);
                }
                if let Some(outcome) = &click.outcome {
                    details["outcome"] = json!(outcome);
                }
                details.to_string()
            }
            Source::Recorded => String::new(),
        };
        c.event_id.push(id);
        c.url_id.push(click.url_id);
        c.user_id.push(click.user_id);
        c.occurred_at.push(click.occurred_at);
        c.details.push(details);
        c.browser.push(agent.browser);
        c.os.push(agent.os);
        c.device.push(agent.device.as_str());
        c.is_bot.push(agent.is_bot);
        c.referrer.push(referrer_host(click.referrer.as_deref()));
    }
    let sql = match source {
        Source::Redirects => STORE_CLICKS,
        Source::Recorded => STORE_RECORDED,
    };
    let stored: i64 = sqlx::query_scalar(sql)
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
    let inserted = stored.max(0) as u64;
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

/// The `user_agent` / `referrer` of a `redirect` event row's `details` as
/// its breakdowns read them: the string, or `''` when absent or not a
/// string (which classify as an absent one).
macro_rules! details_user_agent {
    () => {
        "coalesce(CASE WHEN jsonb_typeof(details->'user_agent') = 'string' THEN details->>'user_agent' END, '')"
    };
}
macro_rules! details_referrer {
    () => {
        "coalesce(CASE WHEN jsonb_typeof(details->'referrer') = 'string' THEN details->>'referrer' END, '')"
    };
}
/// The event rows the rollups count.
macro_rules! counted {
    () => {
        "event_type = 'redirect' AND url_id IS NOT NULL"
    };
}
/// Distinct user agents or referrers classified per round trip (in the
/// `FETCH` below).
const CLASSIFY_CHUNK: usize = 10_000;

/// What [`rebuild_rollups`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// `redirect` event rows counted.
    pub events: i64,
    /// Links with at least one of them (`link_stats` rows).
    pub links: i64,
    /// Distinct user agents and referrers classified.
    pub user_agents: u64,
    pub referrers: u64,
}

/// Recomputes every read model of the analytics service from the event
/// rows, in one transaction: `link_stats` (total, last redirect),
/// `link_stats_hourly`, and the daily referrer and user-agent breakdowns
/// (classified here, as the consumer classifies clicks); `rollup_backlog`
/// and `rollup_pending` are emptied, as every event they stand for is
/// counted. Idempotent: a second run writes the same rows.
///
/// It holds the rollup job's advisory lock (waiting for a fold in progress)
/// and locks the rollup tables against writes (`EXCLUSIVE`: readers go on,
/// and see the old numbers until the commit), so consumer writes and `POST
/// /events` of `redirect` events wait for it; they then add only events the
/// rebuild did not see. A deadlock with a consumer write is retried.
pub async fn rebuild_rollups(db: &PgPool) -> Result<Rebuilt, sqlx::Error> {
    let mut attempt = 0;
    loop {
        match rebuild_once(db).await {
            Err(sqlx::Error::Database(e))
                if attempt < 3 && matches!(e.code().as_deref(), Some("40P01" | "40001")) =>
            {
                attempt += 1;
                tracing::warn!(attempt, "rollup rebuild lost a lock race; retrying");
            }
            other => return other,
        }
    }
}

async fn rebuild_once(db: &PgPool) -> Result<Rebuilt, sqlx::Error> {
    let mut tx = db.begin().await?;
    // A restored database can hold millions of events: no request-sized
    // statement timeout here.
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL work_mem = '64MB'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ROLLUP_LOCK)
        .execute(&mut *tx)
        .await?;
    // In the order the consumer's statements take them (see `store`), so
    // that they queue behind the rebuild rather than deadlock with it.
    sqlx::query(
        "LOCK TABLE rollup_pending, link_stats, link_stats_hourly, rollup_backlog,
                    link_stats_referrers, link_stats_agents IN EXCLUSIVE MODE",
    )
    .execute(&mut *tx)
    .await?;
    for delete in [
        "DELETE FROM link_stats",
        "DELETE FROM link_stats_hourly",
        "DELETE FROM rollup_backlog",
        "DELETE FROM rollup_pending",
        "DELETE FROM link_stats_referrers",
        "DELETE FROM link_stats_agents",
    ] {
        sqlx::query(delete).execute(&mut *tx).await?;
    }
    let (events, links): (i64, i64) = sqlx::query_as(concat!(
        "WITH totals AS (
             INSERT INTO link_stats (url_id, redirect_count, last_redirect_at)
             SELECT url_id, count(*), max(occurred_at) FROM events WHERE ",
        counted!(),
        " GROUP BY url_id
             RETURNING redirect_count
         )
         SELECT coalesce(sum(redirect_count), 0)::bigint, count(*) FROM totals"
    ))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(concat!(
        "INSERT INTO link_stats_hourly (url_id, hour, redirect_count)
         SELECT url_id, date_trunc('hour', occurred_at, 'UTC'), count(*) FROM events WHERE ",
        counted!(),
        " GROUP BY 1, 2"
    ))
    .execute(&mut *tx)
    .await?;

    // Each distinct user agent and referrer is classified once (in Rust, as
    // the consumer does), into temporary tables the breakdowns join.
    sqlx::query(
        "CREATE TEMPORARY TABLE rebuild_agents (
             user_agent TEXT PRIMARY KEY, browser TEXT, os TEXT, device TEXT, is_bot BOOLEAN
         ) ON COMMIT DROP",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "CREATE TEMPORARY TABLE rebuild_referrers (referrer TEXT PRIMARY KEY, host TEXT)
         ON COMMIT DROP",
    )
    .execute(&mut *tx)
    .await?;
    let user_agents = classify_distinct(&mut tx, Distinct::UserAgents).await?;
    let referrers = classify_distinct(&mut tx, Distinct::Referrers).await?;
    sqlx::query(concat!(
        "INSERT INTO link_stats_agents (url_id, day, browser, os, device, is_bot, redirect_count)
         SELECT e.url_id, (e.occurred_at AT TIME ZONE 'UTC')::date, a.browser, a.os, a.device,
                a.is_bot, count(*)
         FROM events e JOIN rebuild_agents a ON a.user_agent = ",
        details_user_agent!(),
        " WHERE ",
        counted!(),
        " GROUP BY 1, 2, 3, 4, 5, 6"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(concat!(
        "INSERT INTO link_stats_referrers (url_id, day, referrer, redirect_count)
         SELECT e.url_id, (e.occurred_at AT TIME ZONE 'UTC')::date, r.host, count(*)
         FROM events e JOIN rebuild_referrers r ON r.referrer = ",
        details_referrer!(),
        " WHERE ",
        counted!(),
        " GROUP BY 1, 2, 3"
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Rebuilt {
        events,
        links,
        user_agents,
        referrers,
    })
}

/// What [`classify_distinct`] classifies.
#[derive(Debug, Clone, Copy)]
enum Distinct {
    UserAgents,
    Referrers,
}

/// Reads the distinct user agents or referrers of the counted event rows
/// through a cursor, `CLASSIFY_CHUNK` at a time, and stores each classified
/// into its temporary table; returns how many there were.
async fn classify_distinct(conn: &mut PgConnection, what: Distinct) -> Result<u64, sqlx::Error> {
    let declare = match what {
        Distinct::UserAgents => concat!(
            "DECLARE rebuild_distinct NO SCROLL CURSOR FOR SELECT DISTINCT ",
            details_user_agent!(),
            " FROM events WHERE ",
            counted!()
        ),
        Distinct::Referrers => concat!(
            "DECLARE rebuild_distinct NO SCROLL CURSOR FOR SELECT DISTINCT ",
            details_referrer!(),
            " FROM events WHERE ",
            counted!()
        ),
    };
    // Not cached prepared statements: the cursor is declared anew each time.
    sqlx::query(declare)
        .persistent(false)
        .execute(&mut *conn)
        .await?;
    let mut total = 0;
    loop {
        let chunk: Vec<String> = sqlx::query_scalar("FETCH 10000 FROM rebuild_distinct")
            .persistent(false)
            .fetch_all(&mut *conn)
            .await?;
        let last = chunk.len() < CLASSIFY_CHUNK;
        total += chunk.len() as u64;
        match what {
            Distinct::UserAgents => {
                let agents: Vec<_> = chunk.iter().map(|a| classify(Some(a))).collect();
                sqlx::query(
                    "INSERT INTO rebuild_agents (user_agent, browser, os, device, is_bot)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[])",
                )
                .bind(&chunk)
                .bind(agents.iter().map(|a| a.browser.as_str()).collect::<Vec<_>>())
                .bind(agents.iter().map(|a| a.os.as_str()).collect::<Vec<_>>())
                .bind(agents.iter().map(|a| a.device.as_str()).collect::<Vec<_>>())
                .bind(agents.iter().map(|a| a.is_bot).collect::<Vec<_>>())
                .execute(&mut *conn)
                .await?;
            }
            Distinct::Referrers => {
                let hosts: Vec<String> = chunk.iter().map(|r| referrer_host(Some(r))).collect();
                sqlx::query(
                    "INSERT INTO rebuild_referrers (referrer, host)
                     SELECT * FROM UNNEST($1::text[], $2::text[])",
                )
                .bind(&chunk)
                .bind(&hosts)
                .execute(&mut *conn)
                .await?;
            }
        }
        if last {
            break;
        }
    }
    sqlx::query("CLOSE rebuild_distinct")
        .execute(&mut *conn)
        .await?;
    Ok(total)
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
