//! `/users` routes.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::response::NoContent;
use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Created, ListOf, Propagated, conflict, not_found};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Id, JsonBody, Params};
use crate::ids::{ResourceId, UserId};
use crate::import::{self, BulkReport};
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
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Created<BulkReport>, ApiError> {
    caller.require_admin()?;
    let mut multipart = multipart.map_err(|_| {
        ApiError::BadRequest("expected a multipart/form-data upload with a `file` field".into())
    })?;
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
            .ok_or_else(|| ApiError::BadRequest("missing `file` field (a users CSV)".into()))?;
        if field.name() != Some("file") {
            continue;
        }
        // The importer parses on a blocking thread and needs an owned stream;
        // pump the borrowed field into a small channel beside it.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
        let pump = async move {
            let mut field = field;
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(std::io::Error::other);
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        };
        let body =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
                .boxed();
        let (_, report) = tokio::join!(
            pump,
            import::import_users(&state.db, body, state.config.csv_max_bytes)
        );
        let report = report?;
        state.metrics.users_imported.add(report.count, &[]);
        return Ok(Created(report));
    }
}
