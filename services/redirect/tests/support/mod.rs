//! Helpers of the redirect service's integration tests: configs with their
//! own prefix, links written straight into Postgres, change events published
//! as the API's relay would, the click stream read back, and the service's
//! own HTTP server on a free port.
#![allow(dead_code)]

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use axum::body::Body;
use axum::http::{Method, Request};
use futures::StreamExt;
use shortline_redirect::Service;
use shortline_redirect::config::RedirectConfig;
use shortline_shared::events::{Change, ChangeEnvelope, ClickBatch, LinkSnapshot, Subjects};
use shortline_shared::testing::{self, Reply, unique_prefix};
use sqlx::PgPool;

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn shared_valkey() -> String {
    env_or("VALKEY_URL", "redis://127.0.0.1:56379")
}

pub fn shared_nats() -> String {
    env_or("NATS_URL", "nats://127.0.0.1:54222")
}

/// A config for a test: its own prefix, the given servers.
pub fn config(valkey: &str, nats: &str) -> RedirectConfig {
    let mut c = RedirectConfig::for_urls("postgres://unused", valkey, nats, &unique_prefix());
    c.click_linger_ms = 1;
    // Tests expecting cache hits must not start before the change stream is
    // read, however slow the machine (L1 is dropped when it is).
    c.change_stream_wait_ms = 30_000;
    // Each test its own spill directory (replicas replay what they find).
    c.click_spill_dir = spill_dir().display().to_string();
    c
}

/// A fresh directory name for click spill files (not created).
pub fn spill_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("shortline-spill-{}", unique_prefix()))
}

/// Starts a service on the test's database.
pub async fn start(c: &RedirectConfig, db: &PgPool) -> Service {
    Service::start_with_pool(c, db.clone())
        .await
        .expect("starts")
}

pub async fn insert_link(db: &PgPool, code: &str, url: &str, active: bool) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO urls (user_id, short_code, original_url, is_active) VALUES (7, $1, $2, $3) RETURNING id",
    )
    .bind(code)
    .bind(url)
    .bind(active)
    .fetch_one(db)
    .await
    .expect("insert link")
}

pub async fn call(service: &Service, method: Method, uri: &str) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    testing::call(shortline_redirect::router(service.state.clone()), request).await
}

pub async fn get(service: &Service, uri: &str) -> Reply {
    call(service, Method::GET, uri).await
}

/// Reads every click in the test's click stream (waiting up to `expect`
/// clicks for a few seconds).
pub async fn clicks(
    nats_url: &str,
    subjects: &Subjects,
    expect: usize,
) -> Vec<shortline_shared::events::Click> {
    let client = shortline_shared::nats::connect(nats_url, "redirect-test")
        .await
        .expect("nats");
    let js = jetstream::new(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut found = Vec::new();
        if let Ok(stream) = js.get_stream(subjects.clicks_stream()).await {
            let consumer = stream
                .create_consumer(consumer::pull::Config {
                    ack_policy: consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await
                .expect("consumer");
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .expires(Duration::from_millis(300))
                .messages()
                .await
                .expect("fetch");
            while let Some(Ok(m)) = batch.next().await {
                let b: ClickBatch = serde_json::from_slice(&m.payload).expect("click batch");
                found.extend(b.clicks);
            }
        }
        if found.len() >= expect || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes a link change as the API's outbox relay would; returns its
/// stream sequence.
pub async fn publish_change(nats_url: &str, subjects: &Subjects, change: Change) -> u64 {
    let client = shortline_shared::nats::connect(nats_url, "redirect-test")
        .await
        .expect("nats");
    let js = jetstream::new(client);
    shortline_shared::nats::ensure_stream(
        &js,
        shortline_shared::nats::changes_stream_config(subjects),
    )
    .await
    .expect("stream");
    let env = ChangeEnvelope::new(change);
    js.publish(
        subjects.change(&env.change),
        serde_json::to_vec(&env).expect("json").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("ack")
    .sequence
}

pub fn snapshot(id: i64, code: &str, url: &str, active: bool) -> LinkSnapshot {
    LinkSnapshot {
        id,
        user_id: 7,
        short_code: code.into(),
        domain: None,
        original_url: url.into(),
        is_active: active,
        updated_at: chrono::Utc::now(),
    }
}

/// Points a link at `url` in Postgres and announces it as the API would;
/// returns the change's stream sequence.
pub async fn retarget(db: &PgPool, subjects: &Subjects, id: i64, code: &str, url: &str) -> u64 {
    sqlx::query("UPDATE urls SET original_url = $2 WHERE id = $1")
        .bind(id)
        .bind(url)
        .execute(db)
        .await
        .expect("retarget");
    publish_change(
        &shared_nats(),
        subjects,
        Change::LinkUpdated {
            link: snapshot(id, code, url, true),
            changed: vec!["original_url".into()],
        },
    )
    .await
}

/// Deactivates a link in Postgres and announces it as the API would.
pub async fn deactivate(db: &PgPool, subjects: &Subjects, id: i64, code: &str, url: &str) {
    sqlx::query("UPDATE urls SET is_active = false WHERE id = $1")
        .bind(id)
        .execute(db)
        .await
        .expect("deactivate");
    publish_change(
        &shared_nats(),
        subjects,
        Change::LinkUpdated {
            link: snapshot(id, code, url, false),
            changed: vec!["is_active".into()],
        },
    )
    .await;
}

/// Polls until `f` holds (change events are asynchronous here: no API waits
/// for them in these tests).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The service's own HTTP server (fast path in front of the router) on a
/// free loopback port; stops when the token is cancelled.
pub struct Served {
    pub base: String,
    stop: tokio_util::sync::CancellationToken,
    running: shortline_redirect::fast::Running,
}

impl Served {
    pub async fn start(service: &Service) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let running = shortline_redirect::fast::spawn(
            ([127, 0, 0, 1], 0).into(),
            service.state.clone(),
            stop.clone(),
        )
        .await
        .expect("serves");
        Self {
            base: format!("http://{}", running.addr),
            stop,
            running,
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.running.stopped().await.expect("stops");
    }
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}
