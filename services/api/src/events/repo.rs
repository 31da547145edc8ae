//! SQL for the event log, and the `rollup_pending` mark of a `redirect`
//! event recorded here (its statistics are the analytics service's to
//! write).

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

/// How many events match the filters (paging aside).
pub async fn count(conn: &mut PgConnection, filter: &EventFilter) -> Result<i64, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT count(*) FROM events WHERE TRUE");
    filtered(&mut q, filter);
    q.build_query_scalar::<i64>().fetch_one(conn).await
}

fn select(init: &str, filter: &EventFilter, page: Page) -> QueryBuilder<Postgres> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "{init}SELECT id, url_id, user_id, event_type, occurred_at, details FROM events WHERE TRUE"
    ));
    filtered(&mut q, filter);
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

/// The `AND`s of the filters.
fn filtered(q: &mut QueryBuilder<Postgres>, filter: &EventFilter) {
    if let Some(url_id) = filter.url_id {
        q.push(" AND url_id = ").push_bind(url_id);
    }
    if let Some(user_id) = filter.user_id {
        q.push(" AND user_id = ").push_bind(user_id);
    }
    if let Some(event_type) = &filter.event_type {
        q.push(" AND event_type = ").push_bind(event_type.clone());
    }
}

/// Marks a `redirect` event row as not yet in the link's statistics (same
/// transaction as the row): the analytics consumer adds it to them when it
/// claims this mark, which it does once.
pub async fn mark_rollup_pending(
    conn: &mut PgConnection,
    event_id: &ulid::Ulid,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO rollup_pending (event_id) VALUES ($1)")
        .bind(event_id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}
