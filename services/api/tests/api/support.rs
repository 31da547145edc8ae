//! Test harness: the real router over a per-test database (`#[sqlx::test]`
//! creates and drops one per test), driven with `tower::ServiceExt::oneshot`,
//! of an API started as the binary starts it (`shortline_api::Service`);
//! without NATS unless a test's config names one (`NATS_URL` empty).
//! Every request sends an admin API key made for the test, as a real client
//! would (`TestApp::request_with` sends another key or none).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::Value;
use shortline_api::Service;
use shortline_api::config::ApiConfig;
use shortline_api::keys::model::NewKey;
use shortline_api::state::AppState;
use sqlx::PgPool;

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    /// The running API (outbox relay when there is NATS, dependency probe).
    pub service: Service,
    pub db: PgPool,
    /// The admin key every request helper sends.
    pub key: String,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status and that the body is a JSON error with a message.
    pub fn assert_error(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(ct.starts_with("application/json"), "content-type {ct:?}");
        let body = self.json();
        assert!(
            body["error"].as_str().is_some_and(|m| !m.is_empty()),
            "error message missing: {body}"
        );
        // An RFC 9457 problem document around the contract's message.
        assert_eq!(body["status"], status.as_u16(), "problem status: {body}");
        assert_eq!(body["detail"], body["error"], "problem detail: {body}");
        assert!(
            body["title"].is_string() && body["type"].is_string(),
            "{body}"
        );
        body
    }
}

impl TestApp {
    pub async fn new(db: PgPool) -> Self {
        Self::with_prefix(db, "test").await
    }

    pub async fn with_prefix(db: PgPool, prefix: &str) -> Self {
        let mut config = ApiConfig::for_urls("postgres://unused", "");
        config.common.nats_prefix = prefix.to_owned();
        config.csv_max_bytes = 1024 * 1024;
        config.invalidation_wait_ms = 0;
        // Rate limits have tests of their own (tests/api/auth.rs).
        config.valkey_url = String::new();
        Self::with_config(db, config).await
    }

    /// The app for a given config, with an admin key made for the test.
    pub async fn with_config(db: PgPool, config: ApiConfig) -> Self {
        let service = Service::start_with_pool(&config, db.clone())
            .await
            .expect("api starts");
        let key = Self::make_key(&db, None).await;
        Self {
            router: service.router(),
            state: service.state.clone(),
            service,
            db,
            key,
        }
    }

    /// A new key: admin (`user_id` None) or acting as that user.
    pub async fn make_key(db: &PgPool, user_id: Option<i64>) -> String {
        shortline_api::keys::create(
            &db.clone().into(),
            NewKey {
                user_id,
                name: "test".into(),
                expires_at: None,
                rate_limit_per_minute: None,
            },
        )
        .await
        .expect("key created")
        .secret
    }

    pub async fn request(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> TestResponse {
        self.request_with(Some(&self.key), method, uri, content_type, body)
            .await
    }

    /// A request sending `key` as a bearer token (or no key at all).
    pub async fn request_with(
        &self,
        key: Option<&str>,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> TestResponse {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let req = req.body(Body::from(body)).expect("request builds");
        let reply = shortline_shared::testing::call(self.router.clone(), req).await;
        TestResponse {
            status: reply.status,
            headers: reply.headers,
            body: reply.body.to_vec(),
        }
    }

    /// A request as `key` (or with no key), with `body` as JSON when given.
    pub async fn as_key(
        &self,
        key: Option<&str>,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let (ct, bytes) = match body {
            Some(b) => (Some("application/json"), b.to_string().into_bytes()),
            None => (None, Vec::new()),
        };
        self.request_with(key, method, uri, ct, bytes).await
    }

    pub async fn get(&self, uri: &str) -> TestResponse {
        self.request(Method::GET, uri, None, Vec::new()).await
    }

    pub async fn delete(&self, uri: &str) -> TestResponse {
        self.request(Method::DELETE, uri, None, Vec::new()).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> TestResponse {
        self.request(
            Method::POST,
            uri,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn put(&self, uri: &str, body: Value) -> TestResponse {
        self.request(
            Method::PUT,
            uri,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn upload_csv(&self, uri: &str, field: &str, csv: &[u8]) -> TestResponse {
        let boundary = "shortline-test-boundary";
        let mut body = Vec::new();
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"users.csv\"\r\nContent-Type: text/csv\r\n\r\n").as_bytes());
        body.extend_from_slice(csv);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.request(
            Method::POST,
            uri,
            Some(&format!("multipart/form-data; boundary={boundary}")),
            body,
        )
        .await
    }

    /// POSTs `body` to `uri`, which must answer 201; returns what it made.
    pub async fn created(&self, uri: &str, body: Value) -> Value {
        let res = self.post(uri, body).await;
        assert_eq!(
            res.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&res.body)
        );
        res.json()
    }

    /// Creates a user and returns its JSON.
    pub async fn user(&self, name: &str) -> Value {
        self.created(
            "/users",
            serde_json::json!({"username": name, "email": format!("{name}@example.com")}),
        )
        .await
    }

    /// Creates a link for a user and returns its JSON.
    pub async fn link(&self, user_id: i64, url: &str) -> Value {
        self.created(
            "/urls",
            serde_json::json!({"user_id": user_id, "original_url": url, "title": "t"}),
        )
        .await
    }

    pub async fn outbox_types(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT payload->>'type' FROM outbox ORDER BY id")
            .fetch_all(&self.db)
            .await
            .expect("outbox reads")
    }
}

/// The contract's wire format for timestamps.
pub fn is_wire_timestamp(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 19 && chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").is_ok()
    })
}
