//! `GET|HEAD /{short_code}` through the router, and the pieces of a redirect
//! answer that the fast path ([`crate::fast`]) shares with it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::click_record::ClickRecord;
use crate::clicks::{TrustedProxies, anonymize, header_text};
use crate::code::{self, CodeKey};
use crate::error::RedirectError;
use crate::resolve::{Layer, Target};
use crate::state::RedirectState;

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The route template of the redirect (the `http.route` label).
pub const REDIRECT_ROUTE: &str = "/{short_code}";

/// What a click records about the request, taken without copying the whole
/// header map. The client address comes from the TCP peer (when the server
/// runs with connect info; tests calling the router directly have none) and
/// the trusted proxies' `X-Forwarded-For`.
pub struct RequestFacts {
    client_ip: Option<IpAddr>,
    user_agent: Option<HeaderValue>,
    referrer: Option<HeaderValue>,
}

impl RequestFacts {
    pub fn new(proxies: &TrustedProxies, peer: Option<IpAddr>, headers: &HeaderMap) -> Self {
        Self {
            client_ip: proxies.client_ip(peer, headers),
            user_agent: headers.get(header::USER_AGENT).cloned(),
            referrer: headers.get(header::REFERER).cloned(),
        }
    }

    /// The click of a redirect to `target` by this request.
    pub fn click(&self, target: &Target, code: &str) -> ClickRecord {
        ClickRecord {
            url_id: target.url_id,
            user_id: target.user_id,
            short_code: CodeKey::new(code),
            occurred_at: chrono::Utc::now(),
            user_agent: header_text(self.user_agent.as_ref()),
            referrer: header_text(self.referrer.as_ref()),
            ip: self.client_ip.map(anonymize),
        }
    }
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
        Ok(Self::new(&state.trusted_proxies, peer, &parts.headers))
    }
}

/// The redirect answer: 302, `Location` (the stored URL exactly when it is
/// ASCII, else its RFC 3986 form; see [`Target`]), `X-Cache`,
/// no caching by browsers or proxies (a link can change), and an explicit
/// empty length (which the router adds to a HEAD answer by itself, hyper
/// alone does not).
pub fn found(location: HeaderValue, layer: Layer) -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (X_CACHE.clone(), HeaderValue::from_static(layer.x_cache())),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from_static("0")),
        ],
    )
        .into_response()
}

/// Answers 302 with the target's `Location` and `X-Cache`; a GET
/// also records one click.
pub async fn redirect(
    State(state): State<RedirectState>,
    Path(code): Path<String>,
    method: Method,
    facts: RequestFacts,
) -> Result<Response, RedirectError> {
    if !code::is_valid(&code) {
        return Err(RedirectError::NotFound);
    }
    let lookup = state.links.lookup(&code).await?;
    state.metrics.lookup(lookup.layer, lookup.target.is_some());
    let target = lookup.target.ok_or(RedirectError::NotFound)?;
    let Some(location) = target.location() else {
        tracing::warn!(short_code = %code, url_id = target.url_id, "target cannot be a Location header");
        return Err(RedirectError::BadTarget(target.url_id));
    };
    if method == Method::GET {
        state.clicks.record(facts.click(&target, &code));
    }
    Ok(found(location, lookup.layer))
}
