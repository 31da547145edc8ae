//! Short code → target URL. Today straight from Postgres; the tiered cache
//! (moka L1, Valkey L2) and push invalidation come with issue #3.

use sqlx::PgPool;

use crate::error::RedirectError;

/// What a redirect needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Target {
    pub url_id: i64,
    pub user_id: i64,
    pub original_url: String,
}

/// Resolves an active link by code; unknown and inactive codes are `NotFound`.
pub async fn resolve(db: &PgPool, short_code: &str) -> Result<Target, RedirectError> {
    sqlx::query_as::<_, Target>(
        "SELECT id AS url_id, user_id, original_url FROM urls WHERE short_code = $1 AND is_active",
    )
    .bind(short_code)
    .fetch_optional(db)
    .await?
    .ok_or(RedirectError::NotFound)
}
