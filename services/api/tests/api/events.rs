use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::support::{TestApp, is_wire_timestamp};

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn record_and_filter(db: PgPool) {
    let app = TestApp::new(db).await;
    let u1 = app.user("one").await["id"].as_i64().expect("id");
    let u2 = app.user("two").await["id"].as_i64().expect("id");
    let l1 = app.link(u1, "https://a.io").await;
    let l2 = app.link(u2, "https://b.io").await;

    let res = app.post("/events", json!({"url_id": l1["id"], "user_id": u1, "event_type": "shared", "details": {"channel": "mail"}})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let e = res.json();
    assert!(e["id"].is_i64());
    assert_eq!(e["event_type"], "shared");
    assert_eq!(e["details"], json!({"channel": "mail"}));
    assert!(is_wire_timestamp(&e["timestamp"]));
    let no_details = app
        .post(
            "/events",
            json!({"url_id": l2["id"], "user_id": u2, "event_type": "shared"}),
        )
        .await;
    assert_eq!(no_details.json()["details"], json!({}));

    let count = |v: serde_json::Value| v.as_array().map(Vec::len).unwrap_or(usize::MAX);
    assert_eq!(
        count(app.get("/events").await.json()),
        4,
        "2 created + 2 shared"
    );
    assert_eq!(
        count(
            app.get(&format!("/events?url_id={}", l1["id"]))
                .await
                .json()
        ),
        2
    );
    assert_eq!(
        count(app.get(&format!("/events?user_id={u2}")).await.json()),
        2
    );
    assert_eq!(count(app.get("/events?event_type=shared").await.json()), 2);
    assert_eq!(
        count(
            app.get(&format!(
                "/events?event_type=shared&user_id={u1}&url_id={}",
                l1["id"]
            ))
            .await
            .json()
        ),
        1
    );
    assert_eq!(count(app.get("/events?event_type=nothing").await.json()), 0);
    assert_eq!(count(app.get("/events?page=2&per_page=3").await.json()), 1);
    let all = app.get("/events").await.json();
    let ids: Vec<i64> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    app.get("/events?url_id=x")
        .await
        .assert_error(StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn record_rejects_bad_input(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let lid = app.link(uid, "https://a.io").await["id"].clone();
    let err = app
        .post(
            "/events",
            json!({"url_id": 999, "user_id": uid, "event_type": "x"}),
        )
        .await
        .assert_error(StatusCode::NOT_FOUND);
    assert_eq!(err["error"], "URL not found");
    let err = app
        .post(
            "/events",
            json!({"url_id": lid, "user_id": 999, "event_type": "x"}),
        )
        .await
        .assert_error(StatusCode::NOT_FOUND);
    assert_eq!(err["error"], "User not found");
    for (body, field) in [
        (
            json!({"url_id": lid, "user_id": uid, "event_type": "x", "details": "a string"}),
            "details",
        ),
        (
            json!({"url_id": lid, "user_id": uid, "event_type": "x", "details": [1]}),
            "details",
        ),
        (
            json!({"url_id": lid, "user_id": uid, "event_type": ""}),
            "event_type",
        ),
        (
            json!({"url_id": lid, "user_id": uid, "event_type": 3}),
            "event_type",
        ),
        (json!({"url_id": lid, "user_id": uid}), "event_type"),
        (
            json!({"url_id": "1", "user_id": uid, "event_type": "x"}),
            "url_id",
        ),
        (json!({"url_id": lid, "event_type": "x"}), "user_id"),
    ] {
        let err = app
            .post("/events", body.clone())
            .await
            .assert_error(StatusCode::BAD_REQUEST);
        assert!(err["details"][field].is_string(), "{body}: {err}");
    }
    assert_eq!(
        app.get("/events").await.json().as_array().map(Vec::len),
        Some(1),
        "only the created event"
    );
}
