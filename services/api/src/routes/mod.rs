//! HTTP handlers: parse the request, call the domain, map the result. Each
//! handler has an operation-documentation function beside it, made with
//! [`operation!`] from `///` lines: its summary, description and documented
//! error answers in /openapi.json.

pub mod domains;
pub mod events;
pub mod health;
pub mod keys;
pub mod links;
pub mod qr;
pub mod tags;
pub mod users;

use aide::axum::ApiRouter;
use aide::generate::GenContext;
use aide::openapi::{
    Header, HeaderStyle, Operation, ParameterSchemaOrContent, ReferenceOr, Response as DocResponse,
    SchemaObject, StatusCode as DocStatus,
};
use aide::operation::OperationOutput;
use aide::transform::TransformOperation;
use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::ErrorBody;
use crate::mutation::Committed;
use crate::outbox::Propagation;
use crate::paging::{Listing, Page, Rows};
use crate::state::AppState;

/// Defines the OpenAPI documentation of one operation as a function for
/// aide's `get_with`/`post_with`/...: the `///` lines above it give the
/// summary (the first line) and the description (the lines after the blank
/// one, joined with spaces; blank lines between them start a new paragraph),
/// `tag` the group, and the optional body adds what the lines cannot say (the
/// documented error answers) to `op`, which arrives already described.
///
/// ```ignore
/// operation! {
///     /// Delete a link
///     ///
///     /// Soft delete: `is_active=false` and a `deleted` event.
///     fn delete_link_docs(op) tag "urls" { not_found(op, LinkId::NOT_FOUND) }
/// }
/// ```
macro_rules! operation {
    ($(#[doc = $doc:literal])* fn $name:ident($op:ident) tag $tag:literal $body:block) => {
        $(#[doc = $doc])*
        fn $name(
            $op: ::aide::transform::TransformOperation<'_>,
        ) -> ::aide::transform::TransformOperation<'_> {
            let $op = $crate::routes::described($op, $tag, &[$($doc),*]);
            $body
        }
    };
    ($(#[doc = $doc:literal])* fn $name:ident tag $tag:literal;) => {
        $crate::routes::operation! { $(#[doc = $doc])* fn $name(op) tag $tag { op } }
    };
}
pub(crate) use operation;

/// Sets `op`'s tag, summary and description from the doc lines of an
/// [`operation!`] (each with the leading space `///` leaves).
pub fn described<'a>(
    op: TransformOperation<'a>,
    tag: &str,
    doc: &[&str],
) -> TransformOperation<'a> {
    let mut lines = doc.iter().map(|line| line.trim());
    let op = op.tag(tag).summary(lines.next().unwrap_or_default());
    let mut paragraphs: Vec<String> = Vec::new();
    let mut open = false;
    for line in lines {
        match (line.is_empty(), paragraphs.last_mut()) {
            (true, _) => open = false,
            (false, Some(last)) if open => {
                last.push(' ');
                last.push_str(line);
            }
            (false, _) => {
                paragraphs.push(line.to_owned());
                open = true;
            }
        }
    }
    if paragraphs.is_empty() {
        op
    } else {
        op.description(&paragraphs.join("\n\n"))
    }
}

/// Every API route (the redirect route lives in the redirect service).
pub fn api_routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .merge(health::routes())
        .merge(users::routes())
        .merge(links::routes())
        .merge(qr::routes())
        .merge(events::routes())
        .merge(keys::routes())
        .merge(domains::routes())
        .merge(tags::routes())
}

/// `201 Created` with a JSON body.
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, Json(self.0)).into_response()
    }
}

impl<T: JsonSchema> OperationOutput for Created<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        Json::<T>::operation_response(ctx, op)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|mut r| {
                r.description = "Created".into();
                vec![(Some(DocStatus::Code(201)), r)]
            })
            .unwrap_or_default()
    }
}

/// A resource at `location`: `201 Created` with `Location` when it was
/// made now, `200 OK` (same body and header) when an existing one was found
/// instead (`find_if_exists`).
pub struct CreatedAt<T> {
    pub location: String,
    pub value: T,
    pub existing: bool,
}

