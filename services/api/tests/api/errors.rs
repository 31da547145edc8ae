//! The contract's error conventions: JSON on every error, malformed bodies
//! are 400 on every POST/PUT, unknown routes 404, wrong methods 405.

use axum::http::{Method, StatusCode, header};
use serde_json::json;
use shortline_api::config::ApiConfig;
use shortline_shared::testing::{OwnServer, ServerKind, unique_prefix};
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn malformed_bodies_are_400_on_every_write(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let lid = app.link(uid, "https://a.io").await["id"]
        .as_i64()
        .expect("id");
    let targets = [
        (Method::POST, "/users".to_owned()),
        (Method::PUT, format!("/users/{uid}")),
        (Method::POST, "/urls".to_owned()),
        (Method::PUT, format!("/urls/{lid}")),
        (Method::POST, "/events".to_owned()),
    ];
    let bodies: [(Option<&str>, &[u8]); 9] = [
        (Some("application/json"), b"{not json"),
        (Some("application/json"), b"\"a string\""),
        (Some("application/json"), b"[1,2]"),
        (Some("application/json"), b"42"),
        (Some("application/json"), b"null"),
        (Some("application/json"), b""),
        (Some("text/plain"), b"hello"),
        (
            Some("application/x-www-form-urlencoded"),
            b"username=a&email=b",
        ),
        (None, b""),
    ];
    for (method, uri) in &targets {
        for (ct, body) in &bodies {
            let res = app.request(method.clone(), uri, *ct, body.to_vec()).await;
            let err = res.assert_error(StatusCode::BAD_REQUEST);
            assert!(
                err.get("details").is_none() || err["details"].is_object(),
                "{method} {uri} {ct:?}: {err}"
            );
        }
    }
    // Nothing changed.
    assert_eq!(
        app.get("/users").await.json().as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        app.get("/urls").await.json().as_array().map(Vec::len),
        Some(1)
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn unknown_routes_and_methods_are_json(db: PgPool) {
    let app = TestApp::new(db).await;
    let res = app.get("/nope/nested").await;
    assert_eq!(
        res.assert_error(StatusCode::NOT_FOUND)["error"],
        "Not found"
    );
    let res = app.request(Method::PATCH, "/users", None, Vec::new()).await;
    res.assert_error(StatusCode::METHOD_NOT_ALLOWED);
    assert!(res.headers.get("allow").is_some(), "405 keeps Allow");
    app.request(Method::DELETE, "/users", None, Vec::new())
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED);
    app.request(Method::POST, "/health", None, Vec::new())
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED);
}

