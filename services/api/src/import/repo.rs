//! The importer's SQL: batched `INSERT … SELECT … FROM UNNEST(…) ON CONFLICT
//! DO NOTHING` for each CSV shape (the bare `ON CONFLICT` covers every
//! unique index, the partial ones on live users included, and duplicates
//! inside one statement: the first row wins), and moving the id sequences
//! past imported ids.

use sqlx::{PgConnection, PgPool};

use super::tables::{EventBatch, UrlBatch, UserBatch};

/// Users, ids kept (or drawn from the sequence); returns the rows inserted.
pub(super) async fn insert_users(
    conn: &mut PgConnection,
    b: &UserBatch,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO users (id, username, email, created_at)
         SELECT COALESCE(r.id, nextval(pg_get_serial_sequence('users', 'id')::regclass)),
                r.username, r.email, COALESCE(r.created_at, now())
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::timestamptz[])
              AS r(id, username, email, created_at)
         ON CONFLICT DO NOTHING",
    )
    .bind(&b.ids)
    .bind(&b.usernames)
    .bind(&b.emails)
    .bind(&b.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Links, ids kept (or drawn from the sequence); returns the rows inserted.
pub(super) async fn insert_urls(conn: &mut PgConnection, b: &UrlBatch) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO urls (id, user_id, short_code, original_url, title, is_active, created_at, updated_at,
                           redirect_type, expires_at, max_clicks, fallback_url, forward_query, rules)
         SELECT COALESCE(r.id, nextval(pg_get_serial_sequence('urls', 'id')::regclass)),
                r.user_id, r.short_code, r.original_url, r.title, r.is_active,
                COALESCE(r.created_at, now()), COALESCE(r.updated_at, r.created_at, now()),
                r.redirect_type, r.expires_at, r.max_clicks, r.fallback_url, r.forward_query,
                r.rules::jsonb
         FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::boolean[],
                     $7::timestamptz[], $8::timestamptz[], $9::smallint[], $10::timestamptz[],
                     $11::bigint[], $12::text[], $13::boolean[], $14::text[])
              AS r(id, user_id, short_code, original_url, title, is_active, created_at, updated_at,
                   redirect_type, expires_at, max_clicks, fallback_url, forward_query, rules)
         ON CONFLICT DO NOTHING",
    )
    .bind(&b.ids)
    .bind(&b.user_ids)
    .bind(&b.short_codes)
    .bind(&b.original_urls)
    .bind(&b.titles)
    .bind(&b.is_active)
    .bind(&b.created_at)
    .bind(&b.updated_at)
    .bind(&b.redirect_types)
    .bind(&b.expires_at)
    .bind(&b.max_clicks)
    .bind(&b.fallback_urls)
    .bind(&b.forward_query)
    .bind(&b.rules)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Event rows, CSV ids and seeded ULIDs kept, in file order; returns the rows
/// inserted. Rows only: the statistics of `redirect` events are the
/// analytics service's to compute (`shortline-analytics rebuild-rollups`).
pub(super) async fn insert_events(
    conn: &mut PgConnection,
    b: &EventBatch,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO events (id, event_id, url_id, user_id, event_type, occurred_at, details)
         SELECT id, event_id, url_id, user_id, event_type, occurred_at, details::jsonb
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                     $6::timestamptz[], $7::text[]) WITH ORDINALITY
              AS r(id, event_id, url_id, user_id, event_type, occurred_at, details, n)
         ORDER BY n
         ON CONFLICT DO NOTHING",
    )
    .bind(&b.ids)
    .bind(&b.event_ids)
    .bind(&b.url_ids)
    .bind(&b.user_ids)
    .bind(&b.event_types)
    .bind(&b.occurred_at)
    .bind(&b.details)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// A table whose `id` sequence an import moves.
#[derive(Debug, Clone, Copy)]
pub(super) enum SequenceOf {
    Users,
    Urls,
    Events,
}

impl SequenceOf {
    /// `LOCK TABLE` statement for the table.
    fn lock_sql(self) -> &'static str {
        match self {
            SequenceOf::Users => "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE",
            SequenceOf::Urls => "LOCK TABLE urls IN SHARE ROW EXCLUSIVE MODE",
            SequenceOf::Events => "LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE",
        }
    }

    /// Moves the sequence to the largest id up to [`MAX_IMPORTED_ID`]
    /// (written out in the SQL), never backwards.
    fn setval_sql(self) -> &'static str {
        match self {
            SequenceOf::Users => {
                "SELECT setval(s.seq, GREATEST((SELECT max(id) FROM users WHERE id <= 9007199254740991), pg_sequence_last_value(s.seq), 1))
                 FROM (SELECT pg_get_serial_sequence('users', 'id')::regclass AS seq) s"
            }
            SequenceOf::Urls => {
                "SELECT setval(s.seq, GREATEST((SELECT max(id) FROM urls WHERE id <= 9007199254740991), pg_sequence_last_value(s.seq), 1))
                 FROM (SELECT pg_get_serial_sequence('urls', 'id')::regclass AS seq) s"
            }
            SequenceOf::Events => {
                "SELECT setval(s.seq, GREATEST((SELECT max(id) FROM events WHERE id <= 9007199254740991), pg_sequence_last_value(s.seq), 1))
                 FROM (SELECT pg_get_serial_sequence('events', 'id')::regclass AS seq) s"
            }
        }
    }
}

