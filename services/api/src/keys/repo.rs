//! SQL for API keys.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::model::{ApiKey, KeyMaterial, NewKey};
use crate::paging::Page;

/// The columns of [`ApiKey`], for `concat!` into static SQL.
macro_rules! columns {
    () => {
        "id, 'sl_' || public_id AS prefix, name,
         CASE WHEN user_id IS NULL THEN 'admin' ELSE 'user' END AS kind,
         user_id, rate_limit_per_minute, expires_at, last_used_at, revoked_at, created_at"
    };
}

pub async fn insert(
    conn: &mut PgConnection,
    material: &KeyMaterial,
    new: &NewKey,
) -> Result<ApiKey, sqlx::Error> {
    sqlx::query_as::<_, ApiKey>(concat!(
        "INSERT INTO api_keys (public_id, secret_hash, name, user_id, rate_limit_per_minute, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        columns!()
    ))
    .bind(&material.public_id)
    .bind(material.secret_hash.as_slice())
    .bind(&new.name)
    .bind(new.user_id)
    .bind(new.rate_limit_per_minute)
    .bind(new.expires_at)
    .fetch_one(conn)
    .await
}

/// One page of keys, by id ([`Page::ALL`]: every key).
pub async fn list(conn: &mut PgConnection, page: Page) -> Result<Vec<ApiKey>, sqlx::Error> {
    sqlx::query_as::<_, ApiKey>(concat!(
        "SELECT ",
        columns!(),
        " FROM api_keys ORDER BY id LIMIT $1 OFFSET $2"
    ))
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(conn)
    .await
}

/// Opens the `row_stream` cursor over every key, by id (the streamed
/// `GET /keys`).
pub async fn declare_all(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{}SELECT {} FROM api_keys ORDER BY id",
        crate::row_stream::declare_prefix(),
        columns!()
    )))
    .execute(conn)
    .await?;
    Ok(())
}

/// How many keys there are.
pub async fn count(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(conn)
        .await
}

/// Revokes a key that is not revoked yet (`None` otherwise).
pub async fn revoke(conn: &mut PgConnection, id: i64) -> Result<Option<ApiKey>, sqlx::Error> {
    sqlx::query_as::<_, ApiKey>(concat!(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING ",
        columns!()
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// What authentication needs to know about a key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRecord {
    pub id: i64,
    pub secret_hash: Vec<u8>,
    pub user_id: Option<i64>,
    pub rate_limit_per_minute: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    /// The key's user was deleted (user keys only).
    pub user_gone: bool,
}

/// The key with this public id, if there is one.
pub async fn find(
    conn: &mut PgConnection,
    public_id: &str,
) -> Result<Option<KeyRecord>, sqlx::Error> {
    sqlx::query_as::<_, KeyRecord>(
        "SELECT k.id, k.secret_hash, k.user_id, k.rate_limit_per_minute, k.expires_at,
                k.revoked_at IS NOT NULL AS revoked,
                (k.user_id IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM users u WHERE u.id = k.user_id AND u.deleted_at IS NULL
                )) AS user_gone
         FROM api_keys k WHERE k.public_id = $1",
    )
    .bind(public_id)
    .fetch_optional(conn)
    .await
}

/// Records that a key was used now.
pub async fn touch(conn: &mut PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
