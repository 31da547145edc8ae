//! `/keys` routes (admin keys only).

use aide::axum::ApiRouter;
use aide::axum::routing::{delete_with, get_with};
use axum::extract::State;
use axum::response::NoContent;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Created, ListQuery, Listed, not_found, operation};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Id, JsonBody, Params};
use crate::ids::{KeyId, ResourceId, UserId};
use crate::keys::{
    self,
    model::{ApiKey, CreatedKey, NewKey},
};
use crate::paging::Page;
use crate::state::AppState;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/keys",
            get_with(list_keys, list_keys_docs).post_with(create_key, create_key_docs),
        )
        .api_route("/keys/{id}", delete_with(revoke_key, revoke_key_docs))
}

/// Paging of `GET /keys`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListKeysParams {
    /// 1-based page number.
    #[schemars(range(min = 1))]
    pub page: Option<i64>,
    /// Page size (1–1000; larger is clamped). Default 20 when only `page` is given.
    #[schemars(range(min = 1))]
    pub per_page: Option<i64>,
}

operation! {
    /// List API keys
    ///
    /// Every key, ordered by id, without secrets (`page`/`per_page` paginate). Admin keys
    /// only.
    fn list_keys_docs tag "keys";
}

async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Params(p): Params<ListKeysParams>,
) -> Result<Listed<ApiKey>, ApiError> {
    caller.require_admin()?;
    let page = Page::resolve(p.page, p.per_page)?;
    let listing = keys::listing(&state.db, page).await?;
    Ok(Listed::new(listing, page, &ListQuery::new("/keys")))
}

operation! {
    /// Create an API key
    ///
    /// `user_id: null` makes an admin key (may do everything); a user id makes a key that
    /// acts as that user only. The answer's `key` is the only time the whole key is shown:
    /// store it. Admin keys only.
    fn create_key_docs(op) tag "keys" { not_found(op, UserId::NOT_FOUND) }
}

async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewKey>,
) -> Result<Created<CreatedKey>, ApiError> {
    caller.require_admin()?;
    Ok(Created(keys::create(&state.db, new).await?))
}

operation! {
    /// Revoke an API key
    ///
    /// The key stops working on every replica within `API_KEY_CACHE_MS` (500 ms). A second
    /// revoke is 404. Admin keys only.
    fn revoke_key_docs(op) tag "keys" { not_found(op, KeyId::NOT_FOUND) }
}

async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<KeyId>,
) -> Result<NoContent, ApiError> {
    caller.require_admin()?;
    keys::revoke(&state.db, id.get()?.get()).await?;
    Ok(NoContent)
}
