//! `GET|HEAD /{short_code}/qr`: the public QR code of an active link (like
//! Shlink's `/{shortCode}/qr-code`), encoding `<PUBLIC_BASE_URL>/<code>`
//! on the default domain and `<scheme>://<domain>/<code>` on a custom
//! domain (only a registered domain with that code gets here: the lookup
//! is by `Host`, like the redirect's), drawn by
//! [`shortline_shared::qr`] (`format`, `size`, `margin` as in the API's
//! `GET /urls/{id}/qr`).
//!
//! The link is found through the same caches as a redirect, and unknown or
//! inactive codes get the redirect's 404; but this is no visit: no click is
//! recorded and no rule, limit or password is applied (the image holds only
//! the short URL, which the redirect then decides on). The fast path never
//! sees these requests (a path of two segments is no code), so they cost
//! the redirect nothing. Answers carry a strong `ETag` and
//! `Cache-Control: public, max-age=3600`; `If-None-Match` is answered 304
//! without drawing.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shortline_shared::qr::{self, QrOptions, QrParams};

use crate::code;
use crate::error::RedirectError;
use crate::pages;
use crate::state::RedirectState;

/// `GET|HEAD /{short_code}/qr`.
pub async fn link_qr(
    State(state): State<RedirectState>,
    Path(code): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match answer(&state, &code, query.as_deref(), &headers).await {
        Ok(response) => response,
        Err(e) => state.pages.error(e, pages::wants_html(&headers), &code),
    }
}

async fn answer(
    state: &RedirectState,
    code: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, RedirectError> {
    let options =
        QrOptions::parse(&params(query)).map_err(|e| RedirectError::BadParameter(e.to_string()))?;
    if !code::is_valid(code) {
        return Err(RedirectError::NotFound);
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let lookup = state.links.lookup(&state.hosts.key(host, code)).await?;
    if lookup.target.is_none() {
        return Err(RedirectError::NotFound);
    }
    let text = match state.hosts.domain(host) {
        None => format!("{}/{code}", state.public_base_url),
        Some(domain) => {
            let scheme = state
                .public_base_url
                .split_once("://")
                .map_or("https", |(scheme, _)| scheme);
            format!("{scheme}://{domain}/{code}")
        }
    };
    let etag = options.etag(&text);
    let etag_value = HeaderValue::try_from(etag.as_str())
        .map_err(|e| RedirectError::QrNotDrawn(e.to_string()))?;
    let cache_control = HeaderValue::from_static(qr::PUBLIC_CACHE_CONTROL);
    let held = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| qr::if_none_match(v, &etag));
    if held {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_value),
                (header::CACHE_CONTROL, cache_control),
            ],
        )
            .into_response());
    }
    let image = qr::render(&text, &options).map_err(|e| match e.as_param_error() {
        Some(problem) => RedirectError::BadParameter(problem.to_string()),
        None => RedirectError::QrNotDrawn(e.to_string()),
    })?;
    Ok((
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
        .into_response())
}

/// The QR parameters of a query string (others are ignored; a repeated
/// one counts as given last).
fn params(query: Option<&str>) -> QrParams {
    let mut params = QrParams::default();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let slot = match name.as_ref() {
            "format" => &mut params.format,
            "size" => &mut params.size,
            "margin" => &mut params.margin,
            _ => continue,
        };
        *slot = Some(value.into_owned());
    }
    params
}
