//! The event log: what happened to links, readable by link, user and type.
//!
//! Link changes write their `created`/`updated`/`deleted` rows in the same
//! transaction as the change (the one write path, `crate::mutation`), so the
//! log reads its own writes.
//! `POST /events` records a client's event the same way. A `redirect` event
//! also counts in the link's statistics, which only the analytics service
//! writes: in the event's transaction the API marks it `rollup_pending` and
//! puts it in the outbox as a click, which the analytics consumer folds into
//! the statistics exactly as it folds a redirect's click (within the
//! pipeline's latency; once, however often the message is delivered).

pub mod model;
pub mod repo;

use self::model::{Event, EventFilter, EventRecord, NewEvent};
use crate::error::ApiError;
use crate::ids::{LinkId, UserId};
use crate::paging::{self, Listing, Page};
use crate::row_stream::{self, RowStream};
use crate::state::AppState;
use crate::{links, outbox, users};

/// The event type that counts towards a link's redirect statistics.
pub const REDIRECT: &str = "redirect";

/// One page of the log (`next_after_id` set when the page size cut it), or
/// every match as a stream; with the number of matches.
pub async fn list(
    state: &AppState,
    filter: &EventFilter,
    page: Page,
) -> Result<Listing<Event>, ApiError> {
    if page.is_all() {
        let mut tx = row_stream::begin(&state.db).await?;
        let total = repo::count(&mut tx, filter).await?;
        repo::declare_all(&mut tx, filter).await?;
        return Ok(Listing::all(RowStream::start(tx).await?, total));
    }
    let mut tx = paging::snapshot(&state.db).await?;
    let total = repo::count(&mut tx, filter).await?;
    let rows = repo::list(&mut tx, filter, page.with_lookahead()).await?;
    tx.rollback().await?;
    Ok(Listing::page(page.slice(rows, |e| e.id), total))
}

/// Records a client-submitted event; 404 when the link or user is unknown,
/// 400 (naming `user_id`) when the user is not the link's owner.
pub async fn record(state: &AppState, new: NewEvent) -> Result<Event, ApiError> {
    let mut tx = state.db.begin().await?;
    let Some(link) = links::repo::get(&mut tx, LinkId::new(new.url_id)).await? else {
        return Err(LinkId::not_found());
    };
    if !users::repo::exists(&mut tx, UserId::new(new.user_id)).await? {
        return Err(UserId::not_found());
    }
    if link.user_id != UserId::new(new.user_id) {
        return Err(ApiError::field(
            "user_id",
            format!("user {} does not own url {}", new.user_id, link.id),
        ));
    }
    let record = EventRecord::now(
        new.url_id,
        new.user_id,
        &new.event_type,
        serde_json::Value::Object(new.details),
    );
    let event = repo::insert(&mut tx, &record).await?;
    if record.event_type == REDIRECT {
        repo::mark_rollup_pending(&mut tx, &record.event_id).await?;
        let click = record.as_click(link.user_id.get(), &link.short_code);
        outbox::enqueue_recorded_click(&mut tx, &state.subjects, click).await?;
    }
    tx.commit().await?;
    Ok(event)
}

/// One page of a link's events, or all of them as a stream, with their
/// number; 404 when the link does not exist.
pub async fn for_link(
    state: &AppState,
    url_id: LinkId,
    page: Page,
) -> Result<Listing<Event>, ApiError> {
    let filter = EventFilter {
        url_id: Some(url_id.get()),
        ..Default::default()
    };
    if page.is_all() {
        let mut tx = row_stream::begin(&state.db).await?;
        if links::repo::get(&mut tx, url_id).await?.is_none() {
            return Err(LinkId::not_found());
        }
        let total = repo::count(&mut tx, &filter).await?;
        repo::declare_all(&mut tx, &filter).await?;
        return Ok(Listing::all(RowStream::start(tx).await?, total));
    }
    let mut tx = paging::snapshot(&state.db).await?;
    if links::repo::get(&mut tx, url_id).await?.is_none() {
        return Err(LinkId::not_found());
    }
    let total = repo::count(&mut tx, &filter).await?;
    let rows = repo::list(&mut tx, &filter, page.with_lookahead()).await?;
    tx.rollback().await?;
    Ok(Listing::page(page.slice(rows, |e| e.id), total))
}
