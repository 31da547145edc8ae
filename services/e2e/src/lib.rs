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
