//! `/urls` routes.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use aide::generate::GenContext;
use aide::openapi::{
    Operation, Parameter, ParameterData, ParameterSchemaOrContent, QueryStyle, SchemaObject,
};
use aide::operation::OperationInput;
use axum::Json;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::response::NoContent;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    CreatedAt, ListQuery, Listed, Propagated, conflict, not_found, operation, unprocessable,
};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::events::{self, model::Event};
use crate::extract::{Id, JsonBody, Params};
use crate::ids::{LinkId, ResourceId, UserId};
use crate::import::CsvUpload;
use crate::links::bulk::{self, BulkLinksReport};
use crate::links::model::{Link, LinkPatch, NewLink};
use crate::links::repo::{LinkFilter, LinkOrder};
use crate::links::{
    self,
    stats::{Interval, LinkStats, StatsRange},
    tags,
};
use crate::paging::Page;
use crate::state::AppState;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/urls",
            get_with(list_links, list_links_docs).post_with(create_link, create_link_docs),
        )
        .api_route(
            "/urls/bulk",
            post_with(bulk_create, bulk_create_docs).layer(DefaultBodyLimit::disable()),
        )
        .api_route(
            "/urls/{id}",
            get_with(get_link, get_link_docs)
                .put_with(update_link, update_link_docs)
                .delete_with(delete_link, delete_link_docs),
        )
        .api_route("/urls/{id}/events", get_with(link_events, link_events_docs))
        .api_route("/urls/{id}/stats", get_with(link_stats, link_stats_docs))
}

/// The 422 of a refused target.
const TARGET_REFUSED: &str = "`original_url`, `fallback_url` or a rule's `target` points at this service itself or at a blocklisted domain, or `rules` are not valid (`details` names each field by its path, e.g. `rules[1].when.device[0]`)";

/// Filters and paging of `GET /urls`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListLinksParams {
    /// Only this user's links.
    pub user_id: Option<UserId>,
    /// `true` or `false`.
    pub is_active: Option<bool>,
    /// Search: links whose title, original URL or short code contains this
    /// text, ignoring case (1–200 characters; blank: no search).
    #[schemars(length(max = 200), example = &"spring sale")]
    pub q: Option<String>,
    /// Order: `created_at`, `-created_at` (newest first), `clicks`,
    /// `-clicks` (most redirected first); ties by id. Default: by id.
    #[schemars(with = "Option<SortParam>")]
    pub sort: Option<String>,
    /// 1-based page number.
    #[schemars(range(min = 1))]
    pub page: Option<i64>,
    /// Page size (1–1000; larger is clamped).
    #[schemars(range(min = 1))]
    pub per_page: Option<i64>,
}

/// The values of `sort`.
#[derive(JsonSchema)]
#[allow(dead_code)] // Documentation only.
enum SortParam {
    #[serde(rename = "created_at")]
    CreatedAt,
    #[serde(rename = "-created_at")]
    CreatedAtDesc,
    #[serde(rename = "clicks")]
    Clicks,
    #[serde(rename = "-clicks")]
    ClicksDesc,
}

/// Longest `q`.
const MAX_SEARCH_CHARS: usize = 200;

/// Paging of `GET /urls/{id}/events`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct LinkEventsParams {
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

/// Range of `GET /urls/{id}/stats`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatsParams {
    /// Start of the range, `YYYY-MM-DDTHH:MM:SS` (UTC; `YYYY-MM-DD HH:MM:SS`
    /// and RFC 3339 with an offset are accepted too). Default: 7 days before
    /// `to`.
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"))]
    pub from: Option<String>,
    /// End of the range, same formats. Default: now.
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"))]
    pub to: Option<String>,
    /// Bucket width of `series`: `hour` (default) or `day`.
    #[schemars(with = "Option<Interval>")]
    pub interval: Option<String>,
}

operation! {
    /// List links
    ///
    /// Ordered by id unless `sort` says otherwise (`created_at`, `-created_at`, `clicks`,
    /// `-clicks`; ties by id); filter by `user_id`, `is_active`, `tag` (repeatable: links with
    /// all the given tags) and `q` (case-insensitive substring of the title, original URL or
    /// short code). Filters combine. Without `page`/`per_page` every match is returned
    /// (streamed).
    /// `X-Total-Count` counts the matches; pages carry `Link` `first`/`prev`/`next`/`last`.
    fn list_links_docs tag "urls";
}

