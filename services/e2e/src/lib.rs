//! End-to-end tests across the services live in `tests/`: the write API and
//! redirect replicas wired together through real Postgres, Valkey and NATS,
//! in one process. No service depends on another; only these tests see them
//! all.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;

use shortline_api::Service;
use shortline_api::config::{ApiConfig, AuthMode};

/// The write API for a pipeline test, started as its binary starts it:
/// subjects under `prefix`, NATS at `nats_url` with the outbox relay running
/// (`None`: no NATS, so no relay and no propagation), link changes waiting
/// up to `invalidation_wait` for the redirect replicas. Keys and rate limits
/// are off (`API_AUTH=off`): these tests are about the pipeline; the api's
/// own tests cover access control. No Valkey (no link tombstones from the
/// API): see [`api_with_valkey`].
pub async fn api(
    db: sqlx::PgPool,
    prefix: &str,
    nats_url: Option<&str>,
    invalidation_wait: Duration,
) -> Service {
    api_with_valkey(db, prefix, nats_url, invalidation_wait, "").await
}

/// [`api`] with the API writing link tombstones to the Valkey at
/// `valkey_url` (under `prefix`, as the redirect reads them).
pub async fn api_with_valkey(
    db: sqlx::PgPool,
    prefix: &str,
    nats_url: Option<&str>,
    invalidation_wait: Duration,
    valkey_url: &str,
) -> Service {
    let mut config = ApiConfig::for_urls("postgres://unused", nats_url.unwrap_or_default());
    config.common.nats_prefix = prefix.to_owned();
    config.invalidation_wait_ms = u64::try_from(invalidation_wait.as_millis()).unwrap_or(u64::MAX);
    config.outbox_poll_ms = 200;
    config.api_auth = AuthMode::Off;
    config.valkey_url = valkey_url.to_owned();
    config.valkey_timeout_ms = 500;
    Service::start_with_pool(&config, db)
        .await
        .expect("api starts")
}

/// Sends one request to a router (with `body` as JSON when given) and
/// returns its status, its body as JSON (`Null` for the bodiless 302 and 204
/// answers) and its `Location`.
pub async fn send(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value, String) {
    let mut req = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let reply =
        shortline_shared::testing::call(router.clone(), req.body(body).expect("request")).await;
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, json, reply.header("location").to_owned())
}

/// The test servers' URLs: `NATS_URL` and `VALKEY_URL` (with the local
/// defaults).
pub fn server_urls() -> (String, String) {
    let env_or =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    (
        env_or("NATS_URL", "nats://127.0.0.1:54222"),
        env_or("VALKEY_URL", "redis://127.0.0.1:56379"),
    )
}

/// `n` redirect replicas on the test's database and servers, under
/// `prefix`, each serving only once it reads the change stream.
pub async fn redirect_replicas(
    db: &sqlx::PgPool,
    prefix: &str,
    n: usize,
) -> Vec<shortline_redirect::Service> {
    let (nats_url, valkey_url) = server_urls();
    let mut config = shortline_redirect::config::RedirectConfig::for_urls(
        "postgres://unused",
        &valkey_url,
        &nats_url,
        prefix,
    );
    config.change_stream_wait_ms = 30_000;
    config.click_linger_ms = 1;
    let mut replicas = Vec::with_capacity(n);
    for _ in 0..n {
        replicas.push(
            shortline_redirect::Service::start_with_pool(&config, db.clone())
                .await
                .expect("redirect replica starts"),
        );
    }
    replicas
}

/// `GET /{code}` with these headers as a replica's server handles it (the
/// fast path for links held in memory, the router for the rest): status and
/// `Location`.
pub async fn redirect_get(
    fast: &shortline_redirect::fast::FastPath,
    code: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = Request::builder().uri(format!("/{code}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = fast
        .handle(
            request.body(Body::empty()).expect("request"),
            ([127, 0, 0, 1], 40_000).into(),
        )
        .await;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (response.status(), location)
}

/// The write API (with the Valkey tombstones and a 30 s propagation wait)
/// and `n` redirect replicas under one fresh prefix: the pipeline of a
/// test about what a replica serves after the API answered.
pub async fn api_and_replicas(
    db: &sqlx::PgPool,
    n: usize,
) -> (Service, Vec<shortline_redirect::Service>, String) {
    let prefix = shortline_shared::testing::unique_prefix();
    let (nats_url, valkey_url) = server_urls();
    let api = api_with_valkey(
        db.clone(),
        &prefix,
        Some(&nats_url),
        Duration::from_secs(30),
        &valkey_url,
    )
    .await;
    let replicas = redirect_replicas(db, &prefix, n).await;
    (api, replicas, prefix)
}

/// Waits until `n` redirect replicas read the change stream of `subjects`
/// (each holds one consumer on it), so that a change made next reaches
/// every one of them. Panics after `within`, with `context` (a server log).
pub async fn wait_for_change_readers(
    client: &async_nats::Client,
    subjects: &shortline_shared::events::Subjects,
    n: usize,
    within: Duration,
    context: &str,
) {
    use futures::StreamExt;
    let js = async_nats::jetstream::new(client.clone());
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut readers = 0;
        if let Ok(stream) = js.get_stream(subjects.changes_stream()).await {
            let mut consumers = stream.consumers();
            while let Some(Ok(info)) = consumers.next().await {
                readers += usize::from(
                    info.name
                        .starts_with(shortline_shared::nats::INVALIDATION_CONSUMER_PREFIX),
                );
            }
        }
        if readers == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{readers} of {n} replicas read the change stream{context}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `redirect` event rows of link `id`, read once its statistics count
/// `n` redirects (waiting up to `within` for the analytics consumer) and
/// half a second more, so that a late duplicate would be among them.
pub async fn redirect_events_once_counted(
    api: &axum::Router,
    id: i64,
    n: usize,
    within: Duration,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (_, stats, _) = send(api, Method::GET, &format!("/urls/{id}/stats"), None).await;
        if stats["redirect_count"] == serde_json::json!(n) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stats: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, events, _) = send(
        api,
        Method::GET,
        &format!("/events?url_id={id}&event_type=redirect"),
        None,
    )
    .await;
    events.as_array().cloned().unwrap_or_default()
}
