//! Layers every Shortline router wears: request ids, one access-log line per
//! request, HTTP metrics, a request timeout, panic capture, and the rule that
//! every error response is JSON (`{"error": "..."}`), including the ones
//! axum and tower produce themselves (404, 405, 408, 413, 500). Also here:
//! [`drain_unread_body`], so that an early error answer (413) reaches a
//! client behind a proxy instead of a reset connection.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
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
    with_common_layers_using(router, settings, RequestTelemetry::new())
}

/// [`with_common_layers`] recording through a given [`RequestTelemetry`]
/// (a service with a hand-written fast path in front of its router shares
/// one with it).
pub fn with_common_layers_using(
    router: Router,
    settings: &CommonLayers,
    telemetry: RequestTelemetry,
) -> Router {
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let t = telemetry.clone();
            async move { t.observe(req, next).await }
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(UlidRequestId))
}

/// A new request id (a ULID), for a request that came without one.
pub fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; ulid::ULID_LEN];
    let text = ulid::Ulid::generate().array_to_str(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The request id of a request: the client's `X-Request-ID` when it sent
/// one, else a new one (what the common layers echo in the response).
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID_HEADER)
        .cloned()
        .unwrap_or_else(new_request_id)
}

/// Makes a ULID request id when the client sent none.
#[derive(Clone, Copy, Debug)]
struct UlidRequestId;

impl MakeRequestId for UlidRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        Some(RequestId::new(new_request_id()))
    }
}

/// Per-request telemetry: the request span (continuing the caller's trace),
/// the `http.server.request.duration` histogram by route, method and status,
/// and the one access-log line per request. The router's layer uses it, and
/// so can a hand-written fast path, so that both record the same way.
#[derive(Clone)]
pub struct RequestTelemetry {
    duration: Histogram<f64>,
    /// Route templates as shared strings, so that labelling a request does
    /// not allocate (there are only as many as the router has routes).
    routes: Arc<RwLock<HashMap<String, Arc<str>>>>,
}

/// One request being observed: made by [`RequestTelemetry::begin`], closed
/// by [`RequestTelemetry::finish`].
pub struct ObservedRequest {
    start: Instant,
    method: &'static str,
    route: Arc<str>,
    /// The request's span; run the request's work inside it.
    pub span: tracing::Span,
}

impl RequestTelemetry {
    pub fn new() -> Self {
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

    /// The shared label string of a route template (`/{short_code}`).
    pub fn route(&self, path: &str) -> Arc<str> {
        if let Some(known) = self.routes.read().ok().and_then(|m| m.get(path).cloned()) {
            return known;
        }
        let interned: Arc<str> = Arc::from(path);
        if let Ok(mut m) = self.routes.write() {
            return m
                .entry(path.to_owned())
                .or_insert_with(|| interned.clone())
                .clone();
        }
        interned
    }

    fn route_of(&self, req: &Request) -> Arc<str> {
        match req.extensions().get::<MatchedPath>() {
            Some(path) => self.route(path.as_str()),
            None => self.route("unmatched"),
        }
    }

    /// Starts observing a request that arrived at `start`: its span (child
    /// of the caller's trace context found in `headers` when tracing is on).
    pub fn begin(
        &self,
        start: Instant,
        method: &Method,
        route: Arc<str>,
        request_id: Option<&HeaderValue>,
        headers: &HeaderMap,
    ) -> ObservedRequest {
        let method = method_label(method);
        let span = tracing::info_span!(
            "request",
            method,
            route = %route,
            request_id = request_id.and_then(|v| v.to_str().ok()).unwrap_or(""),
        );
        // Continue the caller's trace (W3C `traceparent`) when tracing is on.
        telemetry::set_parent_from(&span, &telemetry::HttpHeaders(headers));
        ObservedRequest {
            start,
            method,
            route,
            span,
        }
    }

    /// Records the duration histogram and writes the request's log line.
    pub fn finish(&self, request: ObservedRequest, status: StatusCode) {
        let elapsed = request.start.elapsed();
        self.duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("http.request.method", request.method),
                KeyValue::new(
                    "http.route",
                    opentelemetry::StringValue::from(request.route),
                ),
                KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            ],
        );
        let _guard = request.span.enter();
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), duration_ms, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), duration_ms, "request served");
        }
    }

    /// Runs the request inside its span, turns a non-JSON error response
    /// into the JSON error shape, records the duration histogram and writes
    /// the request's log line.
    async fn observe(&self, req: Request, next: Next) -> Response<Body> {
        let start = Instant::now();
        let route = self.route_of(&req);
        let headers = req.headers();
        let observed = self.begin(
            start,
            req.method(),
            route,
            headers.get(REQUEST_ID_HEADER),
            headers,
        );
        let response = tracing::Instrument::instrument(next.run(req), observed.span.clone()).await;
        let response = json_errors(response);
        self.finish(observed, response.status());
        response
    }
}

impl Default for RequestTelemetry {
    fn default() -> Self {
        Self::new()
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

/// Most request-body bytes [`drain_unread_body`] reads and throws away.
pub const DRAIN_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Longest time [`drain_unread_body`] spends reading.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Middleware: when a handler answers an error (typically 413, body too
/// large) before reading the whole request body, read the rest of it, up to
/// [`DRAIN_MAX_BYTES`] within [`DRAIN_TIMEOUT`], and throw it away before
/// the response goes out.
///
/// Closing the connection on an unread body instead (what the server does
/// otherwise) makes a proxy that is still sending it (the edge) see a reset
/// and answer 502 in place of our 413. A body beyond the bound still gets
/// the connection closed.
pub async fn drain_unread_body(req: Request, next: Next) -> Response<Body> {
    use futures::StreamExt;
    let (parts, body) = req.into_parts();
    let shared = Arc::new(UnreadBody {
        stream: std::sync::Mutex::new(Some(body.into_data_stream())),
        finished: std::sync::atomic::AtomicBool::new(false),
    });
    let reader = shared.clone();
    let stream = futures::stream::poll_fn(move |cx| {
        let mut guard = match reader.stream.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(stream) = guard.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let polled = stream.poll_next_unpin(cx);
        if let std::task::Poll::Ready(None) = polled {
            reader
                .finished
                .store(true, std::sync::atomic::Ordering::Release);
        }
        polled
    });
    let response = next
        .run(Request::from_parts(parts, Body::from_stream(stream)))
        .await;
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && !shared.finished.load(std::sync::atomic::Ordering::Acquire)
    {
        let rest = match shared.stream.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(mut rest) = rest {
            let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
                let mut read = 0usize;
                while let Some(Ok(chunk)) = rest.next().await {
                    read += chunk.len();
                    if read > DRAIN_MAX_BYTES {
                        return false;
                    }
                }
                true
            })
            .await;
            if !matches!(drained, Ok(true)) {
                tracing::debug!(
                    status = status.as_u16(),
                    "unread request body too large or slow to drain; closing the connection"
                );
            }
        }
    }
    response
}

/// The request body as the handler sees it, kept reachable for the drain.
struct UnreadBody {
    stream: std::sync::Mutex<Option<axum::body::BodyDataStream>>,
    finished: std::sync::atomic::AtomicBool,
}

/// `GET /health`: liveness only, never touches a dependency.
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}