async fn list_links(
    State(state): State<AppState>,
    caller: Caller,
    Params(mut p): Params<ListLinksParams>,
    TagFilter(tags): TagFilter,
) -> Result<Listed<Link>, ApiError> {
    let requested_user = p.user_id;
    p.user_id = caller.narrow(p.user_id);
    let page = Page::resolve(p.page, p.per_page)?;
    let search = p.q.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    if search
        .as_ref()
        .is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS)
    {
        return Err(ApiError::field("q", "must be at most 200 characters"));
    }
    let order = match p.sort.as_deref() {
        None => LinkOrder::Id,
        Some(sort) => LinkOrder::parse(sort).ok_or_else(|| {
            ApiError::field(
                "sort",
                "must be one of created_at, -created_at, clicks, -clicks",
            )
        })?,
    };
    let query = ListQuery::new("/urls")
        .with("user_id", requested_user)
        .with("is_active", p.is_active)
        .with_each("tag", &tags)
        .with("q", search.as_ref())
        .with("sort", order.as_param());
    let filter = LinkFilter {
        user_id: p.user_id,
        is_active: p.is_active,
        tags,
        search,
    };
    let listing = links::list(&state, filter, order, page).await?;
    Ok(Listed::new(listing, page, &query))
}

/// The `tag` parameters of a request (repeatable, which `Params` cannot
/// read), normalised, without duplicates; a value that cannot be a tag is a
/// 400 naming `tag`.
pub struct TagFilter(pub Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for TagFilter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        tag_filter(parts.uri.query()).map(TagFilter)
    }
}

impl OperationInput for TagFilter {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let parameter = Parameter::Query {
            parameter_data: ParameterData {
                name: "tag".into(),
                description: Some(
                    "Only links with this tag; repeat it (`tag=a&tag=b`) for links with all of \
                     them. Compared normalised (`Work` is `work`)."
                        .into(),
                ),
                required: false,
                deprecated: None,
                format: ParameterSchemaOrContent::Schema(SchemaObject {
                    json_schema: ctx.schema.subschema_for::<Vec<String>>(),
                    example: None,
                    external_docs: None,
                }),
                example: Some(serde_json::json!(["newsletter"])),
                examples: Default::default(),
                explode: Some(true),
                extensions: Default::default(),
            },
            allow_reserved: false,
            style: QueryStyle::Form,
            allow_empty_value: None,
        };
        aide::operation::add_parameters(ctx, operation, [parameter]);
    }
}

fn tag_filter(raw_query: Option<&str>) -> Result<Vec<String>, ApiError> {
    let raw: Vec<String> = url::form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == "tag")
        .map(|(_, value)| value.into_owned())
        .collect();
    let mut tags = Vec::with_capacity(raw.len());
    for value in &raw {
        tags.push(tags::normalise(value).ok_or_else(|| {
            ApiError::field(
                "tag",
                "must be a tag: 1-50 characters of letters, digits, '-', '_', '.' and spaces",
            )
        })?);
    }
    tags.sort_unstable();
    tags.dedup();
    Ok(tags)
}

operation! {
    /// Create a link
    ///
    /// Generates a 6-character base62 code unless `short_code` is given. Answers 201 with
    /// `Location: /urls/{id}`; every link answer carries `short_url` (`PUBLIC_BASE_URL` and the
    /// code). Logs a `created` event. `original_url` must be an absolute http(s) URL with a host and no whitespace,
    /// control characters or userinfo (400 otherwise); a target on this service's own public
    /// hosts or a blocklisted domain is 422. Optional link rules, decided by the redirect
    /// service on every request: `redirect_type` (301, 302, 307, 308; default
    /// `DEFAULT_REDIRECT_TYPE`), `expires_at`, `max_clicks`, `fallback_url`, `forward_query`,
    /// `rules` (first match by `device`, `os`, `language`; any problem in them is 422 with
    /// its path) and `password` (stored as an argon2id hash, never returned:
    /// `password_protected` says whether there is one). `tags`: up to 20, normalised (trimmed,
    /// lower-cased, inner spaces collapsed), sorted, duplicates dropped; each 1–50 characters
    /// of letters, digits, `-`, `_`, `.` and spaces (400 naming `tags` otherwise).
    ///
    /// `find_if_exists: true`: when the user already has an active link to the same
    /// `original_url` (and the same `short_code`, when one is given), that link is answered
    /// with 200 (and its `Location`) instead; nothing is created or logged. Concurrent calls for
    /// the same user and URL are serialised, so they answer one link.
    fn create_link_docs(op) tag "urls" {
        let op = conflict(not_found(op, UserId::NOT_FOUND), "short_code already exists");
        unprocessable(op, TARGET_REFUSED)
    }
}

