//! Users: create, read, update, and soft delete (their links are
//! deactivated, never lost).

pub mod model;
pub mod repo;

use shortline_shared::events::{Change, ChangeEnvelope, UserSnapshot};

use self::model::{NewUser, User, UserPatch};
use crate::error::ApiError;
use crate::outbox::Propagation;
use crate::paging::{Page, Rows, Slice};
use crate::row_stream::{self, RowStream};
use crate::state::AppState;
use crate::{links, outbox};

pub async fn create(state: &AppState, new: NewUser) -> Result<User, ApiError> {
    let mut tx = state.db.begin().await?;
    let user = repo::insert(&mut tx, &new).await?;
    let change = ChangeEnvelope::new(Change::UserCreated {
        user: UserSnapshot { id: user.id },
    });
    outbox::enqueue(&mut tx, &state.subjects, &change).await?;
    tx.commit().await?;
    Ok(user)
}

pub async fn get(state: &AppState, id: i64) -> Result<User, ApiError> {
    let mut conn = state.db.acquire().await?;
    repo::get(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound("User not found"))
}

/// One page of users, or all of them as a stream.
pub async fn list(state: &AppState, page: Page) -> Result<Rows<User>, ApiError> {
    if page.is_all() {
        let mut tx = row_stream::begin(&state.db).await?;
        repo::declare_all(&mut tx).await?;
        return Ok(Rows::All(RowStream::start(tx).await?));
    }
    let mut conn = state.db.acquire().await?;
    let users = repo::list(&mut conn, page).await?;
    Ok(Rows::Page(Slice {
        items: users,
        next_after_id: None,
    }))
}

/// Applies any subset of the fields; `{}` returns the user unchanged.
pub async fn update(state: &AppState, id: i64, patch: UserPatch) -> Result<User, ApiError> {
    if patch.is_empty() {
        return get(state, id).await;
    }
    let mut tx = state.db.begin().await?;
    let user = repo::update(&mut tx, id, &patch)
        .await?
        .ok_or(ApiError::NotFound("User not found"))?;
    let change = ChangeEnvelope::new(Change::UserUpdated {
        user: UserSnapshot { id: user.id },
    });
    outbox::enqueue(&mut tx, &state.subjects, &change).await?;
    tx.commit().await?;
    Ok(user)
}

/// Soft-deletes the user and deactivates their links in one transaction.
pub async fn delete(state: &AppState, id: i64) -> Result<Propagation, ApiError> {
    let mut tx = state.db.begin().await?;
    let user = repo::soft_delete(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("User not found"))?;
    let mut enqueued = links::deactivate_for_user(state, &mut tx, user.id).await?;
    let deactivated = enqueued.len();
    let change = ChangeEnvelope::new(Change::UserDeleted {
        user: UserSnapshot { id: user.id },
    });
    enqueued.push(outbox::enqueue(&mut tx, &state.subjects, &change).await?);
    tx.commit().await?;
    let propagation = state.propagator.propagate(&state.db, enqueued).await;
    tracing::info!(
        user_id = id,
        deactivated_links = deactivated,
        "user deleted"
    );
    Ok(propagation)
}
