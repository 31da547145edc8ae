//! SQL for the event log and the per-link redirect rollups (`link_stats`
//! directly; the hourly, referrer and user-agent breakdowns through
//! `rollup_backlog`, which the analytics service's rollup job folds).

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::model::{Event, EventFilter, EventRecord};
use crate::paging::Page;
use crate::row_stream;

pub async fn insert(conn: &mut PgConnection, e: &EventRecord) -> Result<Event, sqlx::Error> {
    sqlx::query_as::<_, Event>(
        "INSERT INTO events (event_id, url_id, user_id, event_type, occurred_at, details)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, url_id, user_id, event_type, occurred_at, details",
    )
    .bind(e.event_id.to_string())
    .bind(e.url_id)
    .bind(e.user_id)
    .bind(&e.event_type)
    .bind(e.occurred_at)
    .bind(&e.details)
    .fetch_one(conn)
    .await
}

/// Events matching every given filter, by id. Built per filter set so each
/// query can use the `(filter, id)` index that serves it, for offset and
/// keyset (`id > after_id`) pages alike.
pub async fn list(
    conn: &mut PgConnection,
    filter: &EventFilter,
    page: Page,
) -> Result<Vec<Event>, sqlx::Error> {
    select("", filter, page)
        .build_query_as::<Event>()
        .fetch_all(conn)
        .await
}

/// Opens the `row_stream` cursor over every event matching the filters, by
/// id (the transaction's; read it with `RowStream`).
pub async fn declare_all(conn: &mut PgConnection, filter: &EventFilter) -> Result<(), sqlx::Error> {
    select(&row_stream::declare_prefix(), filter, Page::ALL)
        .build()
        .execute(conn)
        .await?;
    Ok(())
}

fn select(init: &str, filter: &EventFilter, page: Page) -> QueryBuilder<Postgres> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "{init}SELECT id, url_id, user_id, event_type, occurred_at, details FROM events WHERE TRUE"
    ));
    if let Some(url_id) = filter.url_id {
        q.push(" AND url_id = ").push_bind(url_id);
    }
    if let Some(user_id) = filter.user_id {
        q.push(" AND user_id = ").push_bind(user_id);
    }
    if let Some(event_type) = &filter.event_type {
        q.push(" AND event_type = ").push_bind(event_type.clone());
    }
    if let Some(after_id) = page.after_id {
        q.push(" AND id > ").push_bind(after_id);
    }
    q.push(" ORDER BY id");
    if let Some(limit) = page.limit {
        q.push(" LIMIT ").push_bind(limit);
    }
    if page.offset > 0 {
        q.push(" OFFSET ").push_bind(page.offset);
    }
    q
}

/// Counts one more redirect of a link (same transaction as the `redirect`
/// event row it counts): in the per-link rollups `link_stats` and
/// `link_stats_hourly` at once, and as a `rollup_backlog` row (agent and
/// referrer host classified from the event's `details`, as the click consumer
/// does) for the breakdowns.
pub async fn count_redirect(conn: &mut PgConnection, e: &EventRecord) -> Result<(), sqlx::Error> {
    let Some(url_id) = e.url_id else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO link_stats (url_id, redirect_count, last_redirect_at) VALUES ($1, 1, $2)
         ON CONFLICT (url_id) DO UPDATE SET redirect_count = link_stats.redirect_count + 1,
             last_redirect_at = GREATEST(link_stats.last_redirect_at, EXCLUDED.last_redirect_at)",
    )
    .bind(url_id)
    .bind(e.occurred_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO link_stats_hourly (url_id, hour, redirect_count)
         VALUES ($1, date_trunc('hour', $2, 'UTC'), 1)
         ON CONFLICT (url_id, hour) DO UPDATE SET redirect_count = link_stats_hourly.redirect_count + 1",
    )
    .bind(url_id)
    .bind(e.occurred_at)
    .execute(&mut *conn)
    .await?;
    let (agent, referrer) = shortline_shared::breakdown::of_details(&e.details);
    sqlx::query(
        "INSERT INTO rollup_backlog (url_id, occurred_at, referrer, browser, os, device, is_bot)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(url_id)
    .bind(e.occurred_at)
    .bind(referrer)
    .bind(agent.browser)
    .bind(agent.os)
    .bind(agent.device)
    .bind(agent.is_bot)
    .execute(conn)
    .await?;
    Ok(())
}