/// Moves a table's id sequence past its largest id, exactly: a short
/// transaction takes a lock that waits for in-flight writers and holds off
/// new inserts (which draw from the sequence) while it reads `max(id)` and
/// sets the sequence, which never moves backwards. If the lock is not granted
/// within 2 s (a long writer), it falls back to the same `setval` unlocked,
/// where a concurrent `nextval` racing the one statement could still be
/// handed an id that is about to be reused.
pub(super) async fn move_sequence_past_ids(
    db: &PgPool,
    table: SequenceOf,
) -> Result<i64, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL lock_timeout = '2s'")
        .execute(&mut *tx)
        .await?;
    match sqlx::query(table.lock_sql()).execute(&mut *tx).await {
        Ok(_) => {
            let value = sqlx::query_scalar::<_, i64>(table.setval_sql())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(value)
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
            drop(tx);
            tracing::warn!(
                ?table,
                "id sequence lock not granted in 2 s; moving the sequence without it"
            );
            let mut conn = db.acquire().await?;
            bump_sequence_unlocked(&mut conn, table).await
        }
        Err(e) => Err(e),
    }
}

/// The same `setval` without the lock (inside the caller's transaction,
/// where `max(id)` includes its own uncommitted rows).
pub(super) async fn bump_sequence_unlocked(
    conn: &mut PgConnection,
    table: SequenceOf,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(table.setval_sql())
        .fetch_one(conn)
        .await
}

/// A link exported from another shortener, unless its code is taken on its
/// domain (`None` then); its id when inserted.
/// What an imported link gets beyond its export row.
pub(super) struct ForeignRow<'a> {
    pub tags: &'a [String],
    pub user_id: crate::ids::UserId,
    pub domain_id: Option<crate::ids::DomainId>,
    /// `DEFAULT_REDIRECT_TYPE` (exports carry none).
    pub redirect_type: i16,
}

pub(super) async fn insert_foreign_link(
    conn: &mut PgConnection,
    link: &super::foreign::ForeignLink,
    row: &ForeignRow<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO urls (user_id, short_code, original_url, title, created_at, updated_at,
                           domain_id, imported_visits, tags, redirect_type)
         VALUES ($1, $2, $3, $4, COALESCE($5, now()), COALESCE($5, now()), $6, $7, $8, $9)
         ON CONFLICT ((COALESCE(domain_id, 0)), short_code) DO NOTHING
         RETURNING id",
    )
    .bind(row.user_id)
    .bind(&link.code)
    .bind(&link.long_url)
    .bind(link.title.as_deref())
    .bind(link.created_at)
    .bind(row.domain_id)
    .bind(link.visits.unwrap_or(0))
    .bind(row.tags)
    .bind(row.redirect_type)
    .fetch_optional(conn)
    .await
}

/// The `created` event of an imported link, at its original creation time.
pub(super) async fn insert_created_event(
    conn: &mut PgConnection,
    url_id: i64,
    user_id: crate::ids::UserId,
    link: &super::foreign::ForeignLink,
) -> Result<(), sqlx::Error> {
    let at = link.created_at.unwrap_or_else(chrono::Utc::now);
    let event_id = ulid::Ulid::from_datetime(at.into()).to_string();
    sqlx::query(
        "INSERT INTO events (event_id, url_id, user_id, event_type, occurred_at, details)
         VALUES ($1, $2, $3, 'created', $4, $5)",
    )
    .bind(event_id)
    .bind(url_id)
    .bind(user_id)
    .bind(at)
    .bind(serde_json::json!({
        "short_code": link.code,
        "original_url": link.long_url,
        "imported": true,
    }))
    .execute(conn)
    .await?;
    Ok(())
}

/// The id and target of the link holding `code` on a domain, if any.
pub(super) async fn code_holder(
    conn: &mut PgConnection,
    code: &str,
    domain_id: Option<crate::ids::DomainId>,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, original_url FROM urls
         WHERE COALESCE(domain_id, 0) = COALESCE($1, 0) AND short_code = $2",
    )
    .bind(domain_id)
    .bind(code)
    .fetch_optional(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::MAX_IMPORTED_ID;

    #[test]
    fn sequences_stop_at_the_id_ceiling() {
        for table in [SequenceOf::Users, SequenceOf::Urls, SequenceOf::Events] {
            assert!(
                table
                    .setval_sql()
                    .contains(&format!("id <= {MAX_IMPORTED_ID})")),
                "{table:?}"
            );
        }
    }
}
