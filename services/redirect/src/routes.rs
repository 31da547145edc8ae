//! `GET|HEAD|POST /{short_code}` through the router, and the pieces of a
//! redirect answer that the fast path ([`crate::fast`]) shares with it.
//!
//! A link without rules is answered from its cached target alone. A link
//! with rules ([`crate::policy`]) is decided in this order: expired (410 or
//! its fallback), password (form, header or 401; attempts limited), click
//! limit (exactly `max_clicks` across replicas, counted in Valkey; then 410
//! or the fallback), then the first matching rule's target or
//! `original_url`, with the query forwarded when asked.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::click_record::ClickRecord;
use crate::clicks::{TrustedProxies, anonymize, header_text};
use crate::code::{self, CodeKey};
use crate::error::RedirectError;
use crate::limits::{Attempt, Clicks, Uncounted};
use crate::pages;
use crate::policy::{Chosen, Outcome, Policy, Visitor};
use crate::resolve::{Layer, Target};
use crate::state::{RedirectState, Refusal};

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The route template of the redirect (the `http.route` label).
pub const REDIRECT_ROUTE: &str = "/{short_code}";

/// What a click records about the request, taken without copying the whole
/// header map. The client address comes from the TCP peer (when the server
/// runs with connect info; tests calling the router directly have none) and
/// the trusted proxies' `X-Forwarded-For`.
pub struct RequestFacts {
    pub client_ip: Option<IpAddr>,
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

    /// The click of a redirect to `target` by this request; `outcome` for
    /// links with rules (which of their URLs it went to).
    pub fn click(&self, target: &Target, code: &str, outcome: Option<Outcome>) -> ClickRecord {
        ClickRecord {
            outcome,
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

/// `Cache-Control` of every redirect that must not be kept.
pub const NO_STORE: HeaderValue = HeaderValue::from_static("private, no-store");

/// The redirect answer: the link's status (302 unless it chose 301, 307 or
/// 308), `Location` (the stored URL exactly when it is ASCII, else its
/// RFC 3986 form; see [`Target`]), `X-Cache`, `Cache-Control` (see
/// [`RedirectState::cache_control`]), and an explicit empty length (which
/// the router adds to a HEAD answer by itself, hyper alone does not).
pub fn found(
    status: StatusCode,
    location: HeaderValue,
    layer: Layer,
    cache_control: HeaderValue,
) -> Response {
    (
        status,
        [
            (header::LOCATION, location),
            (X_CACHE.clone(), HeaderValue::from_static(layer.x_cache())),
            (header::CACHE_CONTROL, cache_control),
            (header::CONTENT_LENGTH, HeaderValue::from_static("0")),
        ],
    )
        .into_response()
}

/// The header carrying a protected link's password from non-browser
/// clients.
pub static LINK_PASSWORD: HeaderName = HeaderName::from_static("x-link-password");

/// `GET|HEAD /{short_code}`: the redirect (a GET also records one click),
/// or why not: 404, 410 (expired, out of clicks), 401 (password), as a
/// page for a browser, else as JSON.
pub async fn redirect(
    State(state): State<RedirectState>,
    Path(code): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    facts: RequestFacts,
) -> Response {
    let asked = Asked {
        method: &method,
        headers: &headers,
        query: uri.query(),
        facts: &facts,
        form_password: None,
    };
    match answer(&state, &code, &asked).await {
        Ok(response) => response,
        Err(e) => state.pages.error(e, pages::wants_html(&headers), &code),
    }
}

/// `POST /{short_code}`: the password form of a protected link
/// (`application/x-www-form-urlencoded`, field `password`). The right
/// password answers 303 to the target (one click); a wrong one the form
/// again with 401. Other links answer 405, unknown codes 404.
pub async fn unlock(
    State(state): State<RedirectState>,
    Path(code): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    facts: RequestFacts,
    body: Bytes,
) -> Response {
    let password = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let asked = Asked {
        method: &Method::POST,
        headers: &headers,
        query: uri.query(),
        facts: &facts,
        form_password: Some(&password),
    };
    match answer(&state, &code, &asked).await {
        Ok(response) => response,
        Err(e) => state.pages.error(e, pages::wants_html(&headers), &code),
    }
}

/// A request, as [`answer`] needs it.
struct Asked<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    facts: &'a RequestFacts,
    /// The password posted by the form (`POST` only).
    form_password: Option<&'a str>,
}

impl Asked<'_> {
    fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn visitor(&self) -> Visitor<'_> {
        Visitor::of(self.headers, self.query)
    }

    /// Whether the answer is a click (HEAD only looks).
    fn clicks(&self) -> bool {
        self.method != Method::HEAD
    }
}

