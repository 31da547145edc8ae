//! Links: creation with collision-safe short codes, edits that log one
//! `updated` event per changed field, soft deletion, statistics (`stats`),
//! and the deployment's target policy (`targets`).
//!
//! Each mutation commits the row change, its event-log row(s) and an outbox
//! row in one transaction.

pub mod codes;
pub mod model;
pub mod repo;
pub mod stats;
pub mod targets;

use serde_json::{Value, json};
use shortline_shared::events::{Change, ChangeEnvelope};
use sqlx::PgConnection;

use self::model::{Link, LinkPatch, NewLink};
use self::repo::LinkFilter;
use crate::error::ApiError;
use crate::events::model::EventRecord;
use crate::outbox::Propagation;
use crate::paging::{Page, Rows, Slice};
use crate::row_stream::{self, RowStream};
use crate::state::AppState;
use crate::{events, outbox, users};

/// Attempts at a free generated code before giving up (the length grows by
/// one after half of them, so a crowded code space cannot wedge creation).
const MAX_CODE_ATTEMPTS: usize = 8;

/// Creates a link; also says whether every redirect replica confirmed it.
pub async fn create(state: &AppState, new: NewLink) -> Result<(Link, Propagation), ApiError> {
    state.targets.check(&new.original_url)?;
    let mut tx = state.db.begin().await?;
    if !users::repo::exists(&mut tx, new.user_id).await? {
        return Err(ApiError::NotFound("User not found"));
    }
    let link = insert_with_code(state, &mut tx, &new).await?;
    let record = EventRecord::now(
        link.id,
        link.user_id,
        "created",
        json!({ "short_code": link.short_code, "original_url": link.original_url }),
    );
    events::repo::insert(&mut tx, &record).await?;
    let change = ChangeEnvelope::new(Change::LinkCreated {
        link: link.snapshot(),
    });
    let enqueued = outbox::enqueue(&mut tx, &state.subjects, &change).await?;
    tx.commit().await?;
    let propagation = state.propagator.propagate(&state.db, vec![enqueued]).await;
    state.metrics.links_created.add(1, &[]);
    tracing::info!(url_id = link.id, short_code = %link.short_code, "link created");
    Ok((link, propagation))
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

pub async fn get(state: &AppState, id: i64) -> Result<Link, ApiError> {
    let mut conn = state.db.acquire().await?;
    repo::get(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound("URL not found"))
}

/// The user a link belongs to, if the link exists.
pub async fn owner(state: &AppState, id: i64) -> Result<Option<i64>, ApiError> {
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
    id: i64,
    patch: LinkPatch,
) -> Result<(Link, Propagation), ApiError> {
    if let Some(url) = &patch.original_url {
        state.targets.check(url)?;
    }
    let mut tx = state.db.begin().await?;
    let current = repo::lock(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("URL not found"))?
        .link;
    if patch.is_empty() {
        return Ok((current, Propagation::Published));
    }
    let original_url = patch
        .original_url
        .clone()
        .unwrap_or_else(|| current.original_url.clone());
    let title = patch.title.clone().unwrap_or_else(|| current.title.clone());
    let is_active = patch.is_active.unwrap_or(current.is_active);

    let mut changed: Vec<(&str, Value)> = Vec::new();
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
    for (field, new_value) in &changed {
        let record = EventRecord::now(
            link.id,
            link.user_id,
            "updated",
            json!({ "field": field, "new_value": new_value }),
        );
        events::repo::insert(&mut tx, &record).await?;
    }
    let mut enqueued = Vec::new();
    if !changed.is_empty() {
        let change = ChangeEnvelope::new(Change::LinkUpdated {
            link: link.snapshot(),
            changed: changed.iter().map(|(f, _)| (*f).to_owned()).collect(),
        });
        enqueued.push(outbox::enqueue(&mut tx, &state.subjects, &change).await?);
    }
    tx.commit().await?;
    let propagation = state.propagator.propagate(&state.db, enqueued).await;
    Ok((link, propagation))
}

/// Soft delete: the link stops redirecting and reads back inactive; a second
/// delete is a 404.
pub async fn delete(state: &AppState, id: i64) -> Result<Propagation, ApiError> {
    let mut tx = state.db.begin().await?;
    let link = repo::mark_deleted(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("URL not found"))?;
    let record = EventRecord::now(
        link.id,
        link.user_id,
        "deleted",
        json!({ "reason": "user_requested" }),
    );
    events::repo::insert(&mut tx, &record).await?;
    let change = ChangeEnvelope::new(Change::LinkDeleted {
        link: link.snapshot(),
    });
    let enqueued = outbox::enqueue(&mut tx, &state.subjects, &change).await?;
    tx.commit().await?;
    Ok(state.propagator.propagate(&state.db, vec![enqueued]).await)
}

/// Deactivates a deleted user's links inside the caller's transaction, each
/// with an `updated` event and an outbox row (returned, to propagate after
/// the commit).
pub async fn deactivate_for_user(
    state: &AppState,
    conn: &mut PgConnection,
    user_id: i64,
) -> Result<Vec<outbox::Enqueued>, ApiError> {
    let links = repo::deactivate_for_user(conn, user_id).await?;
    let mut enqueued = Vec::with_capacity(links.len());
    for link in &links {
        let record = EventRecord::now(
            link.id,
            link.user_id,
            "updated",
            json!({ "field": "is_active", "new_value": false, "reason": "user_deleted" }),
        );
        events::repo::insert(conn, &record).await?;
        let change = ChangeEnvelope::new(Change::LinkUpdated {
            link: link.snapshot(),
            changed: vec!["is_active".into()],
        });
        enqueued.push(outbox::enqueue(conn, &state.subjects, &change).await?);
    }
    Ok(enqueued)
}
