//! Layers every Shortline router wears: request ids, one access-log line per
//! request, HTTP metrics, a request timeout, panic capture, and the rule that
//! every error response is JSON (`{"error": "..."}`), including the ones
//! axum and tower produce themselves (404, 405, 408, 413, 500).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
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
    /// Route templates as shared strings, so that labelling a request does
    /// not allocate (there are only as many as the router has routes).
    routes: Arc<RwLock<HashMap<String, Arc<str>>>>,
}

impl HttpMetrics {
    fn new() -> Self {
        let duration = telemetry::meter()
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of HTTP requests served, by route, method and status")
            .with_boundaries(telemetry::SECONDS_BUCKETS.to_vec())
            .build();
        Self {
            duration,
            routes: Arc::default(),
        }
    }

    fn route(&self, req: &Request) -> Arc<str> {
        let Some(path) = req.extensions().get::<MatchedPath>() else {
            return Arc::from("unmatched");
        };
        let path = path.as_str();
        if let Some(known) = self.routes.read().ok().and_then(|m| m.get(path).cloned()) {
            return known;
        }
        let interned: Arc<str> = Arc::from(path);
        if let Ok(mut m) = self.routes.write() {
            m.entry(path.to_owned()).or_insert_with(|| interned.clone());
        }
        interned
    }

    /// Runs the request inside its span, turns a non-JSON error response
    /// into the JSON error shape, records the duration histogram and writes
    /// the request's log line.
    async fn observe(&self, req: Request, next: Next) -> Response<Body> {
        let start = Instant::now();
        let method = method_label(req.method());
        let route = self.route(&req);
        let request_id = req.headers().get(REQUEST_ID_HEADER).cloned();
        let span = tracing::info_span!(
            "request",
            method,
            route = %route,
            request_id = request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
        );
        // Continue the caller's trace (W3C `traceparent`) when tracing is on.
        telemetry::set_parent_from(&span, &telemetry::HttpHeaders(req.headers()));
        let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
        let response = json_errors(response);
        let elapsed = start.elapsed();
        let status = response.status();
        self.duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.route", opentelemetry::StringValue::from(route)),
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

/// The OpenTelemetry method label: the standard methods, `_OTHER` for the
/// rest (keeps the label set bounded).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

pub fn error_body(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Replaces any non-JSON error response (axum's rejections, 404 and 405 from
/// the router, 408 from the timeout, 413 from body limits) with a JSON body,
/// keeping status and headers such as `Allow`.
fn json_errors(response: Response<Body>) -> Response<Body> {
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