/// Errors are RFC 9457 problem documents; a client that names
/// `application/problem+json` in `Accept` gets that media type, others the
/// `application/json` they always got. Axum's and tower's own errors too.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn errors_are_problem_documents(db: PgPool) {
    let app = TestApp::new(db).await;
    let cases: &[(Method, &str, Option<&str>, StatusCode)] = &[
        (Method::GET, "/users/999", None, StatusCode::NOT_FOUND),
        (Method::GET, "/nope", None, StatusCode::NOT_FOUND),
        (
            Method::PATCH,
            "/users",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::POST, "/users", Some("{"), StatusCode::BAD_REQUEST),
        (Method::POST, "/users", Some("{}"), StatusCode::BAD_REQUEST),
    ];
    for (method, uri, body, status) in cases {
        for (accept, want) in [
            (None, "application/json"),
            (Some("application/problem+json"), "application/problem+json"),
            (
                Some("application/json, application/problem+json;q=0.9"),
                "application/problem+json",
            ),
        ] {
            let mut req = axum::http::Request::builder()
                .method(method.clone())
                .uri(*uri)
                .header(header::AUTHORIZATION, format!("Bearer {}", app.key));
            if let Some(accept) = accept {
                req = req.header(header::ACCEPT, accept);
            }
            if body.is_some() {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            let req = req
                .body(axum::body::Body::from(body.unwrap_or("").to_owned()))
                .expect("request");
            let res = shortline_shared::testing::call(app.router.clone(), req).await;
            assert_eq!(res.status, *status, "{method} {uri}");
            assert_eq!(
                res.header("content-type"),
                want,
                "{method} {uri} accept {accept:?}"
            );
            let problem = res.json();
            assert_eq!(problem["status"], status.as_u16(), "{problem}");
            assert_eq!(problem["title"], status.canonical_reason().expect("reason"));
            assert_eq!(problem["type"], "about:blank");
            assert!(
                problem["detail"].is_string() && problem["detail"] == problem["error"],
                "{problem}"
            );
        }
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn oversized_json_is_413(db: PgPool) {
    let app = TestApp::new(db).await;
    let huge = json!({"username": "x".repeat(200_000), "email": "a@b.io"});
    app.post("/users", huge)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn health_ready_metrics_and_request_ids(db: PgPool) {
    let app = TestApp::new(db).await;
    let res = app.get("/health").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json(), json!({"status": "ok"}));
    let id = res
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id made");
    assert_eq!(id.len(), 26, "a ULID: {id}");

    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["postgres"], "ok");
    // This app runs without NATS and Valkey: the shared vocabulary says so.
    assert_eq!(ready.json()["nats"], "not configured");
    assert_eq!(ready.json()["valkey"], "not configured");

    let mut req = axum::http::Request::builder()
        .uri("/health")
        .header("x-request-id", "abc-123");
    req = req.method(Method::GET);
    let res = tower::ServiceExt::oneshot(
        app.router.clone(),
        req.body(axum::body::Body::empty()).expect("builds"),
    )
    .await
    .expect("answers");
    assert_eq!(
        res.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("abc-123"),
        "client id echoed"
    );

    app.get("/users/1").await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("http_server_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("http_route=\"/users/{id}\""), "{text}");
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn ready_is_503_without_postgres(db: PgPool) {
    let app = TestApp::new(db).await;
    app.db.close().await;
    let res = app.get("/ready").await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.json()["postgres"], "unreachable");
    // Data routes answer a JSON 5xx, never a hang or HTML.
    let res = app.get("/users").await;
    assert!(res.status.is_server_error());
    assert!(res.json()["error"].is_string());
}

/// NATS and Valkey away are reported in `/ready` but do not fail it: writes
/// wait in the outbox, and rate limits let requests through.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn ready_reports_nats_and_valkey_away_without_failing(db: PgPool) {
    let nats = OwnServer::not_started(ServerKind::Nats);
    let valkey = OwnServer::not_started(ServerKind::Valkey);
    let mut config = ApiConfig::for_urls("postgres://unused", &nats.url());
    config.common.nats_prefix = unique_prefix();
    config.valkey_url = valkey.url();
    let app = TestApp::with_config(db, config).await;
    let res = app.get("/ready").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.json());
    assert_eq!(
        res.json(),
        json!({
            "status": "ok",
            "postgres": "ok",
            "valkey": "unreachable",
            "nats": "unreachable",
            "auth": "required",
        })
    );
    app.service.shutdown().await;
}