impl<T: Serialize> IntoResponse for CreatedAt<T> {
    fn into_response(self) -> Response {
        let status = if self.existing {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        let mut res = (status, Json(self.value)).into_response();
        if let Ok(location) = HeaderValue::from_str(&self.location) {
            res.headers_mut().insert(header::LOCATION, location);
        }
        res
    }
}

impl<T: JsonSchema> OperationOutput for CreatedAt<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        Json::<T>::operation_response(ctx, op)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        let Some(res) = Self::operation_response(ctx, op) else {
            return Vec::new();
        };
        let with_location = |mut r: DocResponse, description: &str, ctx: &mut GenContext| {
            r.description = description.into();
            r.headers.insert(
                "Location".into(),
                optional_string_header(ctx, "The resource's path, e.g. `/urls/42`."),
            );
            r
        };
        vec![
            (
                Some(DocStatus::Code(201)),
                with_location(res.clone(), "Created", ctx),
            ),
            (
                Some(DocStatus::Code(200)),
                with_location(
                    res,
                    "An existing resource, found instead of creating one (`find_if_exists`)",
                    ctx,
                ),
            ),
        ]
    }
}

/// An answer to a change that redirects may depend on, with
/// `Shortline-Propagation: acknowledged` when every redirect replica dropped
/// the link from its caches before the answer, `unconfirmed` when not (NATS
/// away or a replica slow: Valkey holds the API's own tombstone and replicas
/// without the change stream re-read within a second).
pub struct Propagated<R>(pub R, pub Propagation);

impl<R> From<Committed<R>> for Propagated<R> {
    fn from(committed: Committed<R>) -> Self {
        Propagated(committed.value, committed.propagation)
    }
}

/// The response header naming how far a change has propagated.
pub const PROPAGATION_HEADER: &str = "shortline-propagation";

impl<R: IntoResponse> IntoResponse for Propagated<R> {
    fn into_response(self) -> Response {
        let mut res = self.0.into_response();
        res.headers_mut().insert(
            PROPAGATION_HEADER,
            HeaderValue::from_static(self.1.header_value()),
        );
        res
    }
}

impl<R: OperationOutput> OperationOutput for Propagated<R> {
    type Inner = R::Inner;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        R::operation_response(ctx, op).map(|r| with_propagation_header(ctx, r))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        R::inferred_responses(ctx, op)
            .into_iter()
            .map(|(status, r)| (status, with_propagation_header(ctx, r)))
            .collect()
    }
}

fn with_propagation_header(ctx: &mut GenContext, mut res: DocResponse) -> DocResponse {
    res.headers.insert(
        "Shortline-Propagation".into(),
        optional_string_header(
            ctx,
            "`acknowledged`: every redirect replica dropped the link from its caches before \
             this answer. `unconfirmed`: not confirmed (NATS away or a replica slow); the API \
             tombstoned the link in Valkey itself and replicas that lost the change stream \
             re-read within a second.",
        ),
    );
    res
}

/// The documentation of an optional response header holding a string.
fn optional_string_header(ctx: &mut GenContext, description: &str) -> ReferenceOr<Header> {
    ReferenceOr::Item(Header {
        description: Some(description.to_owned()),
        style: HeaderStyle::Simple,
        required: false,
        deprecated: None,
        format: ParameterSchemaOrContent::Schema(SchemaObject {
            json_schema: ctx.schema.subschema_for::<String>(),
            example: None,
            external_docs: None,
        }),
        example: None,
        examples: Default::default(),
        extensions: Default::default(),
    })
}

/// Documents a 404 with the given message (an id type's
/// [`NOT_FOUND`](crate::ids::ResourceId::NOT_FOUND)).
pub fn not_found<'a>(op: TransformOperation<'a>, message: &str) -> TransformOperation<'a> {
    op.response_with::<404, Json<ErrorBody>, _>(|r| r.description(message))
}

/// Documents a 409 with the given message.
pub fn conflict<'a>(op: TransformOperation<'a>, message: &'static str) -> TransformOperation<'a> {
    op.response_with::<409, Json<ErrorBody>, _>(|r| r.description(message))
}

/// Documents a 422 (a well-formed value a policy refuses) with the given message.
pub fn unprocessable<'a>(
    op: TransformOperation<'a>,
    message: &'static str,
) -> TransformOperation<'a> {
    op.response_with::<422, Json<ErrorBody>, _>(|r| r.description(message))
}

/// `200` with a JSON array: a page, serialised at once, or every match,
/// streamed as a chunked body (see `row_stream`). [`Listed`] documents it
/// as `Json<Vec<T>>`.
pub struct ListOf<T>(pub Rows<T>);

impl<T> IntoResponse for ListOf<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Serialize + Send + Unpin + 'static,
{
    fn into_response(self) -> Response {
        match self.0 {
            Rows::Page(slice) => Json(slice.items).into_response(),
            Rows::All(rows) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                Body::from_stream(rows.into_body_stream()),
            )
                .into_response(),
        }
    }
}

