//! HTTP handlers: parse the request, call the domain, map the result. The
//! OpenAPI description of each route sits next to its registration.

pub mod events;
pub mod health;
pub mod links;
pub mod users;

use aide::axum::ApiRouter;
use aide::generate::GenContext;
use aide::openapi::{Operation, Response as DocResponse, StatusCode as DocStatus};
use aide::operation::OperationOutput;
use aide::transform::TransformOperation;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::ErrorBody;
use crate::state::AppState;

/// Every API route (the redirect route lives in the redirect service).
pub fn api_routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .merge(health::routes())
        .merge(users::routes())
        .merge(links::routes())
        .merge(events::routes())
}

/// `201 Created` with a JSON body.
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, Json(self.0)).into_response()
    }
}

impl<T: JsonSchema> OperationOutput for Created<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        Json::<T>::operation_response(ctx, op)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|mut r| {
                r.description = "Created".into();
                vec![(Some(DocStatus::Code(201)), r)]
            })
            .unwrap_or_default()
    }
}

/// Documents a 404 with the given message.
pub fn not_found<'a>(op: TransformOperation<'a>, message: &'static str) -> TransformOperation<'a> {
    op.response_with::<404, Json<ErrorBody>, _>(|r| r.description(message))
}

/// Documents a 409 with the given message.
pub fn conflict<'a>(op: TransformOperation<'a>, message: &'static str) -> TransformOperation<'a> {
    op.response_with::<409, Json<ErrorBody>, _>(|r| r.description(message))
}
