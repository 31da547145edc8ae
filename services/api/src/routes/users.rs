//! `/users` routes.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::NoContent;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Created, ListOf, Propagated, conflict, not_found};
use crate::auth::Caller;
use crate::error::ApiError;
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
            get_with(list_users, |op| op.tag("users").summary("List users").description("Ordered by id. Without `page`/`per_page` every user is returned."))
                .post_with(create_user, |op| {
                    conflict(op.tag("users").summary("Create a user"), "Username or email already exists")
                }),
        )
        .api_route(
            "/users/bulk",
            post_with(bulk_import, |op| {
                op.tag("users")
                    .summary("Import users from CSV")
                    .description("multipart/form-data with a `file` field holding `id,username,email,created_at` rows. Every data row counts (duplicates are skipped but counted); CSV ids are kept. Header only: 0. Missing file or wrong header: 400. Larger than the configured cap: 413.")
                    .response_with::<413, Json<crate::error::ErrorBody>, _>(|r| r.description("Upload larger than CSV_MAX_BYTES"))
            })
            .layer(DefaultBodyLimit::disable()),
        )
        .api_route(
            "/users/{id}",
            get_with(get_user, |op| not_found(op.tag("users").summary("Get a user"), UserId::NOT_FOUND))
                .put_with(update_user, |op| {
                    let op = not_found(op.tag("users").summary("Update a user").description("Any subset of `username`/`email`; `{}` changes nothing."), UserId::NOT_FOUND);
                    conflict(op, "Username or email already exists")
                })
                .delete_with(delete_user, |op| {
                    not_found(op.tag("users").summary("Delete a user").description("The user's links are deactivated, not deleted."), UserId::NOT_FOUND)
                }),
        )
}

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

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    Params(p): Params<ListUsersParams>,
) -> Result<ListOf<User>, ApiError> {
    caller.require_admin()?;
    let page = Page::resolve(p.page, p.per_page)?;
    Ok(ListOf(users::list(&state, page).await?))
}

async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewUser>,
) -> Result<Created<User>, ApiError> {
    caller.require_admin()?;
    Ok(Created(users::create(&state, new).await?))
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

async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<UserId>,
    JsonBody(patch): JsonBody<UserPatch>,
) -> Result<Json<User>, ApiError> {
    caller.require_admin()?;
    Ok(Json(users::update(&state, id.get()?, patch).await?))
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
