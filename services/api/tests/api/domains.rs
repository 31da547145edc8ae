//! Custom domains: admin-managed hosts, links created on them, and short codes
//! unique per domain (the same code once on the default domain and once per
//! custom domain).

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn domains_are_added_listed_and_deleted_by_admins(db: PgPool) {
    let app = TestApp::new(db).await;
    let r = app
        .post("/domains", json!({"host": "Go.Example.COM."}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let domain = r.json();
    assert_eq!(domain["host"], "go.example.com");
    assert!(domain["id"].as_i64().is_some_and(|id| id > 0));
    assert!(crate::support::is_wire_timestamp(&domain["created_at"]));
    let idn = app
        .post("/domains", json!({"host": "bücher.example"}))
        .await
        .json();
    assert_eq!(idn["host"], "xn--bcher-kva.example");

    app.post("/domains", json!({"host": "go.example.com"}))
        .await
        .assert_error(StatusCode::CONFLICT);
    for bad in [
        json!({}),
        json!({"host": "localhost"}),
        json!({"host": "go.example.com:8080"}),
        json!({"host": "https://x.example"}),
        json!({"host": "10.0.0.1"}),
        json!({"host": 7}),
    ] {
        let e = app
            .post("/domains", bad.clone())
            .await
            .assert_error(StatusCode::BAD_REQUEST);
        assert!(e["details"]["host"].is_string(), "{bad}: {e}");
    }
    let list = app.get("/domains").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert_eq!(list[0]["host"], "go.example.com");

    // A user key may list, not add or delete.
    let user = app.user("domainer").await;
    let key = TestApp::make_key(&app.db, user["id"].as_i64()).await;
    let r = app.as_key(Some(&key), Method::GET, "/domains", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .as_key(
            Some(&key),
            Method::POST,
            "/domains",
            Some(json!({"host": "mine.example"})),
        )
        .await;
    r.assert_error(StatusCode::FORBIDDEN);
    let id = domain["id"].as_i64().expect("id");
    let r = app
        .as_key(Some(&key), Method::DELETE, &format!("/domains/{id}"), None)
        .await;
    r.assert_error(StatusCode::FORBIDDEN);

    assert_eq!(
        app.delete(&format!("/domains/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    app.delete(&format!("/domains/{id}"))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    app.delete("/domains/abc")
        .await
        .assert_error(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn codes_are_unique_per_domain(db: PgPool) {
    let app = TestApp::new(db).await;
    let user = app.user("multi").await;
    let uid = user["id"].as_i64().expect("id");
    app.post("/domains", json!({"host": "go.example.com"}))
        .await;
    app.post("/domains", json!({"host": "links.example.org"}))
        .await;

    let plain = app
        .post(
            "/urls",
            json!({"user_id": uid, "original_url": "https://example.com/a", "short_code": "same"}),
        )
        .await;
    assert_eq!(plain.status, StatusCode::CREATED);
    assert_eq!(plain.json()["domain"], serde_json::Value::Null);
    for host in ["go.example.com", "GO.example.com", "links.example.org"] {
        let r = app
            .post("/urls", json!({"user_id": uid, "original_url": "https://example.com/b", "short_code": "same", "domain": host}))
            .await;
        if host == "GO.example.com" {
            // Same domain, written differently: the code is taken there.
            r.assert_error(StatusCode::CONFLICT);
            continue;
        }
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let link = r.json();
        assert_eq!(link["domain"], host);
        assert_eq!(link["short_code"], "same");
        let back = app.get(&format!("/urls/{}", link["id"])).await.json();
        assert_eq!(back["domain"], host);
    }
    app.post(
        "/urls",
        json!({"user_id": uid, "original_url": "https://example.com/c", "short_code": "same"}),
    )
    .await
    .assert_error(StatusCode::CONFLICT);
    // Generated codes on a domain work too.
    let generated = app
        .post("/urls", json!({"user_id": uid, "original_url": "https://example.com/d", "domain": "go.example.com"}))
        .await;
    assert_eq!(generated.status, StatusCode::CREATED);
    let e = app
        .post("/urls", json!({"user_id": uid, "original_url": "https://example.com/e", "domain": "nope.example"}))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    assert_eq!(e["error"], "Domain not found");

    // find_if_exists compares within the domain.
    let found = app
        .post("/urls", json!({"user_id": uid, "original_url": "https://example.com/a", "find_if_exists": true}))
        .await;
    assert_eq!(
        (found.status, found.json()["short_code"].clone()),
        (StatusCode::OK, json!("same"))
    );
    let on_domain = app
        .post("/urls", json!({"user_id": uid, "original_url": "https://example.com/a", "find_if_exists": true, "domain": "go.example.com"}))
        .await;
    assert_eq!(
        on_domain.status,
        StatusCode::CREATED,
        "a link on another domain is not the same"
    );
    assert_eq!(on_domain.json()["domain"], "go.example.com");
    assert!(
        on_domain.json()["short_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://go.example.com/"))
    );
    // A domain with links cannot go.
    let domains = app.get("/domains").await.json();
    let go = domains[0]["id"].as_i64().expect("id");
    app.delete(&format!("/domains/{go}"))
        .await
        .assert_error(StatusCode::CONFLICT);
}
