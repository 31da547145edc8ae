use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::support::{TestApp, is_wire_timestamp};

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn create_read_and_created_event(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let res = app.post("/urls", json!({"user_id": uid, "original_url": "https://opswise.net/harbor/journey/1", "title": "Service guide lagoon"})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let link = res.json();
    let code = link["short_code"].as_str().expect("code");
    assert!(
        code.len() >= 6 && code.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{code}"
    );
    assert_eq!(link["original_url"], "https://opswise.net/harbor/journey/1");
    assert_eq!(link["title"], "Service guide lagoon");
    assert_eq!(link["is_active"], true);
    assert_eq!(link["user_id"], uid);
    assert!(
        is_wire_timestamp(&link["created_at"]) && is_wire_timestamp(&link["updated_at"]),
        "{link}"
    );
    let mut keys: Vec<&str> = link
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    // The contract's eight fields, the link-rule fields of issue #15, and
    // `short_url` and `tags` of issue #16.
    let mut expected = [
        "id",
        "user_id",
        "short_code",
        "short_url",
        "original_url",
        "title",
        "tags",
        "is_active",
        "created_at",
        "updated_at",
        "redirect_type",
        "expires_at",
        "max_clicks",
        "fallback_url",
        "forward_query",
        "rules",
        "password_protected",
        "domain",
        "imported_visits",
    ];
    expected.sort_unstable();
    keys.sort_unstable();
    assert_eq!(keys, expected);

    assert_eq!(app.get(&format!("/urls/{}", link["id"])).await.json(), link);
    let events = app
        .get(&format!("/urls/{}/events", link["id"]))
        .await
        .json();
    assert_eq!(events.as_array().map(Vec::len), Some(1));
    let e = &events[0];
    assert_eq!(e["event_type"], "created");
    assert_eq!(e["url_id"], link["id"]);
    assert_eq!(e["user_id"], uid);
    assert!(is_wire_timestamp(&e["timestamp"]));
    assert_eq!(
        e["details"],
        json!({"short_code": code, "original_url": "https://opswise.net/harbor/journey/1"})
    );
    assert_eq!(app.outbox_types().await, ["user.created", "link.created"]);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn same_url_twice_gives_two_codes_and_custom_codes_conflict(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let a = app.link(uid, "https://example.com").await;
    let b = app.link(uid, "https://example.com").await;
    assert_ne!(a["short_code"], b["short_code"]);
    assert_ne!(a["id"], b["id"]);

    let custom = app.post("/urls", json!({"user_id": uid, "original_url": "https://example.com/c", "short_code": "my-link"})).await;
    assert_eq!(custom.status, StatusCode::CREATED);
    assert_eq!(custom.json()["short_code"], "my-link");
    app.post(
        "/urls",
        json!({"user_id": uid, "original_url": "https://example.com/d", "short_code": "my-link"}),
    )
    .await
    .assert_error(StatusCode::CONFLICT);
    for bad in ["has space", "a/b", "users", "", "x".repeat(65).as_str()] {
        let err = app
            .post(
                "/urls",
                json!({"user_id": uid, "original_url": "https://example.com", "short_code": bad}),
            )
            .await
            .assert_error(StatusCode::BAD_REQUEST);
        assert!(err["details"]["short_code"].is_string(), "{bad}: {err}");
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn create_validation(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    for url in [
        json!("hello"),
        json!("example.com"),
        json!("ftp://x"),
        json!(" https://x.io"),
        json!("https://x.io/a b"),
        json!(""),
        json!(5),
        json!(null),
    ] {
        let err = app
            .post("/urls", json!({"user_id": uid, "original_url": url}))
            .await
            .assert_error(StatusCode::BAD_REQUEST);
        assert!(err["details"]["original_url"].is_string(), "{url}: {err}");
    }
    for user_id in [
        json!(0),
        json!(-3),
        json!("1"),
        json!(1.5),
        json!(true),
        json!(null),
    ] {
        let err = app
            .post(
                "/urls",
                json!({"user_id": user_id, "original_url": "https://x.io"}),
            )
            .await
            .assert_error(StatusCode::BAD_REQUEST);
        assert!(err["details"]["user_id"].is_string(), "{user_id}: {err}");
    }
    let err = app
        .post("/urls", json!({"original_url": "https://x.io"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(err["details"]["user_id"], "is required");
    app.post(
        "/urls",
        json!({"user_id": uid, "original_url": "https://x.io", "title": 5}),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST);
    let err = app
        .post(
            "/urls",
            json!({"user_id": 999999, "original_url": "https://x.io"}),
        )
        .await
        .assert_error(StatusCode::NOT_FOUND);
    assert_eq!(err["error"], "User not found");
    assert_eq!(app.get("/urls").await.json(), json!([]), "nothing written");
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn filters(db: PgPool) {
    let app = TestApp::new(db).await;
    let u1 = app.user("one").await["id"].as_i64().expect("id");
    let u2 = app.user("two").await["id"].as_i64().expect("id");
    let a = app.link(u1, "https://a.io").await;
    app.link(u1, "https://b.io").await;
    app.link(u2, "https://c.io").await;
    app.put(&format!("/urls/{}", a["id"]), json!({"is_active": false}))
        .await;

    let count = |v: serde_json::Value| v.as_array().map(Vec::len).unwrap_or(usize::MAX);
    assert_eq!(count(app.get("/urls").await.json()), 3);
    assert_eq!(
        count(app.get(&format!("/urls?user_id={u1}")).await.json()),
        2
    );
    assert_eq!(count(app.get("/urls?is_active=true").await.json()), 2);
    assert_eq!(count(app.get("/urls?is_active=false").await.json()), 1);
    assert_eq!(
        count(
            app.get(&format!("/urls?user_id={u1}&is_active=true"))
                .await
                .json()
        ),
        1
    );
    assert_eq!(
        count(
            app.get(&format!("/urls?user_id={u1}&per_page=1&page=2"))
                .await
                .json()
        ),
        1
    );
    app.get("/urls?is_active=maybe")
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    app.get("/urls?user_id=abc")
        .await
        .assert_error(StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn update_logs_one_event_per_changed_field(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let link = app.link(uid, "https://old.io").await;
    let uri = format!("/urls/{}", link["id"]);

    let res = app
        .put(
            &uri,
            json!({"title": "New", "is_active": false, "original_url": "https://new.io/x"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let updated = res.json();
    assert_eq!(updated["title"], "New");
    assert_eq!(updated["is_active"], false);
    assert_eq!(updated["original_url"], "https://new.io/x");
    assert_eq!(updated["short_code"], link["short_code"]);
    assert!(updated["updated_at"].as_str() >= link["updated_at"].as_str());

    let events = app
        .get(&format!("/events?url_id={}&event_type=updated", link["id"]))
        .await
        .json();
    let mut changes: Vec<(String, serde_json::Value)> = events
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["details"]["field"].as_str().unwrap_or("").to_owned(),
                e["details"]["new_value"].clone(),
            )
        })
        .collect();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        changes,
        vec![
            ("is_active".into(), json!(false)),
            ("original_url".into(), json!("https://new.io/x")),
            ("title".into(), json!("New"))
        ]
    );
    // Unchanged values and {} log nothing.
    assert_eq!(
        app.put(&uri, json!({"title": "New"})).await.status,
        StatusCode::OK
    );
    assert_eq!(app.put(&uri, json!({})).await.json()["title"], "New");
    assert_eq!(
        app.get(&format!("/events?url_id={}&event_type=updated", link["id"]))
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(
        app.outbox_types().await,
        ["user.created", "link.created", "link.updated"]
    );

    for bad in [
        json!({"is_active": "false"}),
        json!({"is_active": 0}),
        json!({"original_url": "nope"}),
        json!({"title": 3}),
    ] {
        app.put(&uri, bad)
            .await
            .assert_error(StatusCode::BAD_REQUEST);
    }
    app.put("/urls/424242", json!({"title": "x"}))
        .await
        .assert_error(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn soft_delete(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let link = app.link(uid, "https://gone.io").await;
    let uri = format!("/urls/{}", link["id"]);
    let res = app.delete(&uri).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let after = app.get(&uri).await;
    assert_eq!(
        after.status,
        StatusCode::OK,
        "a deleted link still reads back"
    );
    assert_eq!(after.json()["is_active"], false);
    let err = app.delete(&uri).await.assert_error(StatusCode::NOT_FOUND);
    assert_eq!(err["error"], "URL not found");
    let events = app.get(&format!("{uri}/events")).await.json();
    let types: Vec<&str> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(types, ["created", "deleted"]);
    assert_eq!(events[1]["details"], json!({"reason": "user_requested"}));
    // Reactivation undeletes: the link can be deleted again.
    assert_eq!(
        app.put(&uri, json!({"is_active": true})).await.json()["is_active"],
        true
    );
    assert_eq!(app.delete(&uri).await.status, StatusCode::NO_CONTENT);
    app.delete("/urls/999")
        .await
        .assert_error(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn stats_and_events_of_a_link(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let link = app.link(uid, "https://s.io").await;
    let stats = app.get(&format!("/urls/{}/stats", link["id"])).await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.json()["url"], link);
    assert_eq!(stats.json()["redirect_count"], 0);
    for _ in 0..3 {
        let res = app.post("/events", json!({"url_id": link["id"], "user_id": uid, "event_type": "redirect", "details": {"referrer": "x"}})).await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    // Counted by the analytics service, not here: see
    // events::a_posted_redirect_goes_to_analytics_through_the_outbox and
    // services/e2e.
    app.get("/urls/999/stats")
        .await
        .assert_error(StatusCode::NOT_FOUND);
    let err = app
        .get("/urls/999/events")
        .await
        .assert_error(StatusCode::NOT_FOUND);
    assert_eq!(err["error"], "URL not found");
    assert_eq!(
        app.get(&format!("/urls/{}/events?per_page=2", link["id"]))
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}
