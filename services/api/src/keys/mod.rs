//! API keys: creation (the secret is shown once, only its SHA-256 is kept),
//! listing, revocation, and verification of a presented key.
//!
//! Verification looks a key up by its public id and compares the secret's
//! hash in constant time. Verified keys (and unknown ids) are remembered for
//! `API_KEY_CACHE_MS` (default 500 ms) per replica, so revocation and
//! expiry reach every replica within that time without a shared cache;
//! expiry itself is checked on every request against the remembered time.

pub mod model;
pub mod repo;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use shortline_shared::db::Db;
use subtle::ConstantTimeEq;

use self::model::{ApiKey, CreatedKey, KeyMaterial, NewKey, Scope};
use self::repo::KeyRecord;
use crate::error::ApiError;
use crate::ids::{KeyId, UserId};
use crate::paging::{Listing, Page};
use crate::row_stream::{self, RowStream};
use crate::users;

/// How often at most a key's `last_used_at` is written (per replica).
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// Creates a key; 404 when its user does not exist.
pub async fn create(db: &Db, new: NewKey) -> Result<CreatedKey, ApiError> {
    let mut tx = db.begin().await?;
    if let Some(user_id) = new.user_id
        && !users::repo::exists(&mut tx, UserId::new(user_id)).await?
    {
        return Err(UserId::not_found());
    }
    let material = KeyMaterial::generate();
    let key = repo::insert(&mut tx, &material, &new).await?;
    tx.commit().await?;
    tracing::info!(key_id = key.id, prefix = %key.prefix, kind = %key.kind, "api key created");
    Ok(CreatedKey {
        key,
        secret: material.text,
    })
}

/// Every key, by id.
pub async fn list(db: &Db) -> Result<Vec<ApiKey>, ApiError> {
    let mut conn = db.acquire().await?;
    Ok(repo::list(&mut conn, Page::ALL).await?)
}

/// One page of keys, or all of them as a stream, with their number.
pub async fn listing(db: &Db, page: Page) -> Result<Listing<ApiKey>, ApiError> {
    if page.is_all() {
        let mut tx = row_stream::begin(db).await?;
        let total = repo::count(&mut tx).await?;
        repo::declare_all(&mut tx).await?;
        return Ok(Listing::all(RowStream::start(tx).await?, total));
    }
    let mut tx = crate::paging::snapshot(db).await?;
    let total = repo::count(&mut tx).await?;
    let keys = repo::list(&mut tx, page).await?;
    tx.rollback().await?;
    Ok(Listing::items(keys, total))
}

/// Revokes a key; 404 when it does not exist or was revoked already.
pub async fn revoke(db: &Db, id: i64) -> Result<ApiKey, ApiError> {
    let mut conn = db.acquire().await?;
    let key = repo::revoke(&mut conn, id)
        .await?
        .ok_or_else(KeyId::not_found)?;
    tracing::info!(key_id = key.id, prefix = %key.prefix, "api key revoked");
    Ok(key)
}

/// A verified key: who is calling and at what rate they may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedKey {
    pub key_id: i64,
    pub scope: Scope,
    /// The key's own limit, when it has one.
    pub rate_limit_per_minute: Option<u32>,
}

/// Checks presented keys against the database, remembering answers briefly.
#[derive(Clone)]
pub struct KeyVerifier {
    db: Db,
    /// Public id → the key's record (`None`: no such key).
    known: moka::future::Cache<String, Option<Arc<KeyRecord>>>,
    /// Keys whose `last_used_at` was written lately.
    touched: moka::sync::Cache<i64, ()>,
}

impl KeyVerifier {
    pub fn new(db: Db, cache_ttl: Duration) -> Self {
        Self {
            db,
            known: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl.max(Duration::from_millis(1)))
                .build(),
            touched: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TOUCH_INTERVAL)
                .build(),
        }
    }

    /// The key's identity, or why it is refused (401).
    pub async fn verify(&self, text: &str) -> Result<VerifiedKey, ApiError> {
        let (public_id, secret) =
            model::parse_key(text).ok_or(ApiError::Unauthorized("Invalid API key"))?;
        let db = self.db.clone();
        let id = public_id.to_owned();
        let record = self
            .known
            .try_get_with(public_id.to_owned(), async move {
                let mut conn = db.acquire().await?;
                repo::find(&mut conn, &id).await.map(|r| r.map(Arc::new))
            })
            .await
            .map_err(|e| match Arc::into_inner(e) {
                Some(e) => ApiError::from(e),
                None => ApiError::Unavailable("Service temporarily unavailable".into()),
            })?
            .ok_or(ApiError::Unauthorized("Invalid API key"))?;
        let hash = model::hash_secret(secret);
        if !bool::from(hash.as_slice().ct_eq(record.secret_hash.as_slice())) {
            return Err(ApiError::Unauthorized("Invalid API key"));
        }
        if record.revoked {
            return Err(ApiError::Unauthorized("API key revoked"));
        }
        if record.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(ApiError::Unauthorized("API key expired"));
        }
        if record.user_gone {
            return Err(ApiError::Unauthorized("API key's user was deleted"));
        }
        self.touch(record.id);
        Ok(VerifiedKey {
            key_id: record.id,
            scope: match record.user_id {
                None => Scope::Admin,
                Some(user) => Scope::User(user),
            },
            rate_limit_per_minute: record
                .rate_limit_per_minute
                .and_then(|r| u32::try_from(r).ok()),
        })
    }

    /// Writes `last_used_at` in the background, at most once a minute per key.
    fn touch(&self, key_id: i64) {
        if self.touched.contains_key(&key_id) {
            return;
        }
        self.touched.insert(key_id, ());
        let db = self.db.clone();
        tokio::spawn(async move {
            let touched = match db.acquire().await {
                Ok(mut conn) => repo::touch(&mut conn, key_id).await,
                Err(e) => Err(e),
            };
            if let Err(e) = touched {
                tracing::warn!(key_id, error = %e, "could not record an api key's last use");
            }
        });
    }
}
