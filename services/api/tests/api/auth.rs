//! API keys, scopes and rate limits through the real router, against a real
//! PostgreSQL and (for the limits) a real Valkey.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode, header};
use serde_json::json;
use shortline_api::config::{ApiConfig, AuthMode};
use shortline_shared::testing::{OwnServer, ServerKind, unique_prefix};
use sqlx::PgPool;

use crate::support::{TestApp, TestResponse};

fn valkey_url() -> String {
    std::env::var("VALKEY_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".into())
}

/// A config whose rate limits are counted in `valkey` under a prefix of
/// this test's own.
fn limited_config(valkey: &str) -> ApiConfig {
    let mut config = ApiConfig::for_urls("postgres://unused", "");
    config.common.nats_prefix = unique_prefix();
    config.valkey_url = valkey.to_owned();
    config.valkey_timeout_ms = 500;
    config.invalidation_wait_ms = 0;
    config
}

fn assert_unauthorized(res: &TestResponse, context: &str) {
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "{context}: {}",
        String::from_utf8_lossy(&res.body)
    );
    let challenge = res
        .headers
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        challenge.starts_with("Bearer"),
        "{context}: WWW-Authenticate {challenge:?}"
    );
    res.assert_error(StatusCode::UNAUTHORIZED);
}

/// Every operation in the OpenAPI document but liveness and readiness
/// answers 401 without a key, so a new route cannot slip out unprotected.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn every_documented_route_needs_a_key(db: PgPool) {
    let app = TestApp::new(db).await;
    let doc = app.as_key(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK, "the document itself is public");
    let doc = doc.json();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let uri = path.replace("{id}", "1");
            let public = path == "/health" || path == "/ready";
            let security = &item[method.as_str().to_lowercase()]["security"];
            let res = app
                .as_key(None, method.clone(), &uri, Some(json!({})))
                .await;
            if public {
                assert_ne!(res.status, StatusCode::UNAUTHORIZED, "{method} {path}");
                assert_eq!(
                    security,
                    &json!([{}]),
                    "{method} {path} is documented public"
                );
            } else {
                assert_unauthorized(&res, &format!("{method} {path} without a key"));
                assert!(
                    security.is_null(),
                    "{method} {path} keeps the global requirement"
                );
                assert!(
                    item[method.as_str().to_lowercase()]["responses"]["401"].is_object(),
                    "{method} {path} documents 401"
                );
                let bad = app
                    .as_key(Some("sl_nope"), method.clone(), &uri, Some(json!({})))
                    .await;
                assert_unauthorized(&bad, &format!("{method} {path} with a malformed key"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 17, "only {checked} protected operations found");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKey"]["name"],
        "X-API-Key"
    );
    // Unknown paths ask for a key too (they reveal nothing about routes).
    assert_unauthorized(
        &app.as_key(None, Method::GET, "/nope", None).await,
        "GET /nope",
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn keys_are_accepted_as_bearer_or_x_api_key(db: PgPool) {
    let app = TestApp::new(db).await;
    assert_eq!(
        app.get("/users").await.status,
        StatusCode::OK,
        "Authorization: Bearer"
    );
    let req = axum::http::Request::builder()
        .uri("/users")
        .header("x-api-key", &app.key)
        .body(axum::body::Body::empty())
        .expect("request");
    let res = shortline_shared::testing::call(app.router.clone(), req).await;
    assert_eq!(res.status, StatusCode::OK, "X-API-Key");
    for auth in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer sl_x_y",
        &format!("Token {}", app.key),
    ] {
        let req = axum::http::Request::builder()
            .uri("/users")
            .header(header::AUTHORIZATION, auth)
            .body(axum::body::Body::empty())
            .expect("request");
        let res = shortline_shared::testing::call(app.router.clone(), req).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{auth}");
    }
    // A key with one character changed is refused (the secret is checked).
    let mut wrong = app.key.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).expect("ascii");
    assert_unauthorized(
        &app.as_key(Some(&wrong), Method::GET, "/users", None).await,
        "wrong secret",
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn user_keys_act_as_their_user_only(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.user("alice").await["id"].as_i64().expect("id");
    let bob = app.user("bob").await["id"].as_i64().expect("id");
    let bobs = app.link(bob, "https://example.com/bob").await["id"]
        .as_i64()
        .expect("id");
    let created = app
        .post("/keys", json!({"user_id": alice, "name": "alice's laptop"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let key = created.json()["key"].as_str().expect("key").to_owned();
    let k = Some(key.as_str());

    // Links they create are theirs; acting for someone else is 403.
    let other = app
        .as_key(
            k,
            Method::POST,
            "/urls",
            Some(json!({"user_id": bob, "original_url": "https://x.io"})),
        )
        .await;
    other.assert_error(StatusCode::FORBIDDEN);
    let own = app
        .as_key(
            k,
            Method::POST,
            "/urls",
            Some(json!({"user_id": alice, "original_url": "https://x.io/a"})),
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED);
    let alices = own.json()["id"].as_i64().expect("id");

    // They see only their links and events; another user's link is 404.
    let list = app.as_key(k, Method::GET, "/urls", None).await.json();
    let ids: Vec<i64> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|l| l["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [alices]);
    let asked_for_bob = app
        .as_key(k, Method::GET, &format!("/urls?user_id={bob}"), None)
        .await;
    assert_eq!(asked_for_bob.json(), json!([]));
    for (method, uri) in [
        (Method::GET, format!("/urls/{bobs}")),
        (Method::PUT, format!("/urls/{bobs}")),
        (Method::DELETE, format!("/urls/{bobs}")),
        (Method::GET, format!("/urls/{bobs}/events")),
        (Method::GET, format!("/urls/{bobs}/stats")),
    ] {
        let res = app
            .as_key(k, method.clone(), &uri, Some(json!({"title": "mine now"})))
            .await;
        let body = res.assert_error(StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "URL not found", "{method} {uri}");
    }
    assert_eq!(
        app.get(&format!("/urls/{bobs}")).await.json()["title"],
        "t",
        "bob's link untouched"
    );
    assert_eq!(
        app.as_key(k, Method::GET, &format!("/urls/{alices}"), None)
            .await
            .status,
        StatusCode::OK
    );
    let events = app.as_key(k, Method::GET, "/events", None).await.json();
    assert!(
        events
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["user_id"] == alice),
        "{events}"
    );
    assert!(!events.as_array().expect("events").is_empty());
    let ev = |url_id: i64, user_id: i64| json!({"url_id": url_id, "user_id": user_id, "event_type": "click", "details": {}});
    app.as_key(k, Method::POST, "/events", Some(ev(bobs, bob)))
        .await
        .assert_error(StatusCode::FORBIDDEN);
    app.as_key(k, Method::POST, "/events", Some(ev(bobs, alice)))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    assert_eq!(
        app.as_key(k, Method::POST, "/events", Some(ev(alices, alice)))
            .await
            .status,
        StatusCode::CREATED
    );

    // No user or key management; their own user reads back.
    assert_eq!(
        app.as_key(k, Method::GET, &format!("/users/{alice}"), None)
            .await
            .status,
        StatusCode::OK
    );
    for (method, uri, body) in [
        (Method::GET, "/users".to_owned(), None),
        (
            Method::POST,
            "/users".to_owned(),
            Some(json!({"username": "eve", "email": "eve@example.com"})),
        ),
        (Method::GET, format!("/users/{bob}"), None),
        (
            Method::PUT,
            format!("/users/{alice}"),
            Some(json!({"username": "alice2"})),
        ),
        (Method::DELETE, format!("/users/{bob}"), None),
        (Method::GET, "/keys".to_owned(), None),
        (
            Method::POST,
            "/keys".to_owned(),
            Some(json!({"user_id": null, "name": "escalate"})),
        ),
        (Method::DELETE, "/keys/1".to_owned(), None),
    ] {
        app.as_key(k, method, &uri, body)
            .await
            .assert_error(StatusCode::FORBIDDEN);
    }
    let bulk = app
        .request_with(
            k,
            Method::POST,
            "/users/bulk",
            Some("multipart/form-data; boundary=x"),
            b"--x--\r\n".to_vec(),
        )
        .await;
    bulk.assert_error(StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn keys_are_shown_once_and_stored_hashed(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let res = app
        .post("/keys", json!({"user_id": null, "name": "ops", "expires_at": null, "rate_limit_per_minute": 500}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let created = res.json();
    let key = created["key"].as_str().expect("key");
    let prefix = created["prefix"].as_str().expect("prefix");
    assert!(
        key.starts_with(&format!("{prefix}_")) && prefix.starts_with("sl_"),
        "{created}"
    );
    assert_eq!(created["kind"], "admin");
    assert_eq!(created["rate_limit_per_minute"], 500);
    assert!(key.len() >= 40, "{key}");
    // Listed without the secret; the database holds only a hash.
    let listed = app.get("/keys").await.json();
    let entry = listed
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == created["id"])
        .expect("listed");
    assert!(
        entry.get("key").is_none() && entry.get("secret_hash").is_none(),
        "{entry}"
    );
    let secret = key.rsplit('_').next().expect("secret");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE position($1::bytea in secret_hash) > 0 OR name = $2",
    )
    .bind(secret.as_bytes())
    .bind(secret)
    .fetch_one(&db)
    .await
    .expect("query");
    assert_eq!(stored, 0, "the secret is not stored");
    // The new key works, and its use is recorded.
    assert_eq!(
        app.as_key(Some(key), Method::GET, "/keys", None)
            .await
            .status,
        StatusCode::OK
    );
    let mut used = false;
    for _ in 0..50 {
        let listed = app.get("/keys").await.json();
        used = listed
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["id"] == created["id"] && k["last_used_at"].is_string());
        if used {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(used, "last_used_at recorded");
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bad_key_requests_name_the_field(db: PgPool) {
    let app = TestApp::new(db).await;
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"name": "x", "user_id": "7"}), "user_id"),
        (
            json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (json!({"name": "x", "expires_at": "soon"}), "expires_at"),
        (
            json!({"name": "x", "rate_limit_per_minute": 0}),
            "rate_limit_per_minute",
        ),
        (
            json!({"name": "x", "rate_limit_per_minute": 10_000_000}),
            "rate_limit_per_minute",
        ),
    ] {
        let res = app.post("/keys", body.clone()).await;
        let err = res.assert_error(StatusCode::BAD_REQUEST);
        assert!(err["details"][field].is_string(), "{body}: {err}");
    }
    let missing = app
        .post("/keys", json!({"name": "x", "user_id": 424242}))
        .await;
    assert_eq!(
        missing.assert_error(StatusCode::NOT_FOUND)["error"],
        "User not found"
    );
    app.delete("/keys/424242")
        .await
        .assert_error(StatusCode::NOT_FOUND);
    app.delete("/keys/abc")
        .await
        .assert_error(StatusCode::NOT_FOUND);
}

/// Revocation and expiry reach a second api instance (its own key cache)
/// within the cache's lifetime.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn revoked_and_expired_keys_stop_working_on_every_instance(db: PgPool) {
    let a = TestApp::new(db.clone()).await;
    let b = TestApp::new(db.clone()).await;
    let cache = Duration::from_millis(a.state.config.api_key_cache_ms);
    let created = a.post("/keys", json!({"name": "to revoke"})).await.json();
    let key = created["key"].as_str().expect("key");
    let expires_at = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let short = a
        .post(
            "/keys",
            json!({"name": "short-lived", "expires_at": expires_at}),
        )
        .await
        .json();
    let short_key = short["key"].as_str().expect("key");
    // Both instances have verified (and cached) both keys.
    for app in [&a, &b] {
        for k in [key, short_key] {
            assert_eq!(
                app.as_key(Some(k), Method::GET, "/users", None)
                    .await
                    .status,
                StatusCode::OK
            );
        }
    }
    assert_eq!(
        a.delete(&format!("/keys/{}", created["id"])).await.status,
        StatusCode::NO_CONTENT
    );
    a.delete(&format!("/keys/{}", created["id"]))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    tokio::time::sleep(cache + Duration::from_millis(100)).await;
    for app in [&a, &b] {
        let res = app.as_key(Some(key), Method::GET, "/users", None).await;
        assert_unauthorized(&res, "revoked");
        assert_eq!(res.json()["error"], "API key revoked");
    }
    // Expiry is checked on every request against the key's time.
    let until = chrono::DateTime::parse_from_rfc3339(&expires_at).expect("time");
    while chrono::Utc::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for app in [&a, &b] {
        let res = app
            .as_key(Some(short_key), Method::GET, "/users", None)
            .await;
        assert_unauthorized(&res, "expired");
        assert_eq!(res.json()["error"], "API key expired");
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn keys_of_deleted_users_stop_working(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let carol = app.user("carol").await["id"].as_i64().expect("id");
    let key = TestApp::make_key(&db, Some(carol)).await;
    assert_eq!(
        app.as_key(Some(&key), Method::GET, "/urls", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.delete(&format!("/users/{carol}")).await.status,
        StatusCode::NO_CONTENT
    );
    tokio::time::sleep(Duration::from_millis(
        app.state.config.api_key_cache_ms + 100,
    ))
    .await;
    assert_unauthorized(
        &app.as_key(Some(&key), Method::GET, "/urls", None).await,
        "deleted user",
    );
}

/// `API_AUTH=off`: the contract as it always was, no key needed, and
/// `/ready` says so.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn auth_off_runs_the_contract_without_keys(db: PgPool) {
    let mut config = ApiConfig::for_urls("postgres://unused", "");
    config.api_auth = AuthMode::Off;
    config.valkey_url = String::new();
    let app = TestApp::with_config(db, config).await;
    let user = app
        .as_key(
            None,
            Method::POST,
            "/users",
            Some(json!({"username": "u", "email": "u@example.com"})),
        )
        .await;
    assert_eq!(user.status, StatusCode::CREATED);
    assert_eq!(
        app.as_key(None, Method::GET, "/users", None).await.status,
        StatusCode::OK
    );
    let ready = app.as_key(None, Method::GET, "/ready", None).await.json();
    assert_eq!(ready["auth"], "off");
    let on = TestApp::new(app.db.clone()).await;
    assert_eq!(on.get("/ready").await.json()["auth"], "required");
}

/// Waits until the app's rate limiter is connected to Valkey.
async fn limiter_ready(app: &TestApp) {
    let limiter = app.state.access.limiter.as_ref().expect("a limiter");
    for _ in 0..200 {
        if limiter.is_connected() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the rate limiter did not connect to Valkey");
}

fn header<'a>(res: &'a TestResponse, name: &str) -> &'a str {
    res.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// One key hammered through two api instances: exactly its limit passes
/// (plus what the steady rate refills while the burst runs), the rest is
/// 429 with `Retry-After` and the IETF rate-limit fields.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_rate_limit_is_shared_by_every_instance(db: PgPool) {
    let config = limited_config(&valkey_url());
    let a = TestApp::with_config(db.clone(), config.clone()).await;
    let b = TestApp::with_config(db.clone(), config).await;
    limiter_ready(&a).await;
    limiter_ready(&b).await;
    let created = a
        .post(
            "/keys",
            json!({"name": "limited", "rate_limit_per_minute": 10}),
        )
        .await
        .json();
    let key = created["key"].as_str().expect("key").to_owned();
    let started = Instant::now();
    let requests = (0..40).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let key = key.clone();
        async move { app.as_key(Some(&key), Method::GET, "/urls", None).await }
    });
    let answers = futures::future::join_all(requests).await;
    let elapsed = started.elapsed();
    let ok: Vec<&TestResponse> = answers
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    let limited: Vec<&TestResponse> = answers
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(ok.len() + limited.len(), answers.len());
    // One request is refilled every 6 s at 10 per minute.
    let refilled = usize::try_from(elapsed.as_secs() / 6).unwrap_or(usize::MAX);
    assert!(
        ok.len() >= 10 && ok.len() <= 10 + refilled,
        "{} passed in {elapsed:?}",
        ok.len()
    );
    for res in &ok {
        assert_eq!(header(res, "ratelimit-policy"), "\"per-key\";q=10;w=60");
        assert!(
            header(res, "ratelimit").starts_with("\"per-key\";r="),
            "{:?}",
            res.headers
        );
    }
    let remaining: Vec<u64> = ok
        .iter()
        .filter_map(|r| {
            header(r, "ratelimit")
                .split(";r=")
                .nth(1)?
                .split(';')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        remaining.contains(&0) && remaining.contains(&9),
        "{remaining:?}"
    );
    for res in &limited {
        let body = res.assert_error(StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = header(res, "retry-after")
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=6).contains(&retry), "Retry-After {retry}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("Rate limit")),
            "{body}"
        );
        assert!(
            header(res, "ratelimit").contains(";r=0;"),
            "{:?}",
            res.headers
        );
    }
}

/// Requests without a key are limited per client address, so a flood of
/// 401s stops at the limit too.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn requests_without_a_key_are_limited_per_address(db: PgPool) {
    let mut config = limited_config(&valkey_url());
    config.rate_limit_anonymous_per_minute = 3;
    let app = TestApp::with_config(db, config).await;
    limiter_ready(&app).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            app.as_key(None, Method::GET, "/urls", None)
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    // A valid key is counted in its own bucket, not the address'.
    assert_eq!(app.get("/urls").await.status, StatusCode::OK);
}

/// Valkey away: requests pass unchecked (fail open), and the metric counts
/// them.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_limiter_fails_open_when_valkey_is_down(db: PgPool) {
    let mut valkey = OwnServer::start(ServerKind::Valkey).await;
    let app = TestApp::with_config(db, limited_config(&valkey.url())).await;
    let mut connected = false;
    for _ in 0..100 {
        let res = app.get("/urls").await;
        if !header(&res, "ratelimit").is_empty() {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        connected,
        "the limiter counted requests while Valkey was up"
    );
    let before = fail_open_count(&app).await;
    valkey.stop();
    for _ in 0..5 {
        let res = app.get("/urls").await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(header(&res, "ratelimit").is_empty(), "no limit was counted");
    }
    let after = fail_open_count(&app).await;
    assert!(
        after >= before + 5.0,
        "fail-open counter {before} -> {after}"
    );
}

async fn fail_open_count(app: &TestApp) -> f64 {
    let res = app.get("/metrics").await;
    String::from_utf8_lossy(&res.body)
        .lines()
        .find(|l| l.starts_with("shortline_rate_limit_fail_open_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
