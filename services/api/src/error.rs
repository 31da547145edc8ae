//! The API's one error type, and how each case becomes an HTTP response.
//!
//! Every error body is an RFC 9457 problem document that keeps the
//! contract's `error` field: `{"type", "title", "status", "detail",
//! "error"}`; validation failures add `"details": {"<field>": "<problem>"}`.
//! Field-level problems and malformed bodies are both `400`; `422` (same
//! shape) is only for a well-formed value that a policy refuses (a link
//! target on the blocklist) and for problems in a link's `rules`, named by
//! their path (`rules[1].when.device[0]`). 5xx bodies never
//! carry internals; the cause is logged (once, in the request span).

use std::collections::BTreeMap;

use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, Response as DocResponse, SchemaObject};
use aide::operation::OperationOutput;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

/// Field name → what is wrong with it.
pub type FieldErrors = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One or more fields failed validation (400 with `details`).
    #[error("validation failed")]
    Validation(FieldErrors),
    /// Well-formed fields that a policy refuses (422 with `details`).
    #[error("refused by policy")]
    Unprocessable(FieldErrors),
    /// The request as a whole is unusable (400).
    #[error("{0}")]
    BadRequest(String),
    /// No usable API key: missing, unknown, revoked or expired (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The key is valid but may not do this (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The addressed resource (or one the body references) does not exist (404).
    #[error("{0}")]
    NotFound(&'static str),
    /// A uniqueness rule would be broken (409).
    #[error("{0}")]
    Conflict(String),
    /// The upload is larger than allowed (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Over the caller's rate limit (429); retry after this many seconds.
    #[error("Rate limit exceeded: retry in {0} s")]
    RateLimited(u64),
    /// A dependency is unavailable (503).
    #[error("{0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A single-field validation failure.
    pub fn field(field: &str, problem: impl Into<String>) -> Self {
        let mut details = FieldErrors::new();
        details.insert(field.to_owned(), problem.into());
        Self::Validation(details)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Database(sqlx::Error::PoolTimedOut) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Database(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// Unique-constraint violations become 409 with a message naming the
    /// field; everything else stays a database error.
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            match db.constraint() {
                Some("users_username_key") => {
                    return ApiError::Conflict("username already exists".into());
                }
                Some("users_email_key") => {
                    return ApiError::Conflict("email already exists".into());
                }
                Some("urls_short_code_key" | "urls_domain_code_key") => {
                    return ApiError::Conflict("short_code already exists".into());
                }
                _ => {}
            }
        }
        ApiError::Database(e)
    }
}

/// The body of every error response: an RFC 9457 problem document (served
/// as `application/problem+json` when the client asks for it by `Accept`,
/// else as `application/json`) that keeps the contract's `error` field.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// A URI naming the kind of problem; `about:blank` (the status says it).
    #[serde(rename = "type")]
    pub kind: String,
    /// The status' reason phrase, e.g. `Not Found`.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, e.g. `User not found`.
    pub detail: String,
    /// The same message as `detail` (the contract's error field).
    pub error: String,
    /// For validation failures: field name → problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<FieldErrors>,
}

impl ApiError {
    /// The message and field details a client is shown for this error (a
    /// server-side cause is logged here, never shown): the body of an error
    /// answer, and of a bulk request's failed row.
    pub fn into_message(self) -> (String, Option<FieldErrors>) {
        match self {
            ApiError::Validation(details) => ("validation failed".to_owned(), Some(details)),
            ApiError::Unprocessable(details) => ("refused by policy".to_owned(), Some(details)),
            ApiError::Database(sqlx::Error::PoolTimedOut) => {
                tracing::error!("database pool exhausted");
                ("Service temporarily unavailable".to_owned(), None)
            }
            ApiError::Database(e) => {
                tracing::error!(error = %e, "database error");
                ("Internal server error".to_owned(), None)
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                ("Internal server error".to_owned(), None)
            }
            other => (other.to_string(), None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, details) = match self {
            ref other @ ApiError::RateLimited(retry_after) => {
                let mut res = problem_response(status, other.to_string(), None);
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                return res;
            }
            ref other @ ApiError::Unauthorized(_) => {
                let mut res = problem_response(status, other.to_string(), None);
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"shortline\""),
                );
                return res;
            }
            other => other.into_message(),
        };
        problem_response(status, message, details)
    }
}

fn problem_response(status: StatusCode, message: String, details: Option<FieldErrors>) -> Response {
    let mut body = shortline_shared::http::problem(status, message);
    if let Some(details) = details {
        body.insert(
            "details".into(),
            serde_json::to_value(details).unwrap_or_default(),
        );
    }
    (status, Json(body)).into_response()
}

/// Every handler may answer 400 (malformed request) and 500; routes add
/// their own 404/409 documentation.
impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, _op: &mut Operation) -> Option<DocResponse> {
        Some(error_doc(ctx, "Error"))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        _op: &mut Operation,
    ) -> Vec<(Option<aide::openapi::StatusCode>, DocResponse)> {
        vec![
            (
                Some(aide::openapi::StatusCode::Code(400)),
                error_doc(
                    ctx,
                    "Malformed body, bad parameter or failed validation (`details` names the fields)",
                ),
            ),
            (
                Some(aide::openapi::StatusCode::Code(500)),
                error_doc(ctx, "Unexpected server error"),
            ),
            (
                Some(aide::openapi::StatusCode::Code(401)),
                error_doc(
                    ctx,
                    "No valid API key (missing, unknown, revoked or expired); carries `WWW-Authenticate: Bearer`",
                ),
            ),
            (
                Some(aide::openapi::StatusCode::Code(403)),
                error_doc(
                    ctx,
                    "The key may not do this (a user key on an admin route, or acting for another user)",
                ),
            ),
            (
                Some(aide::openapi::StatusCode::Code(429)),
                error_doc(
                    ctx,
                    "Over the key's (or, without a key, the client address') rate limit; carries `Retry-After`",
                ),
            ),
        ]
    }
}

/// An error response document with the [`ErrorBody`] schema.
pub fn error_doc(ctx: &mut GenContext, description: &str) -> DocResponse {
    DocResponse {
        description: description.to_owned(),
        content: [(
            "application/json".to_owned(),
            MediaType {
                schema: Some(SchemaObject {
                    json_schema: ctx.schema.subschema_for::<ErrorBody>(),
                    example: None,
                    external_docs: None,
                }),
                ..Default::default()
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}