async fn create_link(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewLink>,
) -> Result<Propagated<CreatedAt<Link>>, ApiError> {
    caller.require_acting_as(new.user_id)?;
    let committed = links::create(&state, new).await?;
    Ok(committed
        .map(|made| CreatedAt {
            location: format!("/urls/{}", made.link.id),
            value: made.link,
            existing: made.existing,
        })
        .into())
}

/// The body of `POST /urls/bulk`: a JSON array, or a multipart upload
/// whose `file` field is a CSV. Either may be at most `CSV_MAX_BYTES`.
pub enum BulkBody {
    Json(bytes::Bytes),
    Csv(CsvUpload),
}

impl FromRequest<AppState> for BulkBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let multipart = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("multipart/form-data"));
        if multipart {
            let Ok(upload) = CsvUpload::from_request(req, state).await;
            return Ok(BulkBody::Csv(upload));
        }
        let limit = state.config.csv_max_bytes;
        axum::body::to_bytes(req.into_body(), limit)
            .await
            .map(BulkBody::Json)
            .map_err(|_| ApiError::PayloadTooLarge(format!("body exceeds {limit} bytes")))
    }
}

impl OperationInput for BulkBody {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        // Each item is checked on its own and a bad one is reported in the
        // answer's `errors`, so the request accepts any array (up to 1,000
        // items; more is a 413): documenting the items as `NewLink`, or a
        // `maxItems`, would promise a 400 that never comes.
        <Json<Vec<serde_json::Map<String, serde_json::Value>>> as OperationInput>::operation_input(
            ctx, operation,
        );
        if let Some(aide::openapi::ReferenceOr::Item(body)) = &mut operation.request_body {
            if let Some(json) = body.content.get_mut("application/json") {
                json.schema = Some(SchemaObject {
                    json_schema: schemars::json_schema!({
                        "type": "array",
                        "description": "Up to 1,000 `POST /urls` bodies (schema `NewLink`; more is 413). Each item is checked on its own: one that is not a valid body (or not an object) is reported in the answer's `errors` (with its status and `details`), never rejected with the request.",
                        "items": {}
                    }),
                    example: None,
                    external_docs: None,
                });
            }
            let csv = schemars::json_schema!({
                "type": "object",
                "properties": {"file": {
                    "type": "string",
                    "format": "binary",
                    "description": "CSV: user_id,original_url,title,short_code,tags (tags `;`-separated)"
                }},
                "required": ["file"]
            });
            body.content.insert(
                "multipart/form-data".into(),
                aide::openapi::MediaType {
                    schema: Some(SchemaObject {
                        json_schema: csv,
                        example: None,
                        external_docs: None,
                    }),
                    ..Default::default()
                },
            );
        }
    }
}

operation! {
    /// Create links in bulk
    ///
    /// Up to 1,000 links: a JSON array of `POST /urls` bodies, or a multipart/form-data upload
    /// whose `file` field is a CSV with the header `user_id,original_url,title,short_code,tags`
    /// (`user_id` and `original_url` required, any order; `tags` separated by `;`). Each row is
    /// validated and written as `POST /urls` would (`find_if_exists` included); a bad row never
    /// stops the others. Always 200 when the request itself is usable (a multi-status
    /// report): `count` rows, `created`, `existing` (found by `find_if_exists`), `links` (each
    /// row's link with its 1-based `row`) and `errors` (`{row, status, error, details}`, with
    /// the status `POST /urls` would have answered). The created links commit together and
    /// log their `created` events. More than 1,000 rows or `CSV_MAX_BYTES`: 413; not an array,
    /// a bad CSV header: 400.
    fn bulk_create_docs(op) tag "urls" {
        op.response_with::<413, Json<ErrorBody>, _>(|r| {
            r.description("More than 1,000 rows, or a body larger than CSV_MAX_BYTES")
        })
    }
}

