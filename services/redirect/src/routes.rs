//! `GET|HEAD /{short_code}`.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::RedirectError;
use crate::resolve;
use crate::state::RedirectState;

/// Answers 302 with `Location` exactly the stored URL and `X-Cache`.
pub async fn redirect(
    State(state): State<RedirectState>,
    Path(code): Path<String>,
) -> Result<Response, RedirectError> {
    let target = resolve::resolve(&state.db, &code).await?;
    let location =
        HeaderValue::from_str(&target.original_url).map_err(|_| RedirectError::NotFound)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                header::HeaderName::from_static("x-cache"),
                HeaderValue::from_static("MISS"),
            ),
        ],
    )
        .into_response())
}
