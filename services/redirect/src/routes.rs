//! `GET|HEAD /{short_code}`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shortline_shared::events::Click;

use crate::clicks::{anonymize, header_text};
use crate::error::RedirectError;
use crate::resolve::MAX_CODE_LEN;
use crate::state::RedirectState;

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// What a click records about the request, taken without copying the whole
/// header map. The client address comes from the TCP peer (when the server
/// runs with connect info; tests calling the router directly have none) and
/// the trusted proxies' `X-Forwarded-For`.
pub struct RequestFacts {
    client_ip: Option<IpAddr>,
    user_agent: Option<HeaderValue>,
    referrer: Option<HeaderValue>,
}

impl FromRequestParts<RedirectState> for RequestFacts {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &RedirectState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Self {
            client_ip: state.trusted_proxies.client_ip(peer, &parts.headers),
            user_agent: parts.headers.get(header::USER_AGENT).cloned(),
            referrer: parts.headers.get(header::REFERER).cloned(),
        })
    }
}

/// Answers 302 with `Location` exactly the stored URL and `X-Cache`; a GET
/// also records one click.
pub async fn redirect(
    State(state): State<RedirectState>,
    Path(code): Path<String>,
    method: Method,
    facts: RequestFacts,
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
        let ip = facts.client_ip.map(|ip| anonymize(ip).to_string());
        state.clicks.record(Click {
            event_id: ulid::Ulid::generate(),
            url_id: target.url_id,
            user_id: target.user_id,
            short_code: code,
            occurred_at: chrono::Utc::now(),
            user_agent: header_text(facts.user_agent.as_ref()),
            referrer: header_text(facts.referrer.as_ref()),
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