/// The request of a list without its paging: the path and the filters (a
/// name may repeat, `tag=a&tag=b`), from which the `Link` header's URLs are
/// made.
#[derive(Debug, Clone)]
pub struct ListQuery {
    path: String,
    pairs: Vec<(&'static str, String)>,
}

impl ListQuery {
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            pairs: Vec::new(),
        }
    }

    /// Adds `name=value` when there is a value.
    pub fn with(mut self, name: &'static str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.pairs.push((name, value.to_string()));
        }
        self
    }

    /// Adds `name=value` for each value.
    pub fn with_each<V: ToString>(
        mut self,
        name: &'static str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        for value in values {
            self.pairs.push((name, value.to_string()));
        }
        self
    }

    /// The path with the filters and then `paging`.
    fn url(&self, paging: &[(&str, i64)]) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.pairs {
            query.append_pair(name, value);
        }
        for (name, value) in paging {
            query.append_pair(name, &value.to_string());
        }
        format!("{}?{}", self.path, query.finish())
    }
}

/// [`ListOf`] with `X-Total-Count` (the rows matching the filters, paging
/// aside) and, for a page, RFC 8288 `Link` headers: `page`/`per_page` pages
/// get `first`, `prev` (unless on the first page), `next` (unless on the
/// last) and `last`; a keyset page (`after_id`) cut short by its size gets
/// `next` with `after_id` set to its last id. The URLs keep the request's
/// path and filters.
pub struct Listed<T> {
    pub rows: ListOf<T>,
    pub total: i64,
    /// `(rel, url)`, in order.
    pub links: Vec<(&'static str, String)>,
}

impl<T> Listed<T> {
    pub fn new(listing: Listing<T>, page: Page, query: &ListQuery) -> Self {
        let total = listing.total;
        let mut links = Vec::new();
        match (&listing.rows, page.limit, page.number()) {
            (Rows::Page(slice), Some(per_page), None) => {
                if let Some(after_id) = slice.next_after_id {
                    links.push((
                        "next",
                        query.url(&[("per_page", per_page), ("after_id", after_id)]),
                    ));
                }
            }
            (Rows::Page(_), Some(per_page), Some(number)) => {
                let last = ((total + per_page - 1) / per_page).max(1);
                let at = |n: i64| query.url(&[("page", n), ("per_page", per_page)]);
                links.push(("first", at(1)));
                if number > 1 {
                    links.push(("prev", at((number - 1).min(last))));
                }
                if number < last {
                    links.push(("next", at(number + 1)));
                }
                links.push(("last", at(last)));
            }
            _ => {}
        }
        Self {
            rows: ListOf(listing.rows),
            total,
            links,
        }
    }
}

/// The response header with a list's match count.
pub const TOTAL_COUNT_HEADER: &str = "x-total-count";

impl<T> IntoResponse for Listed<T>
where
    ListOf<T>: IntoResponse,
{
    fn into_response(self) -> Response {
        let mut res = self.rows.into_response();
        res.headers_mut()
            .insert(TOTAL_COUNT_HEADER, HeaderValue::from(self.total));
        let link = self
            .links
            .iter()
            .map(|(rel, url)| format!("<{url}>; rel=\"{rel}\""))
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(link) = (!link.is_empty())
            .then(|| HeaderValue::from_str(&link).ok())
            .flatten()
        {
            res.headers_mut().insert(header::LINK, link);
        }
        res
    }
}

impl<T: JsonSchema> OperationOutput for Listed<T> {
    type Inner = Vec<T>;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        let mut res = Json::<Vec<T>>::operation_response(ctx, op)?;
        res.description = "The matches, ordered by id unless the route says otherwise".into();
        res.headers.insert(
            "X-Total-Count".into(),
            optional_string_header(
                ctx,
                "How many rows match the filters, paging aside (read in the same snapshot as \
                 the rows, streamed unpaged lists included).",
            ),
        );
        res.headers.insert(
            "Link".into(),
            optional_string_header(
                ctx,
                "RFC 8288 links of a page, keeping the filters: with `page`/`per_page`, \
                 `first`, `prev` (not on the first page), `next` (not on the last) and `last`, \
                 e.g. `</urls?user_id=7&page=3&per_page=20>; rel=\"next\"`; with `after_id`, \
                 `next` when the page size cut the list short, with `after_id` set to the \
                 page's last id. None on an unpaged list.",
            ),
        );
        Some(res)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(Some(DocStatus::Code(200)), r)])
            .unwrap_or_default()
    }
}
