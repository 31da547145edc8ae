//! Shared state of the redirect handlers.

use sqlx::PgPool;

#[derive(Clone)]
pub struct RedirectState {
    pub db: PgPool,
}
