//! `GET|HEAD /{short_code}`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shortline_shared::events::Click;

use crate::clicks::{anonymize, header_text};
use crate::error::RedirectError;
use crate::resolve::MAX_CODE_LEN;
use crate::state::RedirectState;

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The TCP peer, when the server was started with connect info (tests that
/// call the router directly have none).
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Answers 302 with `Location` exactly the stored URL and `X-Cache`; a GET
/// also records one click.
pub async fn redirect(
    State(state): State<RedirectState>,
    Path(code): Path<String>,
    method: Method,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, RedirectError> {
    if code.len() > MAX_CODE_LEN {
        return Err(RedirectError::NotFound);
    }
    let lookup = state.links.lookup(&code).await?;
    state
        .metrics
        .lookup(lookup.layer.as_str(), lookup.target.is_some());
    let target = lookup.target.ok_or(RedirectError::NotFound)?;
    let location = HeaderValue::from_str(&target.original_url)
        .map_err(|_| RedirectError::BadTarget(target.url_id))?;
    if method == Method::GET {
        let ip = state
            .trusted_proxies
            .client_ip(peer.0, &headers)
            .map(|ip| anonymize(ip).to_string());
        state.clicks.record(Click {
            event_id: ulid::Ulid::generate(),
            url_id: target.url_id,
            user_id: target.user_id,
            short_code: code,
            occurred_at: chrono::Utc::now(),
            user_agent: header_text(&headers, header::USER_AGENT),
            referrer: header_text(&headers, header::REFERER),
            ip,
        });
    }
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                X_CACHE.clone(),
                HeaderValue::from_static(lookup.layer.x_cache()),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
        ],
    )
        .into_response())
}