async fn bulk_create(
    State(state): State<AppState>,
    caller: Caller,
    body: BulkBody,
) -> Result<Propagated<Json<BulkLinksReport>>, ApiError> {
    let rows = match body {
        BulkBody::Json(bytes) => bulk::rows_from_json(&bytes)?,
        BulkBody::Csv(upload) => {
            let limit = state.config.csv_max_bytes;
            let bytes = upload
                .import_with(|stream| read_capped(stream, limit))
                .await?;
            bulk::rows_from_csv(&bytes)?
        }
    };
    let report = bulk::create_all(&state, rows, |user| caller.require_acting_as(user)).await?;
    Ok(report.map(Json).into())
}

/// The whole upload, or a 413 past `limit` bytes.
async fn read_capped(
    mut stream: crate::import::UploadStream,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("could not read the upload: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "upload exceeds {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

operation! {
    /// Get a link
    ///
    /// Deactivated and deleted links still read back, with `is_active: false`.
    fn get_link_docs(op) tag "urls" { not_found(op, LinkId::NOT_FOUND) }
}

async fn get_link(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<LinkId>,
) -> Result<Json<Link>, ApiError> {
    let id = id.get()?;
    caller.check_link(&state, id).await?;
    Ok(Json(links::get(&state, id).await?))
}

operation! {
    /// Update a link
    ///
    /// Any of `title`, `tags` (replacing the link's; `null` or `[]` removes them), `is_active`
    /// (strict boolean), `original_url` (the rules of
    /// `POST /urls`), and the link rules of `POST /urls` (`null` clears `expires_at`,
    /// `max_clicks`, `fallback_url`, `rules` and `password`). Bumps `updated_at`; logs one
    /// `updated` event per changed field (a password as `[redacted]`); every change reaches
    /// the redirect replicas before the answer (`Shortline-Propagation`).
    fn update_link_docs(op) tag "urls" {
        unprocessable(not_found(op, LinkId::NOT_FOUND), TARGET_REFUSED)
    }
}

async fn update_link(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<LinkId>,
    JsonBody(patch): JsonBody<LinkPatch>,
) -> Result<Propagated<Json<Link>>, ApiError> {
    let id = id.get()?;
    caller.check_link(&state, id).await?;
    Ok(links::update(&state, id, patch).await?.map(Json).into())
}

operation! {
    /// Delete a link
    ///
    /// Soft delete: `is_active=false` and a `deleted` event. A second delete is 404.
    fn delete_link_docs(op) tag "urls" { not_found(op, LinkId::NOT_FOUND) }
}

async fn delete_link(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<LinkId>,
) -> Result<Propagated<NoContent>, ApiError> {
    let id = id.get()?;
    caller.check_link(&state, id).await?;
    Ok(links::delete(&state, id).await?.map(|()| NoContent).into())
}

operation! {
    /// A link's events
    ///
    /// Ordered by id; paging as for `GET /events` (`page`/`per_page`, or keyset `after_id`;
    /// a page cut short by its size carries `Link: <…>; rel="next"`).
    fn link_events_docs(op) tag "urls" { not_found(op, LinkId::NOT_FOUND) }
}

async fn link_events(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<LinkId>,
    Params(p): Params<LinkEventsParams>,
) -> Result<Listed<Event>, ApiError> {
    let id = id.get()?;
    caller.check_link(&state, id).await?;
    let page = Page::resolve_keyset(p.page, p.per_page, p.after_id.as_deref())?;
    let listing = events::for_link(&state, id, page).await?;
    Ok(Listed::new(
        listing,
        page,
        &ListQuery::new(format!("/urls/{id}/events")),
    ))
}

operation! {
    /// A link's statistics
    ///
    /// All-time `redirect_count` and `last_redirect_at`, plus, over the range `from`..`to`
    /// (UTC; default the 7 days before now): `series`, redirects per `hour` or `day` bucket
    /// with empty buckets as 0 (at most 2000 buckets), and, for the range's days,
    /// `top_referrers` (10), `browsers`, `operating_systems`, `devices` and `bots`. Bad
    /// values, `from` after `to` or too many buckets: 400 naming the field.
    fn link_stats_docs(op) tag "urls" { not_found(op, LinkId::NOT_FOUND) }
}

async fn link_stats(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<LinkId>,
    Params(p): Params<StatsParams>,
) -> Result<Json<LinkStats>, ApiError> {
    let id = id.get()?;
    caller.check_link(&state, id).await?;
    let range = StatsRange::parse(
        p.from.as_deref(),
        p.to.as_deref(),
        p.interval.as_deref(),
        chrono::Utc::now(),
    )?;
    Ok(Json(links::stats::stats(&state, id, range).await?))
}
