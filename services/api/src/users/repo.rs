//! SQL for users. Soft-deleted users (`deleted_at`) are invisible here;
//! deleting one deactivates their links ([`deactivate_links`]).

use chrono::{DateTime, Utc};
use shortline_shared::events::LinkSnapshot;
use sqlx::PgConnection;

use super::model::{NewUser, User, UserPatch};
use crate::ids::UserId;
use crate::paging::Page;
use crate::row_stream;

pub async fn insert(conn: &mut PgConnection, new: &NewUser) -> Result<User, sqlx::Error> {
    sqlx::query_as::<_, User>(
        "INSERT INTO users (username, email) VALUES ($1, $2) RETURNING id, username, email, created_at",
    )
    .bind(&new.username)
    .bind(&new.email)
    .fetch_one(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: UserId) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(
        "SELECT id, username, email, created_at FROM users WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn exists(conn: &mut PgConnection, id: UserId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL)",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Opens the `row_stream` cursor over every live user, by id (the
/// transaction's; read it with `RowStream`).
pub async fn declare_all(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{}SELECT id, username, email, created_at FROM users WHERE deleted_at IS NULL ORDER BY id",
        row_stream::declare_prefix()
    )))
    .execute(conn)
    .await?;
    Ok(())
}

/// How many live users there are.
pub async fn count(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users WHERE deleted_at IS NULL")
        .fetch_one(conn)
        .await
}

pub async fn list(conn: &mut PgConnection, page: Page) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(
        "SELECT id, username, email, created_at FROM users WHERE deleted_at IS NULL
         ORDER BY id LIMIT $1 OFFSET $2",
    )
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(conn)
    .await
}

/// Applies the fields present in `patch`; `None` when the user is absent.
pub async fn update(
    conn: &mut PgConnection,
    id: UserId,
    patch: &UserPatch,
) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(
        "UPDATE users SET username = COALESCE($2, username), email = COALESCE($3, email)
         WHERE id = $1 AND deleted_at IS NULL
         RETURNING id, username, email, created_at",
    )
    .bind(id)
    .bind(&patch.username)
    .bind(&patch.email)
    .fetch_optional(conn)
    .await
}

/// Marks the user deleted; `None` when there was no live user.
pub async fn soft_delete(conn: &mut PgConnection, id: UserId) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(
        "UPDATE users SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL
         RETURNING id, username, email, created_at",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// A deactivated link's columns: id, user, code, domain host, target,
/// active flag, change time.
type SnapshotRow = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    bool,
    DateTime<Utc>,
);

/// Deactivates every active link of a user who is being deleted, returning
/// each link's new state (for its change event).
pub async fn deactivate_links(
    conn: &mut PgConnection,
    id: UserId,
) -> Result<Vec<LinkSnapshot>, sqlx::Error> {
    let rows: Vec<SnapshotRow> = sqlx::query_as(
        "UPDATE urls SET is_active = FALSE, updated_at = now()
         WHERE user_id = $1 AND is_active
         RETURNING id, user_id, short_code,
                   (SELECT host FROM domains d WHERE d.id = urls.domain_id) AS domain,
                   original_url, is_active, updated_at",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, user_id, short_code, domain, original_url, is_active, updated_at)| LinkSnapshot {
                id,
                user_id,
                short_code,
                domain,
                original_url,
                is_active,
                updated_at,
            },
        )
        .collect())
}
