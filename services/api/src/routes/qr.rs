//! `GET /urls/{id}/qr`: a link's short URL as a QR code (SVG or PNG, drawn
//! by [`shortline_shared::qr`]), cacheable by the caller: a strong `ETag`
//! of the text and options, `If-None-Match` answered 304 without drawing.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, Response as DocResponse, SchemaObject, StatusCode};
use aide::operation::OperationOutput;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode as Status, header};
use axum::response::{IntoResponse, Response};
use shortline_shared::qr::{self, QrOptions, QrParamError, QrParams};

use super::{not_found, operation, optional_string_header};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Id, Params};
use crate::ids::{LinkId, ResourceId};
use crate::links;
use crate::state::AppState;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route("/urls/{id}/qr", get_with(link_qr, link_qr_docs))
}

operation! {
    /// A link's QR code
    ///
    /// The link's short URL (`PUBLIC_BASE_URL/short_code`, or the link's domain) as a QR code (error correction
    /// M): `format` `svg` (default) or `png`, `size` the image's width and height in pixels
    /// (64–2048, default 300), `margin` the quiet zone in modules (0–16, default 4); a bad
    /// parameter, or a `size` too small for the code, is 400 naming it. Cacheable: a strong
    /// `ETag` of the text and options, `If-None-Match` answered 304. Deactivated and deleted
    /// links still have one, as `GET /urls/{id}` still reads them.
    fn link_qr_docs(op) tag "urls" { not_found(op, LinkId::NOT_FOUND) }
}

async fn link_qr(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<LinkId>,
    Params(params): Params<QrParams>,
    headers: HeaderMap,
) -> Result<QrAnswer, ApiError> {
    let id = id.get()?;
    let options = QrOptions::parse(&params).map_err(param_error)?;
    caller.check_link(&state, id).await?;
    let link = links::get(&state, id).await?;
    QrAnswer::new(&link.short_url, &options, &headers)
}

fn param_error(e: QrParamError) -> ApiError {
    ApiError::field(e.field, e.problem)
}

/// A QR code, or 304 when the caller holds it already.
pub struct QrAnswer(Response);

impl QrAnswer {
    fn new(text: &str, options: &QrOptions, request: &HeaderMap) -> Result<Self, ApiError> {
        let etag = options.etag(text);
        let etag_value = HeaderValue::try_from(etag.as_str())
            .map_err(|e| ApiError::Internal(format!("QR ETag is no header value: {e}")))?;
        let cache_control = HeaderValue::from_static(qr::PRIVATE_CACHE_CONTROL);
        let held = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| qr::if_none_match(v, &etag));
        if held {
            return Ok(Self(
                (
                    Status::NOT_MODIFIED,
                    [
                        (header::ETAG, etag_value),
                        (header::CACHE_CONTROL, cache_control),
                    ],
                )
                    .into_response(),
            ));
        }
        let image = qr::render(text, options).map_err(|e| match e.as_param_error() {
            Some(problem) => param_error(problem),
            None => ApiError::Internal(format!("QR code not drawn: {e}")),
        })?;
        Ok(Self(
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(image.content_type),
                    ),
                    (header::ETAG, etag_value),
                    (header::CACHE_CONTROL, cache_control),
                ],
                image.bytes,
            )
                .into_response(),
        ))
    }
}

impl IntoResponse for QrAnswer {
    fn into_response(self) -> Response {
        self.0
    }
}

impl OperationOutput for QrAnswer {
    type Inner = Vec<u8>;

    fn operation_response(ctx: &mut GenContext, _op: &mut Operation) -> Option<DocResponse> {
        let image = |description: &str| MediaType {
            schema: Some(SchemaObject {
                json_schema: schemars::json_schema!({
                    "type": "string",
                    "format": "binary",
                    "description": description,
                }),
                example: None,
                external_docs: None,
            }),
            ..Default::default()
        };
        let mut res = DocResponse {
            description: "The QR code".into(),
            content: [
                (
                    "image/svg+xml".to_owned(),
                    image("`format=svg`: an SVG document"),
                ),
                (
                    "image/png".to_owned(),
                    image("`format=png`: a greyscale PNG"),
                ),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        with_cache_headers(ctx, &mut res);
        Some(res)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<StatusCode>, DocResponse)> {
        let Some(ok) = Self::operation_response(ctx, op) else {
            return Vec::new();
        };
        let mut not_modified = DocResponse {
            description: "`If-None-Match` names this image's `ETag`: no body".into(),
            ..Default::default()
        };
        with_cache_headers(ctx, &mut not_modified);
        vec![
            (Some(StatusCode::Code(200)), ok),
            (Some(StatusCode::Code(304)), not_modified),
        ]
    }
}

fn with_cache_headers(ctx: &mut GenContext, res: &mut DocResponse) {
    res.headers.insert(
        "ETag".into(),
        optional_string_header(
            ctx,
            "A strong tag of the encoded text and the options; send it back in `If-None-Match`.",
        ),
    );
    res.headers.insert(
        "Cache-Control".into(),
        optional_string_header(ctx, "`private, max-age=3600`"),
    );
}
