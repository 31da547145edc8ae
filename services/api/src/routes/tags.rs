//! `/tags` routes.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::extract::State;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ListQuery, Listed, operation};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Params;
use crate::ids::UserId;
use crate::links::tags::{self, TagCount};
use crate::paging::Page;
use crate::state::AppState;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route("/tags", get_with(list_tags, list_tags_docs))
}

/// Filter and paging of `GET /tags`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListTagsParams {
    /// Only this user's tags (admin keys; a user key always sees its own).
    pub user_id: Option<UserId>,
    /// 1-based page number.
    #[schemars(range(min = 1))]
    pub page: Option<i64>,
    /// Page size (1–1000; larger is clamped). Default 20 when only `page` is given.
    #[schemars(range(min = 1))]
    pub per_page: Option<i64>,
}

operation! {
    /// List tags
    ///
    /// The tags of the caller's links (a user key: its own; an admin key: everyone's, or
    /// `user_id`'s), ordered by tag, each with how many links carry it (`GET /urls?tag=`
    /// lists them). Paging, `X-Total-Count` and `Link` as for every list.
    fn list_tags_docs tag "urls";
}

async fn list_tags(
    State(state): State<AppState>,
    caller: Caller,
    Params(p): Params<ListTagsParams>,
) -> Result<Listed<TagCount>, ApiError> {
    let user_id = caller.narrow(p.user_id);
    let page = Page::resolve(p.page, p.per_page)?;
    let listing = tags::list(&state, user_id, page).await?;
    let query = ListQuery::new("/tags").with("user_id", p.user_id);
    Ok(Listed::new(listing, page, &query))
}
