//! `/events` routes.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::Json;
use axum::extract::State;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Created, not_found};
use crate::error::ApiError;
use crate::events::{
    self,
    model::{Event, EventFilter, NewEvent},
};
use crate::extract::{JsonBody, Params};
use crate::paging::Page;
use crate::state::AppState;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/events",
        get_with(list_events, |op| op.tag("events").summary("List events").description("Ordered by id; filter by `url_id`, `user_id`, `event_type`. Without `page`/`per_page` every match is returned."))
            .post_with(record_event, |op| not_found(op.tag("events").summary("Record an event").description("`details` must be a JSON object. A `redirect` event counts in the link's statistics."), "URL not found / User not found")),
    )
}

/// Filters and paging of `GET /events`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListEventsParams {
    pub url_id: Option<i64>,
    pub user_id: Option<i64>,
    /// e.g. `created`, `updated`, `deleted`, `redirect`.
    pub event_type: Option<String>,
    /// 1-based page number.
    pub page: Option<i64>,
    /// Page size (1–1000; larger is clamped).
    pub per_page: Option<i64>,
}

async fn list_events(
    State(state): State<AppState>,
    Params(p): Params<ListEventsParams>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let page = Page::resolve(p.page, p.per_page)?;
    let filter = EventFilter {
        url_id: p.url_id,
        user_id: p.user_id,
        event_type: p.event_type,
    };
    Ok(Json(events::list(&state, &filter, page).await?))
}

async fn record_event(
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewEvent>,
) -> Result<Created<Event>, ApiError> {
    Ok(Created(events::record(&state, new).await?))
}
