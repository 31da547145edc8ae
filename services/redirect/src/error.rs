//! The redirect service's one error type.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
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
    /// The stored link is unusable (a target failing the target rule,
    /// rules that are not the wire form); logged as a warning where it was
    /// found.
    #[error("stored target is unusable (url_id {0})")]
    BadTarget(i64),
    /// Expired or out of clicks, without a fallback (410); the message
    /// says which.
    #[error("{0}")]
    Gone(&'static str),
    /// A password-protected link asked for without a password (401).
    #[error("Password required")]
    PasswordRequired,
    /// The password given is wrong (401).
    #[error("Wrong password")]
    WrongPassword,
    /// Too many wrong passwords from this client for this link (429).
    #[error("Too many password attempts")]
    TooManyAttempts(Duration),
    /// A `POST` to a link without a password (405, `Allow: GET,HEAD`).
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// A query parameter is not acceptable (400); the message names it.
    #[error("{0}")]
    BadParameter(String),
    /// A QR code could not be drawn (500; logged).
    #[error("QR code not drawn: {0}")]
    QrNotDrawn(String),
    /// A click-limited or password-protected link while Valkey, which
    /// counts for every replica, cannot answer (503: fail closed).
    #[error("cannot count clicks or attempts: {0}")]
    Uncounted(String),
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
            RedirectError::Gone(message) => error_body(StatusCode::GONE, message),
            RedirectError::PasswordRequired => error_body(
                StatusCode::UNAUTHORIZED,
                "Password required: send it in the X-Link-Password header",
            ),
            RedirectError::WrongPassword => error_body(StatusCode::UNAUTHORIZED, "Wrong password"),
            RedirectError::TooManyAttempts(wait) => {
                let secs = wait.as_secs().max(1);
                let mut response = error_body(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many password attempts: retry in {secs} s"),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                response
            }
            RedirectError::MethodNotAllowed => {
                let mut response = error_body(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
                response
            }
            RedirectError::BadParameter(message) => error_body(StatusCode::BAD_REQUEST, message),
            RedirectError::QrNotDrawn(e) => {
                tracing::error!(error = %e, "QR code not drawn");
                error_body(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            }
            RedirectError::Uncounted(e) => {
                tracing::error!(error = %e, "click limit or password attempts cannot be counted");
                error_body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "This link cannot be served right now",
                )
            }
        }
    }
}
