//! The link-management surface of issue #16: short URLs and `Location`,
//! list totals and `Link` headers, tags, search and sort, and the create
//! conveniences (`find_if_exists`, `POST /urls/bulk`).

use axum::http::StatusCode;
use serde_json::json;
use shortline_api::config::ApiConfig;
use shortline_api::links::short_url::PublicBase;
use sqlx::PgPool;

use crate::support::{TestApp, TestResponse};

fn header_str<'a>(res: &'a TestResponse, name: &str) -> Option<&'a str> {
    res.headers.get(name).and_then(|v| v.to_str().ok())
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn every_link_answer_carries_its_short_url_and_create_its_location(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let res = app
        .post(
            "/urls",
            json!({"user_id": uid, "original_url": "https://example.com/a", "short_code": "abc-1"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let link = res.json();
    let id = link["id"].as_i64().expect("id");
    assert_eq!(link["short_url"], "http://127.0.0.1:8000/abc-1");
    assert_eq!(header_str(&res, "location"), Some(&*format!("/urls/{id}")));

    let read = app.get(&format!("/urls/{id}")).await.json();
    assert_eq!(read["short_url"], "http://127.0.0.1:8000/abc-1");
    let put = app
        .put(&format!("/urls/{id}"), json!({"title": "x"}))
        .await
        .json();
    assert_eq!(put["short_url"], "http://127.0.0.1:8000/abc-1");
    // Paged and streamed lists alike.
    let page = app.get("/urls?per_page=5").await.json();
    assert_eq!(page[0]["short_url"], "http://127.0.0.1:8000/abc-1");
    let all = app.get("/urls").await.json();
    assert_eq!(all[0]["short_url"], "http://127.0.0.1:8000/abc-1");
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_short_url_follows_public_base_url(db: PgPool) {
    let mut config = ApiConfig::for_urls("postgres://unused", "");
    config.invalidation_wait_ms = 0;
    config.valkey_url = String::new();
    config.public_base_url = PublicBase::parse("https://Sho.rt/").expect("base");
    let app = TestApp::with_config(db, config).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let link = app
        .post(
            "/urls",
            json!({"user_id": uid, "original_url": "https://example.com/a", "short_code": "Xy_9"}),
        )
        .await
        .json();
    assert_eq!(link["short_url"], "https://sho.rt/Xy_9");
    let all = app.get("/urls").await.json();
    assert_eq!(all[0]["short_url"], "https://sho.rt/Xy_9");
}
