//! Traces across services: with an OTLP endpoint configured, a change made
//! through the API is one trace from the HTTP request (continuing the
//! caller's `traceparent`) through the outbox and NATS into every redirect
//! replica's cache invalidation, and a click batch is one trace from the
//! redirect's publish into the analytics write. The spans are received by a
//! real OTLP/HTTP endpoint served by this test.
//!
//! Its own test binary: the tracing subscriber and propagator are global.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::{Value, json};
use shortline_redirect::Service;
use shortline_redirect::config::RedirectConfig;
use shortline_shared::events::Subjects;
use shortline_shared::telemetry::{self, LogFormat, TelemetrySettings};
use shortline_shared::testing::{self, unique_prefix};
use sqlx::PgPool;

/// One received span, ids in hex.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP (protobuf) trace receiver on a free loopback port, on a
/// runtime of its own (a flush blocks the test's thread until the receiver
/// has answered).
fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    let store = spans.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let store = store.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return StatusCode::BAD_REQUEST;
                };
                let mut out = store.lock().expect("lock");
                for rs in request.resource_spans {
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            out.push(Received {
                                name: s.name,
                                trace_id: hex(&s.trace_id),
                                span_id: hex(&s.span_id),
                                parent_span_id: hex(&s.parent_span_id),
                            });
                        }
                    }
                }
                StatusCode::OK
            }
        }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await
        })
    });
    (format!("http://{addr}"), spans)
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let reply = testing::call(router.clone(), request).await;
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, json)
}

fn json_request(method: Method, uri: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_change_and_a_click_are_each_one_trace_across_services(db: PgPool) {
    let (endpoint, spans) = receiver();
    let guard = telemetry::init(&TelemetrySettings {
        service_name: "shortline-e2e",
        log_format: LogFormat::Json,
        otlp_endpoint: Some(endpoint),
        log_flush: None,
    })
    .expect("telemetry");
    assert!(telemetry::tracing_enabled());

    let prefix = unique_prefix();
    let (nats_url, valkey_url) = shortline_e2e::server_urls();
    let subjects = Subjects::new(&prefix);
    let client = shortline_shared::nats::connect(&nats_url, "e2e-tracing")
        .await
        .expect("nats");
    let api_service = shortline_e2e::api(
        db.clone(),
        &prefix,
        Some(&nats_url),
        Duration::from_secs(30),
    )
    .await;
    let api = api_service.router();
    let mut redirect_config =
        RedirectConfig::for_urls("postgres://unused", &valkey_url, &nats_url, &prefix);
    redirect_config.change_stream_wait_ms = 30_000;
    let redirect = Service::start_with_pool(&redirect_config, db.clone())
        .await
        .expect("redirect");
    let analytics = shortline_analytics::Service::start_with_pool(
        &shortline_analytics::config::AnalyticsConfig::for_urls(&nats_url, &prefix),
        db.clone(),
    )
    .await
    .expect("analytics");
    let redirect_router = shortline_redirect::router(redirect.state.clone());

    let (status, user) = send(
        &api,
        json_request(
            Method::POST,
            "/users",
            json!({"username": "tracer", "email": "tracer@example.com"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let (status, link) = send(
        &api,
        json_request(
            Method::POST,
            "/urls",
            json!({"user_id": user["id"], "original_url": "https://example.com/a"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let id = link["id"].as_i64().expect("id");
    let code = link["short_code"].as_str().expect("code").to_owned();

    // Wait until the redirect replica reads the change stream, so that the
    // update below reaches it.
    shortline_e2e::wait_for_change_readers(&client, &subjects, 1, Duration::from_secs(20), "")
        .await;

    // The caller's trace: the API request continues it.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut update = json_request(
        Method::PUT,
        &format!("/urls/{id}"),
        json!({"original_url": "https://example.com/b"}),
    );
    update.headers_mut().insert(
        "traceparent",
        format!("00-{caller_trace}-{caller_span}-01")
            .parse()
            .expect("header"),
    );
    let (status, body) = send(&api, update).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A redirect, whose click is published in a batch and written by analytics.
    let (status, _) = send(
        &redirect_router,
        Request::builder()
            .uri(format!("/{code}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);

    // The link is in the replica's memory now: over a real connection the
    // fast path answers, and its request span continues the caller's trace
    // as the router's does.
    let stop = tokio_util::sync::CancellationToken::new();
    let server = shortline_redirect::fast::spawn(
        ([127, 0, 0, 1], 0).into(),
        redirect.state.clone(),
        stop.clone(),
    )
    .await
    .expect("serves");
    let addr = server.addr;
    let fast_trace = "0af7651916cd43dd8448eb211c80319c";
    let fast_caller = "b7ad6b7169203331";
    let fast = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .head(format!("http://{addr}/{code}"))
        .header("traceparent", format!("00-{fast_trace}-{fast_caller}-01"))
        .send()
        .await
        .expect("fast path");
    assert_eq!(
        (
            fast.status().as_u16(),
            fast.headers()["x-cache"].to_str().ok()
        ),
        (302, Some("HIT"))
    );
    stop.cancel();
    server.stopped().await.expect("stops");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let fast_request = loop {
        guard.flush();
        let seen = spans.lock().expect("lock").clone();
        if let Some(found) = seen
            .iter()
            .find(|s| s.trace_id == fast_trace && s.name == "request")
        {
            break found.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request span in the fast path's trace; got {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(fast_request.parent_span_id, fast_caller);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (request, apply, publish, store) = loop {
        guard.flush();
        let seen = spans.lock().expect("lock").clone();
        let request = seen
            .iter()
            .find(|s| s.trace_id == caller_trace && s.name == "request")
            .cloned();
        let apply = seen
            .iter()
            .find(|s| s.trace_id == caller_trace && s.name == "link_change.apply")
            .cloned();
        let store = seen.iter().find(|s| s.name == "clicks.store").cloned();
        let publish = store.as_ref().and_then(|st| {
            seen.iter()
                .find(|s| s.name == "clicks.publish" && s.span_id == st.parent_span_id)
                .cloned()
        });
        if let (Some(r), Some(a), Some(p), Some(s)) = (&request, &apply, &publish, &store) {
            break (r.clone(), a.clone(), p.clone(), s.clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans missing: request {request:?}, apply {apply:?}, publish {publish:?}, store {store:?}; got {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // API request span: child of the caller's span.
    assert_eq!(request.parent_span_id, caller_span);
    // Redirect replica's invalidation: child of the API request, via outbox and NATS.
    assert_eq!(apply.parent_span_id, request.span_id);
    // Analytics' write of the click batch: child of the redirect's publish.
    assert_eq!(store.trace_id, publish.trace_id);

    // The event row exists (the click made it all the way).
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE url_id = $1 AND event_type = 'redirect'",
    )
    .bind(id)
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(rows, 1);

    redirect.shutdown().await;
    analytics.shutdown().await;
    api_service.shutdown().await;
    drop(guard);
}
