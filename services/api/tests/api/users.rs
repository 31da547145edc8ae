use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::support::{TestApp, is_wire_timestamp};

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn create_get_list_update_delete(db: PgPool) {
    let app = TestApp::new(db).await;

    let created = app
        .post(
            "/users",
            json!({"username": "silvertrail15", "email": "silvertrail15@hackstack.io"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let user = created.json();
    let id = user["id"].as_i64().expect("integer id");
    assert_eq!(user["username"], "silvertrail15");
    assert_eq!(user["email"], "silvertrail15@hackstack.io");
    assert!(is_wire_timestamp(&user["created_at"]), "{user}");
    assert_eq!(
        user.as_object().map(|o| o.len()),
        Some(4),
        "exactly the contract's fields: {user}"
    );

    assert_eq!(app.get(&format!("/users/{id}")).await.json(), user);
    let list = app.get("/users").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json(), json!([user]));

    let updated = app
        .put(
            &format!("/users/{id}"),
            json!({"email": "new@hackstack.io"}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.json()["email"], "new@hackstack.io");
    assert_eq!(updated.json()["username"], "silvertrail15");

    let noop = app.put(&format!("/users/{id}"), json!({})).await;
    assert_eq!(noop.status, StatusCode::OK);
    assert_eq!(noop.json(), updated.json());

    let deleted = app.delete(&format!("/users/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.body.is_empty());
    app.get(&format!("/users/{id}"))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    app.delete(&format!("/users/{id}"))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    assert_eq!(app.get("/users").await.json(), json!([]));

    assert_eq!(
        app.outbox_types().await,
        ["user.created", "user.updated", "user.deleted"]
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn not_found_uses_the_contract_message(db: PgPool) {
    let app = TestApp::new(db).await;
    for uri in [
        "/users/999",
        "/users/abc",
        "/users/0",
        "/users/-1",
        "/users/99999999999999999999",
    ] {
        let body = app.get(uri).await.assert_error(StatusCode::NOT_FOUND);
        // The contract's message, in a problem document (RFC 9457).
        assert_eq!(
            body,
            json!({
                "error": "User not found",
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "User not found",
            }),
            "{uri}"
        );
    }
    app.put("/users/999", json!({"username": "x"}))
        .await
        .assert_error(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn validation_names_each_bad_field(db: PgPool) {
    let app = TestApp::new(db).await;
    let cases = [
        (json!({}), vec!["username", "email"]),
        (json!({"username": "", "email": "a@b.io"}), vec!["username"]),
        (
            json!({"username": "   ", "email": "a@b.io"}),
            vec!["username"],
        ),
        (
            json!({"username": "ok", "email": "not-an-email"}),
            vec!["email"],
        ),
        (
            json!({"username": 5, "email": ["a@b.io"]}),
            vec!["username", "email"],
        ),
        (
            json!({"username": null, "email": "a@b.io"}),
            vec!["username"],
        ),
    ];
    for (body, fields) in cases {
        let err = app
            .post("/users", body.clone())
            .await
            .assert_error(StatusCode::BAD_REQUEST);
        assert_eq!(err["error"], "validation failed", "{body}");
        for f in fields {
            assert!(err["details"][f].is_string(), "{body} -> {err}");
        }
    }
    let id = app.user("valid").await["id"].as_i64().expect("id");
    let err = app
        .put(&format!("/users/{id}"), json!({"email": "nope"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(err["details"]["email"], "must be a valid address");
    app.put(&format!("/users/{id}"), json!({"username": ""}))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    app.put(&format!("/users/{id}"), json!({"username": 7}))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    // Nothing was written by the rejected requests.
    assert_eq!(
        app.get("/users").await.json().as_array().map(Vec::len),
        Some(1)
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn duplicates_conflict(db: PgPool) {
    let app = TestApp::new(db).await;
    let a = app.user("alice").await;
    let b = app.user("bob").await;
    let err = app
        .post(
            "/users",
            json!({"username": "alice", "email": "other@example.com"}),
        )
        .await
        .assert_error(StatusCode::CONFLICT);
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|m| m.contains("username")),
        "{err}"
    );
    let err = app
        .post(
            "/users",
            json!({"username": "carol", "email": "ALICE@example.com"}),
        )
        .await
        .assert_error(StatusCode::CONFLICT);
    assert!(
        err["error"].as_str().is_some_and(|m| m.contains("email")),
        "{err}"
    );
    app.put(&format!("/users/{}", b["id"]), json!({"username": "alice"}))
        .await
        .assert_error(StatusCode::CONFLICT);
    // A deleted user's name is free again.
    app.delete(&format!("/users/{}", a["id"])).await;
    assert_eq!(
        app.post(
            "/users",
            json!({"username": "alice", "email": "alice@example.com"})
        )
        .await
        .status,
        StatusCode::CREATED
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn paging(db: PgPool) {
    let app = TestApp::new(db).await;
    for i in 0..25 {
        app.user(&format!("user{i:02}")).await;
    }
    let all = app.get("/users").await.json();
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(25),
        "no params: everything"
    );
    let ids: Vec<i64> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["id"].as_i64())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id");

    let page2 = app.get("/users?page=2&per_page=10").await.json();
    let page2_ids: Vec<i64> = page2
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["id"].as_i64())
        .collect();
    assert_eq!(page2_ids, ids[10..20]);
    assert_eq!(
        app.get("/users?page=3&per_page=10")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    assert_eq!(app.get("/users?page=9&per_page=10").await.json(), json!([]));
    assert_eq!(
        app.get("/users?per_page=3")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(
        app.get("/users?page=1")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(20)
    );
    for bad in [
        "page=0",
        "page=-1",
        "per_page=0",
        "page=abc",
        "per_page=1.5",
    ] {
        app.get(&format!("/users?{bad}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        app.get("/users?per_page=100000").await.status,
        StatusCode::OK
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn deleting_a_user_deactivates_their_links(db: PgPool) {
    let app = TestApp::new(db).await;
    let user = app.user("owner").await;
    let uid = user["id"].as_i64().expect("id");
    let l1 = app.link(uid, "https://example.com/1").await;
    let l2 = app.link(uid, "https://example.com/2").await;
    assert_eq!(
        app.delete(&format!("/users/{uid}")).await.status,
        StatusCode::NO_CONTENT
    );
    for l in [&l1, &l2] {
        let link = app.get(&format!("/urls/{}", l["id"])).await.json();
        assert_eq!(link["is_active"], false, "{link}");
        assert_eq!(link["user_id"], uid);
        assert_eq!(link["original_url"], l["original_url"], "links are kept");
    }
    let events = app
        .get(&format!("/events?user_id={uid}&event_type=updated"))
        .await
        .json();
    assert_eq!(events.as_array().map(Vec::len), Some(2));
    // A deleted user cannot own new links.
    app.post(
        "/urls",
        json!({"user_id": uid, "original_url": "https://example.com/3"}),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND);
}

/// `username` and `email` have one length limit (1024 bytes) wherever they
/// come from: POST, PUT and the CSV import.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn usernames_and_emails_are_at_most_1024_bytes_everywhere(db: PgPool) {
    let app = TestApp::new(db).await;
    let huge = "u".repeat(60_000);
    let long_email = format!("{}@example.com", "e".repeat(1024));
    let res = app
        .post(
            "/users",
            json!({"username": huge, "email": "h@example.com"}),
        )
        .await;
    let err = res.assert_error(StatusCode::BAD_REQUEST);
    assert!(err["details"]["username"].is_string(), "{err}");
    let res = app
        .post("/users", json!({"username": "h", "email": long_email}))
        .await;
    let err = res.assert_error(StatusCode::BAD_REQUEST);
    assert!(err["details"]["email"].is_string(), "{err}");

    // At the limit is fine.
    let id = app
        .post(
            "/users",
            json!({"username": "u".repeat(1024), "email": "ok@example.com"}),
        )
        .await
        .json()["id"]
        .as_i64()
        .expect("created");
    for body in [
        json!({"username": "u".repeat(1025)}),
        json!({"email": long_email}),
    ] {
        let res = app.put(&format!("/users/{id}"), body.clone()).await;
        res.assert_error(StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        app.get(&format!("/users/{id}")).await.json()["email"],
        "ok@example.com"
    );

    // The CSV path says the same.
    let csv = format!(
        "username,email\n{},a@example.com\nb,{long_email}\n",
        "u".repeat(1025)
    );
    let report = app
        .upload_csv("/users/bulk", "file", csv.as_bytes())
        .await
        .json();
    assert_eq!(report["inserted"], 0, "{report}");
    let problems: Vec<&str> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["problem"].as_str())
        .collect();
    assert_eq!(
        problems,
        [
            "username: must be at most 1024 bytes",
            "email: must be at most 1024 bytes"
        ]
    );
}
