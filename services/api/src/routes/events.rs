//! `/events` routes.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::extract::State;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Created, ListQuery, Listed, not_found, operation};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::events::{
    self,
    model::{Event, EventFilter, NewEvent},
};
use crate::extract::{JsonBody, Params};
use crate::ids::{LinkId, ResourceId, UserId};
use crate::paging::Page;
use crate::state::AppState;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/events",
        get_with(list_events, list_events_docs).post_with(record_event, record_event_docs),
    )
}

/// Filters and paging of `GET /events`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListEventsParams {
    pub url_id: Option<LinkId>,
    pub user_id: Option<UserId>,
    /// e.g. `created`, `updated`, `deleted`, `redirect`.
    pub event_type: Option<String>,
    /// 1-based page number (not with `after_id`).
    #[schemars(range(min = 1))]
    pub page: Option<i64>,
    /// Page size (1–1000; larger is clamped). Default 20 with `page`, 100
    /// with `after_id`.
    #[schemars(range(min = 1))]
    pub per_page: Option<i64>,
    /// Keyset paging: only events with a larger id (the last id of the
    /// previous page; 0 starts at the beginning).
    #[schemars(with = "Option<u64>")]
    pub after_id: Option<String>,
}

operation! {
    /// List events
    ///
    /// Ordered by id; filter by `url_id`, `user_id`, `event_type`. Without
    /// `page`/`per_page`/`after_id` every match is returned. Keyset paging: `after_id=N`
    /// returns the matches with an id above N (`per_page` of them, default 100) and cannot
    /// be combined with `page`; it stays fast at any depth, unlike deep `page` numbers. A
    /// page cut short by its size carries `Link: <…>; rel="next"` with the same filters and
    /// `after_id` set to its last id; `page`/`per_page` pages carry `first`/`prev`/`next`/`last`.
    /// `X-Total-Count` is the number of matches, paging aside.
    fn list_events_docs tag "events";
}

async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Params(mut p): Params<ListEventsParams>,
) -> Result<Listed<Event>, ApiError> {
    p.user_id = caller.narrow(p.user_id);
    let page = Page::resolve_keyset(p.page, p.per_page, p.after_id.as_deref())?;
    let filter = EventFilter {
        url_id: p.url_id.map(LinkId::get),
        user_id: p.user_id.map(UserId::get),
        event_type: p.event_type,
    };
    let listing = events::list(&state, &filter, page).await?;
    let query = ListQuery::new("/events")
        .with("url_id", filter.url_id)
        .with("user_id", filter.user_id)
        .with("event_type", filter.event_type);
    Ok(Listed::new(listing, page, &query))
}

operation! {
    /// Record an event
    ///
    /// `details` must be a JSON object. `user_id` must be the owner of `url_id` (400 naming
    /// `user_id` otherwise). A `redirect` event counts in the link's statistics.
    fn record_event_docs(op) tag "events" {
        not_found(op, &format!("{} / {}", LinkId::NOT_FOUND, UserId::NOT_FOUND))
    }
}

async fn record_event(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewEvent>,
) -> Result<Created<Event>, ApiError> {
    caller.require_acting_as(UserId::new(new.user_id))?;
    caller.check_link(&state, LinkId::new(new.url_id)).await?;
    Ok(Created(events::record(&state, new).await?))
}
