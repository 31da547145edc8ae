//! Custom domains (Shlink's multi-domain, Dub's custom domains): hosts that
//! short links may live on besides the default domain (the host of
//! `PUBLIC_BASE_URL`). A link belongs to one domain and its short code is
//! unique within it; the redirect service resolves `/{code}` by the request's
//! `Host`. A domain with links cannot be deleted.

pub mod model;
pub mod repo;

use shortline_shared::db::Db;

use self::model::{Domain, NewDomain};
use crate::error::ApiError;
use crate::ids::DomainId;

/// Adds a domain; 409 when it exists.
pub async fn create(db: &Db, new: NewDomain) -> Result<Domain, ApiError> {
    let mut conn = db.acquire().await?;
    let domain = repo::insert(&mut conn, &new.host)
        .await?
        .ok_or_else(|| ApiError::Conflict("domain already exists".into()))?;
    tracing::info!(domain_id = domain.id.get(), host = %domain.host, "domain added");
    Ok(domain)
}

pub async fn list(db: &Db) -> Result<Vec<Domain>, ApiError> {
    let mut conn = db.acquire().await?;
    Ok(repo::list(&mut conn).await?)
}

/// Removes a domain that no link uses (409 otherwise; 404 when unknown).
pub async fn delete(db: &Db, id: DomainId) -> Result<(), ApiError> {
    let mut conn = db.acquire().await?;
    match repo::delete(&mut conn, id).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(DomainId::not_found()),
        // ON DELETE RESTRICT (restrict_violation, 23001).
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("urls_domain_id_fkey") => Err(
            ApiError::Conflict("domain still has links: delete or move them first".into()),
        ),
        Err(e) => Err(e.into()),
    }
}

/// The id of a domain by its host as a client wrote it (normalised first);
/// 404 when there is no such domain.
pub async fn resolve(conn: &mut sqlx::PgConnection, host: &str) -> Result<DomainId, ApiError> {
    let host = model::normalize_host(host).map_err(|_| DomainId::not_found())?;
    repo::find(conn, &host)
        .await?
        .ok_or_else(DomainId::not_found)
}
