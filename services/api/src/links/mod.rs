//! Links: creation with collision-safe short codes, edits that log one
//! `updated` event per changed field, soft deletion, statistics (`stats`),
//! and the deployment's target policy (`targets`).
//!
//! Each mutation goes through the one write path ([`crate::mutation`]): the
//! row change, its event-log row(s) and an outbox row commit together.

pub mod codes;
pub mod model;
pub mod repo;
pub mod stats;
pub mod targets;

use serde_json::{Value, json};
use sqlx::PgConnection;

use self::model::{Link, LinkPatch, NewLink};
use self::repo::LinkFilter;
use crate::error::ApiError;
use crate::ids::{LinkId, UserId};
use crate::mutation::{Changed, Committed, Mutation};
use crate::paging::{Page, Rows, Slice};
use crate::row_stream::{self, RowStream};
use crate::state::AppState;
use crate::users;

/// Attempts at a free generated code before giving up (the length grows by
/// one after half of them, so a crowded code space cannot wedge creation).
const MAX_CODE_ATTEMPTS: usize = 8;

/// Creates a link; also says whether every redirect replica confirmed it.
pub async fn create(state: &AppState, new: NewLink) -> Result<Committed<Link>, ApiError> {
    state.targets.check(&new.original_url)?;
    let mut tx = Mutation::begin(state).await?;
    if !users::repo::exists(&mut tx, new.user_id).await? {
        return Err(UserId::not_found());
    }
    let link = insert_with_code(state, &mut tx, &new).await?;
    let committed = tx
        .commit([Changed::LinkCreated(link.snapshot())], link)
        .await?;
    state.metrics.links_created.add(1, &[]);
    let link = &committed.value;
    tracing::info!(url_id = link.id.get(), short_code = %link.short_code, "link created");
    Ok(committed)
}

async fn insert_with_code(
    state: &AppState,
    conn: &mut PgConnection,
    new: &NewLink,
) -> Result<Link, ApiError> {
    if let Some(code) = &new.short_code {
        return repo::insert(
            conn,
            new.user_id,
            code,
            &new.original_url,
            new.title.as_deref(),
        )
        .await?
        .ok_or_else(|| ApiError::Conflict("short_code already exists".into()));
    }
    let base_len = usize::from(state.config.short_code_length);
    for attempt in 0..MAX_CODE_ATTEMPTS {
        let len = if attempt < MAX_CODE_ATTEMPTS / 2 {
            base_len
        } else {
            base_len + 1
        };
        let code = codes::generate(len);
        if let Some(link) = repo::insert(
            conn,
            new.user_id,
            &code,
            &new.original_url,
            new.title.as_deref(),
        )
        .await?
        {
            return Ok(link);
        }
        state.metrics.short_code_collisions.add(1, &[]);
        tracing::warn!(attempt, "generated short code collided; retrying");
    }
    Err(ApiError::Internal(
        "no free short code after retries".into(),
    ))
}

pub async fn get(state: &AppState, id: LinkId) -> Result<Link, ApiError> {
    let mut conn = state.db.acquire().await?;
    repo::get(&mut conn, id)
        .await?
        .ok_or_else(LinkId::not_found)
}

/// The user a link belongs to, if the link exists.
pub async fn owner(state: &AppState, id: LinkId) -> Result<Option<UserId>, ApiError> {
    let mut conn = state.db.acquire().await?;
    Ok(repo::get(&mut conn, id).await?.map(|l| l.user_id))
}

/// One page of links, or every match as a stream.
pub async fn list(
    state: &AppState,
    filter: LinkFilter,
    page: Page,
) -> Result<Rows<Link>, ApiError> {
    if page.is_all() {
        let mut tx = row_stream::begin(&state.db).await?;
        repo::declare_all(&mut tx, filter).await?;
        return Ok(Rows::All(RowStream::start(tx).await?));
    }
    let mut conn = state.db.acquire().await?;
    let links = repo::list(&mut conn, filter, page).await?;
    Ok(Rows::Page(Slice {
        items: links,
        next_after_id: None,
    }))
}

/// Applies a patch. Every field given bumps `updated_at`; each field whose
/// value actually changed logs one `updated` event `{field, new_value}`.
pub async fn update(
    state: &AppState,
    id: LinkId,
    patch: LinkPatch,
) -> Result<Committed<Link>, ApiError> {
    if let Some(url) = &patch.original_url {
        state.targets.check(url)?;
    }
    let mut tx = Mutation::begin(state).await?;
    let current = repo::lock(&mut tx, id)
        .await?
        .ok_or_else(LinkId::not_found)?
        .link;
    if patch.is_empty() {
        return tx.commit([], current).await;
    }
    let original_url = patch
        .original_url
        .clone()
        .unwrap_or_else(|| current.original_url.clone());
    let title = patch.title.clone().unwrap_or_else(|| current.title.clone());
    let is_active = patch.is_active.unwrap_or(current.is_active);

    let mut changed: Vec<(&'static str, Value)> = Vec::new();
    if original_url != current.original_url {
        changed.push(("original_url", json!(original_url)));
    }
    if title != current.title {
        changed.push(("title", json!(title)));
    }
    if is_active != current.is_active {
        changed.push(("is_active", json!(is_active)));
    }
    let link = repo::update(&mut tx, id, &original_url, title.as_deref(), is_active).await?;
    tx.commit([Changed::LinkUpdated(link.snapshot(), changed)], link)
        .await
}

/// Soft delete: the link stops redirecting and reads back inactive; a second
/// delete is a 404.
pub async fn delete(state: &AppState, id: LinkId) -> Result<Committed<()>, ApiError> {
    let mut tx = Mutation::begin(state).await?;
    let link = repo::mark_deleted(&mut tx, id)
        .await?
        .ok_or_else(LinkId::not_found)?;
    tx.commit([Changed::LinkDeleted(link.snapshot())], ()).await
}