/// PostgreSQL cannot store a NUL character in `text` or `jsonb`; wherever a
/// client sends one it is a 400 naming the field, never a 500.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn nul_anywhere_is_a_400_naming_the_field(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("nul").await["id"].as_i64().expect("id");
    let lid = app.link(uid, "https://a.io").await["id"]
        .as_i64()
        .expect("id");
    let cases = [
        (
            Method::POST,
            "/users".to_owned(),
            json!({"username": "a\u{0}b", "email": "ab@x.io"}),
            "username",
        ),
        (
            Method::POST,
            "/users".to_owned(),
            json!({"username": "ab", "email": "a\u{0}b@x.io"}),
            "email",
        ),
        (
            Method::PUT,
            format!("/users/{uid}"),
            json!({"username": "\u{0}"}),
            "username",
        ),
        (
            Method::PUT,
            format!("/users/{uid}"),
            json!({"email": "x\u{0}@x.io"}),
            "email",
        ),
        (
            Method::POST,
            "/urls".to_owned(),
            json!({"user_id": uid, "original_url": "https://a.io/\u{0}"}),
            "original_url",
        ),
        (
            Method::POST,
            "/urls".to_owned(),
            json!({"user_id": uid, "original_url": "https://a.io/", "title": "t\u{0}"}),
            "title",
        ),
        (
            Method::POST,
            "/urls".to_owned(),
            json!({"user_id": uid, "original_url": "https://a.io/", "short_code": "ab\u{0}"}),
            "short_code",
        ),
        (
            Method::PUT,
            format!("/urls/{lid}"),
            json!({"title": "t\u{0}"}),
            "title",
        ),
        (
            Method::PUT,
            format!("/urls/{lid}"),
            json!({"original_url": "https://a.io/\u{0}"}),
            "original_url",
        ),
        (
            Method::POST,
            "/events".to_owned(),
            json!({"url_id": lid, "user_id": uid, "event_type": "x\u{0}"}),
            "event_type",
        ),
        (
            Method::POST,
            "/events".to_owned(),
            json!({"url_id": lid, "user_id": uid, "event_type": "x", "details": {"a": "\u{0}"}}),
            "details",
        ),
        (
            Method::POST,
            "/events".to_owned(),
            json!({"url_id": lid, "user_id": uid, "event_type": "x", "details": {"a\u{0}": 1}}),
            "details",
        ),
        (
            Method::POST,
            "/events".to_owned(),
            json!({"url_id": lid, "user_id": uid, "event_type": "x", "details": {"a": [{"b": {"c\u{0}": "d"}}]}}),
            "details",
        ),
        (
            Method::POST,
            "/events".to_owned(),
            json!({"url_id": lid, "user_id": uid, "event_type": "x", "details": {"a": ["ok", "\u{0}"]}}),
            "details",
        ),
    ];
    for (method, uri, body, field) in cases {
        let res = app
            .request(
                method.clone(),
                &uri,
                Some("application/json"),
                body.to_string().into_bytes(),
            )
            .await;
        let err = res.assert_error(StatusCode::BAD_REQUEST);
        assert!(
            err["details"][field].is_string(),
            "{method} {uri} {body}: {err}"
        );
    }
    for (uri, field) in [
        ("/events?event_type=%00", "event_type"),
        ("/events?event_type=a%00b&url_id=1", "event_type"),
        ("/urls?user_id=1&x%00=1", "x\\0"),
    ] {
        let err = app.get(uri).await.assert_error(StatusCode::BAD_REQUEST);
        assert!(err["details"][field].is_string(), "{uri}: {err}");
    }
    // Nothing was written by any of them.
    assert_eq!(
        app.get("/users").await.json().as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(app.get("/urls").await.json()[0]["title"], "t");
    assert_eq!(
        app.get("/events?event_type=x")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

/// A client's `X-Request-ID` is echoed only when it is short and plain;
/// otherwise the request gets a fresh ULID.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn client_request_ids_are_capped(db: PgPool) {
    let app = TestApp::new(db).await;
    let long = "a".repeat(8000);
    for (sent, echoed) in [
        ("req-1.2_3:4", true),
        ("a".repeat(128).as_str(), true),
        ("a".repeat(129).as_str(), false),
        (long.as_str(), false),
        ("evil\"id", false),
        ("a b", false),
    ] {
        let req = axum::http::Request::get("/health")
            .header("x-request-id", sent)
            .body(axum::body::Body::empty())
            .expect("request");
        let reply = shortline_shared::testing::call(app.router.clone(), req).await;
        assert_eq!(reply.status, StatusCode::OK);
        let got = reply.header("x-request-id");
        if echoed {
            assert_eq!(got, sent);
        } else {
            // (Compared as a length first: a long echo would flood the log.)
            assert_eq!(got.len(), 26);
            assert!(got.parse::<ulid::Ulid>().is_ok(), "{got}");
        }
    }
}

/// Path ids that are no ids (percent-encoded UTF-8, reserved characters)
/// are the resource's 404, as JSON, on every id route.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn odd_path_ids_are_json_404s(db: PgPool) {
    let app = TestApp::new(db).await;
    let odd = "%C3%8E%C3%B3_m%F2%A9%82%ADk%F0%B6%88%90%3F%26";
    for (method, uri) in [
        (Method::DELETE, format!("/keys/{odd}")),
        (Method::GET, format!("/users/{odd}")),
        (Method::GET, format!("/urls/{odd}")),
        (Method::DELETE, "/keys/%FF".to_owned()),
    ] {
        let res = app.request(method.clone(), &uri, None, Vec::new()).await;
        res.assert_error(StatusCode::NOT_FOUND);
    }
}
