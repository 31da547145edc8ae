//! Layers every Shortline router wears: request ids (a client's
//! `X-Request-ID` is kept only when it is short and plain, see
//! [`is_acceptable_request_id`]; otherwise a ULID replaces it), one access-log
//! line per request, HTTP metrics, a request timeout, panic capture, and the
//! rule that every error response is JSON, including the ones axum and tower
//! produce themselves (404, 405, 408, 413, 500). Also here:
//! [`drain_unread_body`], so that an early error answer (413) reaches a
//! client behind a proxy instead of a reset connection.
//!
//! Error bodies are RFC 9457 problem documents that also keep the
//! contract's `error` field: `{"type": "about:blank", "title": "Not Found",
//! "status": 404, "detail": "User not found", "error": "User not found"}`.
//! They are sent as `application/problem+json` to clients whose `Accept`
//! names that type, and as `application/json` otherwise, so clients written
//! against the contract see the content type they always saw.

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
use tower::util::MapRequestLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;

use crate::telemetry;

/// The request-id header accepted from clients and echoed back.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest client request id kept (longer ones are replaced).
pub const MAX_REQUEST_ID_LEN: usize = 128;

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

/// Binds a service's listening socket and logs `"<service> listening"`
/// with the address; the error names the address.
pub async fn bind(
    listen: std::net::SocketAddr,
    service: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(listen = %listen, "{service} listening");
    Ok(listener)
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
        .layer(MapRequestLayer::new(drop_unacceptable_request_id))
}

/// Whether a client's request id is kept as it is: 1 to
/// [`MAX_REQUEST_ID_LEN`] characters of `[A-Za-z0-9._:-]` (enough for
/// ULIDs, UUIDs and the usual trace-style ids; nothing that could bloat or
/// forge a log line or a response header).
pub fn is_acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Removes a client request id that is not acceptable, so that the next
/// layer gives the request a fresh one.
fn drop_unacceptable_request_id(mut req: Request) -> Request {
    let headers = req.headers_mut();
    let keep = {
        let mut values = headers.get_all(REQUEST_ID_HEADER).iter();
        match (values.next(), values.next()) {
            (None, _) => true,
            (Some(v), None) => is_acceptable_request_id(v),
            // Several ids: none is believed.
            (Some(_), Some(_)) => false,
        }
    };
    if !keep {
        headers.remove(REQUEST_ID_HEADER);
    }
    req
}

/// A new request id (a ULID), for a request that came without one.
pub fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; ulid::ULID_LEN];
    let text = ulid::Ulid::generate().array_to_str(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The request id of a request: the client's `X-Request-ID` when it sent
/// one acceptable id ([`is_acceptable_request_id`]), else a new one (what the
/// common layers echo in the response).
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(REQUEST_ID_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(v), None) if is_acceptable_request_id(v) => v.clone(),
        _ => new_request_id(),
    }
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
        let wants_problem = accepts_problem_json(req.headers());
        let response = tracing::Instrument::instrument(next.run(req), observed.span.clone()).await;
        let response = json_errors(response, wants_problem);
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

/// The media type of RFC 9457 problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document for `status` with `detail` as its message,
/// carrying the contract's `error` field (the same message) too. Callers
/// may add members (`details`, `retry_after`, ...).
pub fn problem(
    status: StatusCode,
    detail: impl Into<String>,
) -> serde_json::Map<String, serde_json::Value> {
    let detail = detail.into();
    let mut body = serde_json::Map::new();
    body.insert("type".into(), "about:blank".into());
    body.insert(
        "title".into(),
        status.canonical_reason().unwrap_or("Error").into(),
    );
    body.insert("status".into(), status.as_u16().into());
    body.insert("detail".into(), detail.clone().into());
    body.insert("error".into(), detail.into());
    body
}

/// An error response: a [`problem`] document with nothing more.
pub fn error_body(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    (status, Json(problem(status, message))).into_response()
}

/// Whether the client asked for `application/problem+json` by name.
fn accepts_problem_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains(PROBLEM_JSON))
}

/// Marks an error response whose body is meant as it is (a page made for a
/// browser that asked for HTML): [`json_errors`] leaves it alone.
#[derive(Debug, Clone, Copy)]
pub struct OwnErrorPage;

/// Replaces any non-JSON error response (axum's rejections, 404 and 405 from
/// the router, 408 from the timeout, 413 from body limits) with a problem
/// body, keeping status and headers such as `Allow`; JSON error bodies get
/// the problem media type when the client asked for it.
fn json_errors(response: Response<Body>, wants_problem: bool) -> Response<Body> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<OwnErrorPage>().is_some()
    {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_json =
        content_type.starts_with("application/json") || content_type.starts_with(PROBLEM_JSON);
    if is_json {
        let mut response = response;
        if wants_problem {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        }
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
        HeaderValue::from_static(if wants_problem {
            PROBLEM_JSON
        } else {
            "application/json"
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_kept_only_when_short_and_plain() {
        for ok in [
            "req-1",
            "01JB8ZQ4V6Y2W1N3K5M7P9R0ST",
            "7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b",
            "a.b_c:d-e",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static(ok));
            assert_eq!(request_id(&headers), ok);
        }
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in [long.as_str(), "", "a b", "a/b", "x\tinjected", "é"] {
            let mut headers = HeaderMap::new();
            headers.insert(
                REQUEST_ID_HEADER,
                HeaderValue::from_bytes(bad.as_bytes()).expect("header value"),
            );
            let id = request_id(&headers);
            assert_ne!(id, bad);
            assert!(
                id.to_str().is_ok_and(|s| s.parse::<ulid::Ulid>().is_ok()),
                "{id:?}"
            );
        }
        let mut two = HeaderMap::new();
        two.append(REQUEST_ID_HEADER, HeaderValue::from_static("a"));
        two.append(REQUEST_ID_HEADER, HeaderValue::from_static("b"));
        assert_eq!(request_id(&two).len(), ulid::ULID_LEN);
    }
}
