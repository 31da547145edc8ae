//! `/users` routes.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::NoContent;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Created, ListQuery, Listed, Propagated, conflict, not_found, operation};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Id, JsonBody, Params};
use crate::ids::{ResourceId, UserId};
use crate::import::{self, BulkReport, CsvUpload};
use crate::paging::Page;
use crate::state::AppState;
use crate::users::{
    self,
    model::{NewUser, User, UserPatch},
};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/users",
            get_with(list_users, list_users_docs).post_with(create_user, create_user_docs),
        )
        .api_route(
            "/users/bulk",
            post_with(bulk_import, bulk_import_docs).layer(DefaultBodyLimit::disable()),
        )
        .api_route(
            "/users/{id}",
            get_with(get_user, get_user_docs)
                .put_with(update_user, update_user_docs)
                .delete_with(delete_user, delete_user_docs),
        )
}

/// The 409 of a taken username or email.
const USER_CONFLICT: &str = "Username or email already exists";

/// Paging parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListUsersParams {
    /// 1-based page number.
    #[schemars(range(min = 1))]
    pub page: Option<i64>,
    /// Page size (1–1000; larger is clamped). Default 20 when only `page` is given.
    #[schemars(range(min = 1))]
    pub per_page: Option<i64>,
}

operation! {
    /// List users
    ///
    /// Ordered by id. Without `page`/`per_page` every user is returned.
    fn list_users_docs tag "users";
}

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    Params(p): Params<ListUsersParams>,
) -> Result<Listed<User>, ApiError> {
    caller.require_admin()?;
    let page = Page::resolve(p.page, p.per_page)?;
    let listing = users::list(&state, page).await?;
    Ok(Listed::new(listing, page, &ListQuery::new("/users")))
}

operation! {
    /// Create a user
    fn create_user_docs(op) tag "users" { conflict(op, USER_CONFLICT) }
}

async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewUser>,
) -> Result<Created<User>, ApiError> {
    caller.require_admin()?;
    Ok(Created(users::create(&state, new).await?))
}

operation! {
    /// Get a user
    fn get_user_docs(op) tag "users" { not_found(op, UserId::NOT_FOUND) }
}

async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<UserId>,
) -> Result<Json<User>, ApiError> {
    let id = id.get()?;
    // A user key may read its own user, nothing else.
    if caller.user() != Some(id) {
        caller.require_admin()?;
    }
    Ok(Json(users::get(&state, id).await?))
}

operation! {
    /// Update a user
    ///
    /// Any subset of `username`/`email`; `{}` changes nothing.
    fn update_user_docs(op) tag "users" {
        conflict(not_found(op, UserId::NOT_FOUND), USER_CONFLICT)
    }
}

async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<UserId>,
    JsonBody(patch): JsonBody<UserPatch>,
) -> Result<Json<User>, ApiError> {
    caller.require_admin()?;
    Ok(Json(users::update(&state, id.get()?, patch).await?))
}

operation! {
    /// Delete a user
    ///
    /// The user's links are deactivated, not deleted.
    fn delete_user_docs(op) tag "users" { not_found(op, UserId::NOT_FOUND) }
}

async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<UserId>,
) -> Result<Propagated<NoContent>, ApiError> {
    caller.require_admin()?;
    Ok(users::delete(&state, id.get()?)
        .await?
        .map(|()| NoContent)
        .into())
}

operation! {
    /// Import users from CSV
    ///
    /// multipart/form-data with a `file` field holding `id,username,email,created_at` rows.
    /// Every data row counts (duplicates are skipped but counted); CSV ids are kept. Header
    /// only: 0. Missing file or wrong header: 400. Larger than the configured cap: 413.
    fn bulk_import_docs(op) tag "users" {
        op.response_with::<413, Json<ErrorBody>, _>(|r| {
            r.description("Upload larger than CSV_MAX_BYTES")
        })
    }
}

async fn bulk_import(
    State(state): State<AppState>,
    caller: Caller,
    upload: CsvUpload,
) -> Result<Created<BulkReport>, ApiError> {
    caller.require_admin()?;
    let max_bytes = state.config.csv_max_bytes;
    let report = upload
        .import_with(|body| import::import_users(&state.db, body, max_bytes))
        .await?;
    state.metrics.users_imported.add(report.count, &[]);
    Ok(Created(report))
}
