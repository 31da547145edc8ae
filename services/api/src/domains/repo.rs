//! SQL for domains.

use sqlx::PgConnection;

use super::model::Domain;
use crate::ids::DomainId;

/// Inserts a domain unless its host exists (`None` then).
pub async fn insert(conn: &mut PgConnection, host: &str) -> Result<Option<Domain>, sqlx::Error> {
    sqlx::query_as::<_, Domain>(
        "INSERT INTO domains (host) VALUES ($1) ON CONFLICT (host) DO NOTHING
         RETURNING id, host, created_at",
    )
    .bind(host)
    .fetch_optional(conn)
    .await
}

pub async fn list(conn: &mut PgConnection) -> Result<Vec<Domain>, sqlx::Error> {
    sqlx::query_as::<_, Domain>("SELECT id, host, created_at FROM domains ORDER BY id")
        .fetch_all(conn)
        .await
}

/// Deletes a domain; whether it existed (a domain with links is a
/// foreign-key violation).
pub async fn delete(conn: &mut PgConnection, id: DomainId) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM domains WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected()
        > 0)
}

/// The id of a (normalised) host.
pub async fn find(conn: &mut PgConnection, host: &str) -> Result<Option<DomainId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM domains WHERE host = $1")
        .bind(host)
        .fetch_optional(conn)
        .await
}