async fn answer(
    state: &RedirectState,
    code: &str,
    asked: &Asked<'_>,
) -> Result<Response, RedirectError> {
    if !code::is_valid(code) {
        return Err(RedirectError::NotFound);
    }
    let host = asked.header(&header::HOST);
    let lookup = state.links.lookup(&state.hosts.key(host, code)).await?;
    state.metrics.lookup(lookup.layer, lookup.target.is_some());
    let target = lookup.target.ok_or(RedirectError::NotFound)?;
    let Some(policy) = &target.policy else {
        let Some(location) = target.location() else {
            tracing::warn!(short_code = %code, url_id = target.url_id, "target cannot be a Location header");
            return Err(RedirectError::BadTarget(target.url_id));
        };
        if asked.form_password.is_some() {
            // Only a password form may be posted to a link.
            return Err(RedirectError::MethodNotAllowed);
        }
        if asked.clicks() {
            state.clicks.record(asked.facts.click(&target, code, None));
        }
        return Ok(found(
            target.status,
            location,
            lookup.layer,
            state.cache_control(target.status),
        ));
    };
    let this = Answering {
        state,
        code,
        target: &target,
        policy,
        asked,
        visitor: asked.visitor(),
        layer: lookup.layer,
    };
    this.decide().await
}

/// A request for a link with rules, being decided.
struct Answering<'a> {
    state: &'a RedirectState,
    code: &'a str,
    target: &'a Target,
    policy: &'a Policy,
    asked: &'a Asked<'a>,
    visitor: Visitor<'a>,
    layer: Layer,
}

impl Answering<'_> {
    /// Expiry, password, click limit, then the target (see the module doc).
    async fn decide(&self) -> Result<Response, RedirectError> {
        let (state, target, policy) = (self.state, self.target, self.policy);
        if self.asked.form_password.is_some() && policy.password_hash.is_none() {
            return Err(RedirectError::MethodNotAllowed);
        }
        if policy.expired(chrono::Utc::now()) {
            return self.refuse(Refusal::Expired);
        }
        if let Some(hash) = &policy.password_hash
            && let Some(answer) = self.password_gate(hash).await?
        {
            return Ok(answer);
        }
        if let Some(max) = policy.max_clicks {
            let clicks = state
                .limits
                .click(target.url_id, max, self.asked.clicks())
                .await
                .map_err(refused_uncounted(state))?;
            if clicks == Clicks::Exhausted {
                return self.refuse(Refusal::Exhausted);
            }
        }
        let chosen = policy.choose(target.location_text(), &self.visitor, &state.agents);
        self.go(chosen, target.status)
    }

    /// `None` when the right password was given; else the answer (the
    /// form, 401, 429).
    async fn password_gate(&self, hash: &Arc<str>) -> Result<Option<Response>, RedirectError> {
        let (state, asked, code) = (self.state, self.asked, self.code);
        let given = asked.form_password.or_else(|| {
            asked
                .headers
                .get(&LINK_PASSWORD)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        });
        let html = pages::wants_html(asked.headers) || asked.form_password.is_some();
        let Some(given) = given else {
            return if html {
                Ok(Some(state.pages.password(StatusCode::OK, code, "")))
            } else {
                Err(RedirectError::PasswordRequired)
            };
        };
        let (url_id, client) = (self.target.url_id, asked.facts.client_ip);
        let attempt = state
            .limits
            .attempt(url_id, client)
            .await
            .map_err(refused_uncounted(state))?;
        if let Attempt::Limited(wait) = attempt {
            state.metrics.refused(Refusal::AttemptsLimited);
            return Err(RedirectError::TooManyAttempts(wait));
        }
        if !password_matches(hash.clone(), given.to_owned()).await {
            state.metrics.refused(Refusal::WrongPassword);
            return if html {
                Ok(Some(state.pages.password(
                    StatusCode::UNAUTHORIZED,
                    code,
                    "Wrong password, try again.",
                )))
            } else {
                Err(RedirectError::WrongPassword)
            };
        }
        state.limits.right_password(url_id, client).await;
        Ok(None)
    }

    /// Redirects to what was chosen, recording the click (not for HEAD).
    fn go(&self, chosen: Chosen, status: StatusCode) -> Result<Response, RedirectError> {
        let (target, asked) = (self.target, self.asked);
        let Ok(location) = HeaderValue::from_str(&chosen.location) else {
            tracing::warn!(short_code = %self.code, url_id = target.url_id, "target cannot be a Location header");
            return Err(RedirectError::BadTarget(target.url_id));
        };
        if asked.clicks() {
            self.state
                .clicks
                .record(asked.facts.click(target, self.code, Some(chosen.outcome)));
        }
        // A posted form is answered with "see other": the browser GETs the target.
        let status = if asked.form_password.is_some() {
            StatusCode::SEE_OTHER
        } else {
            status
        };
        Ok(found(status, location, self.layer, NO_STORE))
    }

    /// An expired or exhausted link: its fallback (a 302, one click), else 410.
    fn refuse(&self, why: Refusal) -> Result<Response, RedirectError> {
        if let Some(fallback) = self.policy.fallback_for(&self.visitor) {
            return self.go(fallback, StatusCode::FOUND);
        }
        self.state.metrics.refused(why);
        Err(RedirectError::Gone(match why {
            Refusal::Exhausted => "This link has reached its click limit",
            _ => "This link has expired",
        }))
    }
}

fn refused_uncounted(state: &RedirectState) -> impl Fn(Uncounted) -> RedirectError + '_ {
    move |e| {
        state.metrics.refused(Refusal::Uncounted);
        RedirectError::Uncounted(e.0)
    }
}

/// Whether `password` matches the argon2 `hash` (off the async threads:
/// a verification takes tens of milliseconds on purpose).
async fn password_matches(hash: Arc<str>, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        use argon2::PasswordVerifier;
        argon2::PasswordHash::new(&hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}
