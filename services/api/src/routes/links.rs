//! `/urls` routes.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::Json;
use axum::extract::State;
use axum::response::NoContent;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Created, conflict, not_found};
use crate::error::ApiError;
use crate::events::{self, model::Event};
use crate::extract::{Id, JsonBody, Params};
use crate::links::model::{Link, LinkPatch, NewLink};
use crate::links::repo::LinkFilter;
use crate::links::{self, LinkStats};
use crate::paging::Page;
use crate::state::AppState;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/urls",
            get_with(list_links, |op| op.tag("urls").summary("List links").description("Ordered by id; filter by `user_id` and `is_active`. Without `page`/`per_page` every match is returned."))
                .post_with(create_link, |op| {
                    let op = op.tag("urls").summary("Create a link").description("Generates a 6-character base62 code unless `short_code` is given. Logs a `created` event.");
                    conflict(not_found(op, "User not found"), "short_code already exists")
                }),
        )
        .api_route(
            "/urls/{id}",
            get_with(get_link, |op| not_found(op.tag("urls").summary("Get a link").description("Deactivated and deleted links still read back, with `is_active: false`."), "URL not found"))
                .put_with(update_link, |op| {
                    not_found(op.tag("urls").summary("Update a link").description("Any of `title`, `is_active` (strict boolean), `original_url`. Bumps `updated_at`; logs one `updated` event per changed field."), "URL not found")
                })
                .delete_with(delete_link, |op| {
                    not_found(op.tag("urls").summary("Delete a link").description("Soft delete: `is_active=false` and a `deleted` event. A second delete is 404."), "URL not found")
                }),
        )
        .api_route(
            "/urls/{id}/events",
            get_with(link_events, |op| not_found(op.tag("urls").summary("A link's events").description("Ordered by id; paging as for lists."), "URL not found")),
        )
        .api_route(
            "/urls/{id}/stats",
            get_with(link_stats, |op| not_found(op.tag("urls").summary("A link's statistics"), "URL not found")),
        )
}

/// Filters and paging of `GET /urls`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListLinksParams {
    /// Only this user's links.
    pub user_id: Option<i64>,
    /// `true` or `false`.
    pub is_active: Option<bool>,
    /// 1-based page number.
    pub page: Option<i64>,
    /// Page size (1–1000; larger is clamped).
    pub per_page: Option<i64>,
}

/// Paging parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PageParams {
    /// 1-based page number.
    pub page: Option<i64>,
    /// Page size (1–1000; larger is clamped).
    pub per_page: Option<i64>,
}

async fn list_links(
    State(state): State<AppState>,
    Params(p): Params<ListLinksParams>,
) -> Result<Json<Vec<Link>>, ApiError> {
    let page = Page::resolve(p.page, p.per_page)?;
    let filter = LinkFilter {
        user_id: p.user_id,
        is_active: p.is_active,
    };
    Ok(Json(links::list(&state, filter, page).await?))
}

async fn create_link(
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewLink>,
) -> Result<Created<Link>, ApiError> {
    Ok(Created(links::create(&state, new).await?))
}

async fn get_link(State(state): State<AppState>, id: Id) -> Result<Json<Link>, ApiError> {
    Ok(Json(links::get(&state, id.get("URL not found")?).await?))
}

async fn update_link(
    State(state): State<AppState>,
    id: Id,
    JsonBody(patch): JsonBody<LinkPatch>,
) -> Result<Json<Link>, ApiError> {
    Ok(Json(
        links::update(&state, id.get("URL not found")?, patch).await?,
    ))
}

async fn delete_link(State(state): State<AppState>, id: Id) -> Result<NoContent, ApiError> {
    links::delete(&state, id.get("URL not found")?).await?;
    Ok(NoContent)
}

async fn link_events(
    State(state): State<AppState>,
    id: Id,
    Params(p): Params<PageParams>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let page = Page::resolve(p.page, p.per_page)?;
    Ok(Json(
        events::for_link(&state, id.get("URL not found")?, page).await?,
    ))
}

async fn link_stats(State(state): State<AppState>, id: Id) -> Result<Json<LinkStats>, ApiError> {
    Ok(Json(links::stats(&state, id.get("URL not found")?).await?))
}
