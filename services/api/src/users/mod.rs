//! Users: create, read, update, and soft delete (their links are
//! deactivated, never lost). Changes go through the one write path
//! ([`crate::mutation`]).

pub mod model;
pub mod repo;

use self::model::{NewUser, User, UserPatch};
use crate::error::ApiError;
use crate::ids::UserId;
use crate::mutation::{Changed, Committed, Mutation};
use crate::paging::{self, Listing, Page};
use crate::row_stream::{self, RowStream};
use crate::state::AppState;

/// Creates a user (their answer does not wait for propagation: nothing
/// reads a new user at once).
pub async fn create(state: &AppState, new: NewUser) -> Result<User, ApiError> {
    let mut tx = Mutation::begin(state).await?;
    let user = repo::insert(&mut tx, &new).await?;
    let committed = tx.commit([Changed::UserCreated(user.id)], user).await?;
    Ok(committed.value)
}

pub async fn get(state: &AppState, id: UserId) -> Result<User, ApiError> {
    let mut conn = state.db.acquire().await?;
    repo::get(&mut conn, id)
        .await?
        .ok_or_else(UserId::not_found)
}

/// One page of users, or all of them as a stream, with their number.
pub async fn list(state: &AppState, page: Page) -> Result<Listing<User>, ApiError> {
    if page.is_all() {
        let mut tx = row_stream::begin(&state.db).await?;
        let total = repo::count(&mut tx).await?;
        repo::declare_all(&mut tx).await?;
        return Ok(Listing::all(RowStream::start(tx).await?, total));
    }
    let mut tx = paging::snapshot(&state.db).await?;
    let total = repo::count(&mut tx).await?;
    let users = repo::list(&mut tx, page).await?;
    tx.rollback().await?;
    Ok(Listing::items(users, total))
}

/// Applies any subset of the fields; `{}` returns the user unchanged.
pub async fn update(state: &AppState, id: UserId, patch: UserPatch) -> Result<User, ApiError> {
    if patch.is_empty() {
        return get(state, id).await;
    }
    let mut tx = Mutation::begin(state).await?;
    let user = repo::update(&mut tx, id, &patch)
        .await?
        .ok_or_else(UserId::not_found)?;
    let committed = tx.commit([Changed::UserUpdated(user.id)], user).await?;
    Ok(committed.value)
}

/// Soft-deletes the user and deactivates their links in one transaction.
pub async fn delete(state: &AppState, id: UserId) -> Result<Committed<()>, ApiError> {
    let mut tx = Mutation::begin(state).await?;
    let user = repo::soft_delete(&mut tx, id)
        .await?
        .ok_or_else(UserId::not_found)?;
    let links = repo::deactivate_links(&mut tx, user.id).await?;
    let deactivated = links.len();
    let changes = links
        .into_iter()
        .map(Changed::LinkDeactivated)
        .chain([Changed::UserDeleted(user.id)]);
    let committed = tx.commit(changes, ()).await?;
    tracing::info!(
        user_id = id.get(),
        deactivated_links = deactivated,
        "user deleted"
    );
    Ok(committed)
}
