//! Layers every Shortline router wears: request ids, one access-log line per
//! request, HTTP metrics, a request timeout, panic capture, and the rule that
//! every error response is JSON (`{"error": "..."}`), including the ones
//! axum and tower produce themselves (404, 405, 408, 413, 500).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Response, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::{Json, Router};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;

use crate::telemetry;

/// The request-id header accepted from clients and echoed back.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Settings for [`with_common_layers`].
#[derive(Debug, Clone)]
pub struct CommonLayers {
    /// Requests running longer are answered `408` with a JSON error.
    pub request_timeout: Duration,
}

impl Default for CommonLayers {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Wraps a finished router (routes and fallback in place) in the common layers.
pub fn with_common_layers(router: Router, settings: &CommonLayers) -> Router {
    let http_metrics = HttpMetrics::new();
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(middleware::from_fn(json_errors))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let m = http_metrics.clone();
            async move { m.observe(req, next).await }
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(UlidRequestId))
}

/// Makes a ULID request id when the client sent none (or an unusable one).
#[derive(Clone, Copy, Debug)]
struct UlidRequestId;

impl MakeRequestId for UlidRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&ulid::Ulid::generate().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// Request duration histogram plus the access log line, both per route.
#[derive(Clone)]
struct HttpMetrics {
    duration: Histogram<f64>,
}

impl HttpMetrics {
    fn new() -> Self {
        let duration = telemetry::meter()
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of HTTP requests served, by route, method and status")
            .with_boundaries(telemetry::SECONDS_BUCKETS.to_vec())
            .build();
        Self { duration }
    }

    async fn observe(&self, req: Request, next: Next) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().clone();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "unmatched".to_owned());
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let span = tracing::info_span!(
            "request",
            method = %method,
            route = %route,
            request_id = %request_id,
        );
        let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
        let elapsed = start.elapsed();
        let status = response.status();
        self.duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("http.route", route),
                KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            ],
        );
        let _guard = span.enter();
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), duration_ms, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), duration_ms, "request served");
        }
        response
    }
}

/// The error body every service uses: `{"error": "..."}`.
pub fn error_body(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Replaces any non-JSON error response (axum's rejections, 404 and 405 from
/// the router, 408 from the timeout, 413 from body limits) with a JSON body,
/// keeping status and headers such as `Allow`.
async fn json_errors(req: Request, next: Next) -> Response<Body> {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let message = match status {
        StatusCode::NOT_FOUND => "Not found".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large".to_owned(),
        StatusCode::REQUEST_TIMEOUT => "Request timed out".to_owned(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported media type".to_owned(),
        s if s.is_server_error() => "Internal server error".to_owned(),
        s => s.canonical_reason().unwrap_or("Request failed").to_owned(),
    };
    let (mut parts, _) = response.into_parts();
    let fresh = error_body(status, message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, fresh.into_body())
}

fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("handler panicked");
    error_body(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
}

/// `GET /health`: liveness only, never touches a dependency.
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}
