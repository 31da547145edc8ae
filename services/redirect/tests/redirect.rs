//! The redirect route through the real router against a real database.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use shortline_redirect::state::RedirectState;
use sqlx::PgPool;
use tower::ServiceExt;

async fn insert_link(db: &PgPool, code: &str, url: &str, active: bool) {
    sqlx::query(
        "INSERT INTO urls (user_id, short_code, original_url, is_active) VALUES (1, $1, $2, $3)",
    )
    .bind(code)
    .bind(url)
    .bind(active)
    .execute(db)
    .await
    .expect("insert link");
}

async fn call(
    db: &PgPool,
    method: Method,
    uri: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let app = shortline_redirect::router(RedirectState { db: db.clone() });
    let res = app
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answers");
    let status = res.status();
    let headers = res.headers().clone();
    (
        status,
        headers,
        res.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn redirects_to_the_stored_url_exactly(db: PgPool) {
    let target = "https://opswise.net/harbor/journey/1?q=a%20b&x=1#frag";
    insert_link(&db, "ALQRog", target, true).await;
    for method in [Method::GET, Method::HEAD] {
        let (status, headers, _) = call(&db, method.clone(), "/ALQRog").await;
        assert_eq!(status, StatusCode::FOUND, "{method}");
        assert_eq!(
            headers.get("location").and_then(|v| v.to_str().ok()),
            Some(target)
        );
        assert_eq!(
            headers.get("x-cache").and_then(|v| v.to_str().ok()),
            Some("MISS")
        );
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn unknown_and_inactive_codes_are_json_404(db: PgPool) {
    insert_link(&db, "off123", "https://example.com", false).await;
    for uri in ["/off123", "/nope42", "/alqrog"] {
        let (status, headers, body) = call(&db, Method::GET, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(headers.get("location").is_none());
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert!(json["error"].is_string());
    }
    let (status, _, body) = call(&db, Method::POST, "/off123").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn health_and_ready(db: PgPool) {
    let (status, _, body) = call(&db, Method::GET, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).ok(),
        Some(serde_json::json!({"status": "ok"}))
    );
    assert_eq!(call(&db, Method::GET, "/ready").await.0, StatusCode::OK);
}
