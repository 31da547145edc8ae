//! The redirect service's one error type.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shortline_shared::http::error_body;

#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    /// Unknown or inactive code.
    #[error("Short code not found")]
    NotFound,
    /// No cache held the code and Postgres could not be asked.
    #[error("link store unavailable: {0}")]
    Unavailable(String),
    /// The stored target fails the target rule (or cannot be a `Location`
    /// header); logged as a warning where it was found.
    #[error("stored target is unusable (url_id {0})")]
    BadTarget(i64),
}

impl IntoResponse for RedirectError {
    fn into_response(self) -> Response {
        match self {
            RedirectError::NotFound => error_body(StatusCode::NOT_FOUND, "Short code not found"),
            RedirectError::Unavailable(e) => {
                tracing::error!(error = %e, "link lookup failed");
                error_body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service temporarily unavailable",
                )
            }
            RedirectError::BadTarget(_) => {
                error_body(StatusCode::BAD_GATEWAY, "Link target is unusable")
            }
        }
    }
}
