//! Who is calling: API keys in front of every route but the public ones,
//! and the rate limits that go with them.
//!
//! A key comes as `Authorization: Bearer <key>` or `X-API-Key: <key>`.
//! Requests with a valid key are counted against that key's limit; requests
//! without one (or with a bad one) against their client address' limit, so
//! floods of 401s are limited too. Every answer carries the IETF
//! `RateLimit-Policy` and `RateLimit` fields of the bucket it was counted in.
//!
//! `API_AUTH=off` turns all of this off (every caller is an admin, nothing
//! is limited): only for running the contract's test suites on a trusted
//! network. The service warns at start and `/ready` says so.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shortline_shared::client_ip::TrustedProxies;

use crate::config::{ApiConfig, AuthMode};
use crate::error::ApiError;
use crate::ids::{LinkId, UserId};
use crate::keys::KeyVerifier;
use crate::keys::model::Scope;
use crate::ratelimit::{Bucket, Decision, RateLimiter};
use crate::state::AppState;

/// Paths anyone may call without a key.
const PUBLIC_PATHS: &[&str] = &["/health", "/ready", "/openapi.json", "/apidocs", "/metrics"];

/// The caller of a request, as the handlers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub scope: Scope,
    /// The key used (`None` with `API_AUTH=off`).
    pub key_id: Option<i64>,
}

impl Caller {
    /// The caller with `API_AUTH=off`: may do everything.
    pub const OPEN: Caller = Caller {
        scope: Scope::Admin,
        key_id: None,
    };

    /// The user a user key acts as (`None` for admins).
    pub fn user(&self) -> Option<UserId> {
        match self.scope {
            Scope::Admin => None,
            Scope::User(id) => Some(UserId::new(id)),
        }
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.scope {
            Scope::Admin => Ok(()),
            Scope::User(_) => Err(ApiError::Forbidden("This needs an admin key")),
        }
    }

    /// 403 when a user key acts for someone else.
    pub fn require_acting_as(&self, user_id: UserId) -> Result<(), ApiError> {
        match self.user() {
            Some(own) if own != user_id => Err(ApiError::Forbidden(
                "A user key can only act for its own user",
            )),
            _ => Ok(()),
        }
    }

    /// Whether the caller may see a resource owned by `user_id`.
    pub fn can_see(&self, user_id: UserId) -> bool {
        self.user().is_none_or(|own| own == user_id)
    }

    /// The `user_id` filter a list runs with: as requested for admins; a
    /// user key sees only its own user's rows, so asking for another user
    /// matches nothing ([`NO_USER`]).
    pub fn narrow(&self, requested: Option<UserId>) -> Option<UserId> {
        match (self.user(), requested) {
            (None, requested) => requested,
            (Some(own), None) => Some(own),
            (Some(own), Some(asked)) if asked == own => Some(own),
            (Some(_), Some(_)) => Some(NO_USER),
        }
    }

    /// 404 (`URL not found`) when a user key asks for another user's link:
    /// to such a key, other users' links do not exist.
    pub async fn check_link(&self, state: &AppState, url_id: LinkId) -> Result<(), ApiError> {
        let Some(own) = self.user() else {
            return Ok(());
        };
        match crate::links::owner(state, url_id).await? {
            Some(owner) if owner == own => Ok(()),
            _ => Err(LinkId::not_found()),
        }
    }
}

/// A user id no row has (ids start at 1): the filter of a list that must
/// come back empty.
pub const NO_USER: UserId = UserId::new(0);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .copied()
            .unwrap_or(Caller::OPEN))
    }
}

impl aide::operation::OperationInput for Caller {}

/// Key checking and rate limiting, shared by the middleware.
#[derive(Clone)]
pub struct Access {
    pub mode: AuthMode,
    pub verifier: KeyVerifier,
    /// `None`: no Valkey configured, nothing is limited.
    pub limiter: Option<RateLimiter>,
    trusted_proxies: Arc<TrustedProxies>,
    default_limit: u32,
    anonymous_limit: u32,
}

impl Access {
    pub fn new(config: &ApiConfig, verifier: KeyVerifier, limiter: Option<RateLimiter>) -> Self {
        Self {
            mode: config.api_auth,
            verifier,
            limiter,
            trusted_proxies: Arc::new(TrustedProxies::new(config.trusted_proxies.clone())),
            default_limit: config.rate_limit_per_minute,
            anonymous_limit: config.rate_limit_anonymous_per_minute,
        }
    }

    async fn limit(&self, bucket: Bucket, id: &str, limit: u32) -> Option<Decision> {
        if limit == 0 {
            return None;
        }
        self.limiter.as_ref()?.check(bucket, id, limit).await
    }
}

/// The middleware: identifies the caller, counts the request, and answers
/// 401 / 429 itself when it must.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let access = &state.access;
    if access.mode == AuthMode::Off || PUBLIC_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let presented = presented_key(req.headers()).map(|r| r.map(str::to_owned));
    let verified = match presented {
        Some(Ok(text)) => Some(access.verifier.verify(&text).await),
        Some(Err(e)) => Some(Err(e)),
        None => None,
    };
    let key = match verified {
        Some(Ok(key)) => key,
        Some(Err(ApiError::Unauthorized(why))) => {
            let ip = client_ip(access, &req);
            return refuse(access, ip, ApiError::Unauthorized(why)).await;
        }
        Some(Err(other)) => return other.into_response(),
        None => {
            let ip = client_ip(access, &req);
            return refuse(access, ip, ApiError::Unauthorized("API key required")).await;
        }
    };
    let limit = key.rate_limit_per_minute.unwrap_or(access.default_limit);
    let decision = access
        .limit(Bucket::Key, &key.key_id.to_string(), limit)
        .await;
    if let Some(d) = decision
        && !d.allowed
    {
        return limited(d);
    }
    req.extensions_mut().insert(Caller {
        scope: key.scope,
        key_id: Some(key.key_id),
    });
    let mut response = next.run(req).await;
    if let Some(d) = decision {
        d.write_headers(response.headers_mut());
    }
    response
}

/// A 401, counted against the client address' limit (429 once over it).
async fn refuse(access: &Access, ip: String, error: ApiError) -> Response {
    let decision = access
        .limit(Bucket::Address, &ip, access.anonymous_limit)
        .await;
    match decision {
        Some(d) if !d.allowed => limited(d),
        other => {
            let mut response = error.into_response();
            if let Some(d) = other {
                d.write_headers(response.headers_mut());
            }
            response
        }
    }
}

fn limited(d: Decision) -> Response {
    let mut response = ApiError::RateLimited(d.retry_after_secs).into_response();
    d.write_headers(response.headers_mut());
    response
}

fn client_ip(access: &Access, req: &Request) -> String {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    access
        .trusted_proxies
        .client_ip(peer, req.headers())
        .map_or_else(|| "unknown".to_owned(), |ip: IpAddr| ip.to_string())
}

/// The key a request presents, if any: `Authorization: Bearer <key>` or
/// `X-API-Key: <key>`. A header that is there but unusable is a 401.
fn presented_key(headers: &HeaderMap) -> Option<Result<&str, ApiError>> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().ok();
        return Some(
            text.and_then(|t| {
                let (scheme, token) = t.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(ApiError::Unauthorized(
                "Authorization must be `Bearer <API key>`",
            )),
        );
    }
    headers.get("x-api-key").map(|value| {
        value
            .to_str()
            .map(str::trim)
            .map_err(|_| ApiError::Unauthorized("Invalid API key"))
    })
}
