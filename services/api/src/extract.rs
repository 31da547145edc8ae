//! Request extractors that turn every kind of bad input into an [`ApiError`]
//! (JSON, 400) instead of axum's plain-text rejections.
//!
//! * [`JsonBody<T>`] reads the body as a JSON object (whatever the
//!   content type claims) and lets `T` pick out and validate its fields, so
//!   one response can name every bad field at once.
//! * [`Params<T>`] is `Query<T>` with a JSON rejection; a parameter whose
//!   name or value decodes to a NUL character is refused up front, naming
//!   it (PostgreSQL cannot compare text holding one).
//! * [`Id<T>`] is a path id of type `T` (a [`ResourceId`]); anything that
//!   cannot be an id (text, 0, negative, overflow) is the resource's 404, as
//!   no such resource can exist.

use std::marker::PhantomData;

use crate::error::ApiError;
use crate::ids::ResourceId;
use crate::validate::{Fields, FromJson, NUL_PROBLEM, parse_object};
use aide::generate::GenContext;
use aide::openapi::{Operation, ParameterSchemaOrContent};
use aide::operation::OperationInput;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// A validated JSON body. Malformed JSON, a non-object, or an empty body is
/// `400 {"error": ...}`; field problems are `400` with `details`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: FromJson> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        let obj = parse_object(&bytes)?;
        let mut fields = Fields::new(&obj);
        let value = T::from_json(&mut fields);
        fields.finish()?;
        value
            .map(JsonBody)
            .ok_or_else(|| ApiError::BadRequest("invalid request body".into()))
    }
}

fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("Request body too large".into())
    } else {
        ApiError::BadRequest(format!("could not read request body: {e}"))
    }
}

impl<T: JsonSchema> OperationInput for JsonBody<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <axum::Json<T> as OperationInput>::operation_input(ctx, operation);
    }
}

/// `Query<T>` whose rejection is a JSON 400 naming the bad parameter.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(query) = parts.uri.query() {
            refuse_nul_parameters(query)?;
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "invalid query parameter: {}",
                    e.body_text()
                        .trim_start_matches("Failed to deserialize query string: ")
                ))
            })
    }
}

/// `400` naming the first query parameter whose decoded name or value holds
/// a NUL character.
fn refuse_nul_parameters(query: &str) -> Result<(), ApiError> {
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name.contains('\0') || value.contains('\0') {
            let name = name.replace('\0', "\\0");
            return Err(ApiError::field(&name, NUL_PROBLEM));
        }
    }
    Ok(())
}

impl<T: JsonSchema> OperationInput for Params<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <axum::extract::Query<T> as OperationInput>::operation_input(ctx, operation);
    }
}

/// A resource id from the path (`/users/{id}`). Values that cannot be an id
/// are answered as the resource's 404 by the handler (see [`Id::get`]), so
/// that the handler decides what is checked first.
#[derive(Debug, Clone, Copy)]
pub struct Id<T>(Option<i64>, PhantomData<fn() -> T>);

impl<T: ResourceId> Id<T> {
    /// The id, or the resource's 404 when the path held no valid id.
    pub fn get(self) -> Result<T, ApiError> {
        self.0.map(T::from).ok_or_else(T::not_found)
    }
}

impl<S: Send + Sync, T> FromRequestParts<S> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A segment that does not even decode (invalid UTF-8 after
        // percent-decoding) is no id either: the resource's 404 as well.
        let id = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|axum::extract::Path(raw)| raw.parse::<i64>().ok())
            .filter(|id| *id > 0);
        Ok(Id(id, PhantomData))
    }
}

impl<T> OperationInput for Id<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let schema = ctx.schema.subschema_for::<i64>();
        operation.parameters.push(aide::openapi::ReferenceOr::Item(
            aide::openapi::Parameter::Path {
                parameter_data: aide::openapi::ParameterData {
                    name: "id".into(),
                    description: Some("Integer id (positive)".into()),
                    required: true,
                    deprecated: None,
                    format: ParameterSchemaOrContent::Schema(aide::openapi::SchemaObject {
                        json_schema: schema,
                        example: None,
                        external_docs: None,
                    }),
                    example: None,
                    examples: Default::default(),
                    explode: None,
                    extensions: Default::default(),
                },
                style: aide::openapi::PathStyle::Simple,
            },
        ));
    }
}
