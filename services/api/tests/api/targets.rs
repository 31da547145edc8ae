//! Link targets: the shared URL rule (control characters, userinfo, …: 400)
//! and the deployment's policy (own public hosts, the blocklist file: 422),
//! on `POST /urls`, `PUT /urls/{id}` and the seed loader.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use shortline_api::links::targets::TargetPolicy;
use sqlx::PgPool;

use crate::support::TestApp;

/// The app with another target policy.
async fn app_with(db: PgPool, policy: TargetPolicy) -> TestApp {
    let mut app = TestApp::new(db).await;
    app.state.targets = Arc::new(policy);
    app.router = shortline_api::router(app.state.clone());
    app
}

/// A fresh directory under the system temp dir.
fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shortline-{what}-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

async fn create(app: &TestApp, user_id: i64, url: &str) -> crate::support::TestResponse {
    app.post(
        "/urls",
        json!({"user_id": user_id, "original_url": url, "title": "t"}),
    )
    .await
}

/// Asserts a 400 naming `original_url`.
fn assert_malformed(res: &crate::support::TestResponse, url: &str) {
    let body = res.assert_error(StatusCode::BAD_REQUEST);
    assert!(
        body["details"]["original_url"].is_string(),
        "{url:?}: {body}"
    );
}

/// Asserts the policy's 422: a problem document with `"details":
/// {"original_url": ...}` and nothing else.
fn assert_refused(res: &crate::support::TestResponse, url: &str) -> String {
    let body = res.assert_error(StatusCode::UNPROCESSABLE_ENTITY);
    let obj = body.as_object().expect("object");
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["detail", "details", "error", "status", "title", "type"],
        "{url:?}: {body}"
    );
    let details = body["details"].as_object().expect("details object");
    assert_eq!(
        details.keys().collect::<Vec<_>>(),
        ["original_url"],
        "{body}"
    );
    details["original_url"]
        .as_str()
        .expect("problem text")
        .to_owned()
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn targets_a_redirect_cannot_serve_are_400_on_create_and_update(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("t1").await["id"].as_i64().expect("id");
    let link = app.link(uid, "https://example.com/ok").await;
    let lid = link["id"].as_i64().expect("id");
    for bad in [
        "https://example.com/\u{7}",
        "https://example.com/\u{1b}[31m",
        "https://example.com/\u{7f}",
        "https://example.com/\u{9b}",
        "https://trusted.com@evil.com/",
        "https://user:pw@evil.com/",
        "https://@evil.com/",
        "javascript:alert(1)",
        "hello",
        "example.com",
        "ftp://x",
        "https://example.com/a b",
    ] {
        assert_malformed(&create(&app, uid, bad).await, bad);
        let res = app
            .put(&format!("/urls/{lid}"), json!({"original_url": bad}))
            .await;
        assert_malformed(&res, bad);
    }
    // Nothing was created, and the working link still has its target.
    assert_eq!(
        app.get("/urls").await.json().as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        app.get(&format!("/urls/{lid}")).await.json()["original_url"],
        "https://example.com/ok"
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn non_ascii_targets_are_kept_as_sent(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("t2").await["id"].as_i64().expect("id");
    let url = "https://bücher.example/straße?q=ü#é";
    let link = app.link(uid, url).await;
    assert_eq!(link["original_url"], url);
    let id = link["id"].as_i64().expect("id");
    assert_eq!(
        app.get(&format!("/urls/{id}")).await.json()["original_url"],
        url
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn targets_on_the_public_hosts_are_422(db: PgPool) {
    // The defaults: 127.0.0.1:8000 and localhost:8000.
    let app = TestApp::new(db.clone()).await;
    let uid = app.user("t3").await["id"].as_i64().expect("id");
    let lid = app.link(uid, "https://example.com/ok").await["id"]
        .as_i64()
        .expect("id");
    for own in [
        "http://127.0.0.1:8000/abc123",
        "http://LOCALHOST:8000/x",
        "http://localhost.:8000/x",
    ] {
        let why = assert_refused(&create(&app, uid, own).await, own);
        assert!(why.contains("this service"), "{why}");
        let res = app
            .put(&format!("/urls/{lid}"), json!({"original_url": own}))
            .await;
        assert_refused(&res, own);
    }
    // Another port is another service.
    assert_eq!(
        create(&app, uid, "http://127.0.0.1:8001/x").await.status,
        StatusCode::CREATED
    );

    // Configured hosts; a port-less entry covers every port, default ports
    // are normalised.
    let policy =
        TargetPolicy::new(&["sho.rt".into(), "go.example:443".into()], None).expect("policy");
    let app = app_with(db, policy).await;
    for own in [
        "https://sho.rt/x",
        "http://SHO.RT:81/x",
        "https://go.example/x",
        "http://go.example:443/x",
    ] {
        assert_refused(&create(&app, uid, own).await, own);
    }
    for other in [
        "http://go.example/x",
        "https://www.sho.rt/x",
        "http://127.0.0.1:8000/x",
    ] {
        let res = create(&app, uid, other).await;
        assert_eq!(res.status, StatusCode::CREATED, "{other}");
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn blocklisted_domains_are_422_and_the_file_is_reread_when_it_changes(db: PgPool) {
    let dir = temp_dir("blocklist");
    let file = dir.join("blocklist.txt");
    write(
        &file,
        "# phishing domains\nevil.com\nbücher.example   # a unicode entry\nеxample.com\n",
    );
    let policy = TargetPolicy::new(&[], Some(&file)).expect("policy");
    let app = app_with(db, policy).await;
    let uid = app.user("t4").await["id"].as_i64().expect("id");
    let lid = app.link(uid, "https://fine.example/").await["id"]
        .as_i64()
        .expect("id");
    for blocked in [
        "https://evil.com/",
        "https://login.evil.com/x",
        "https://EVIL.COM./",
        "https://xn--bcher-kva.example/",
        "https://BÜCHER.example/",
        // Cyrillic Е, matching the (Cyrillic) entry after IDN mapping.
        "https://ЕXAMPLE.com/",
    ] {
        let why = assert_refused(&create(&app, uid, blocked).await, blocked);
        assert!(why.contains("blocklisted"), "{why}");
        let res = app
            .put(&format!("/urls/{lid}"), json!({"original_url": blocked}))
            .await;
        assert_refused(&res, blocked);
    }
    for fine in ["https://notevil.com/", "https://example.com/"] {
        assert_eq!(
            create(&app, uid, fine).await.status,
            StatusCode::CREATED,
            "{fine}"
        );
    }
    // A malformed URL stays a 400 even with a blocklist.
    assert_malformed(&create(&app, uid, "https://a@evil.com/").await, "userinfo");

    // Edit the file: the new list applies without a restart.
    write(&file, "later.example\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let res = create(&app, uid, "https://later.example/").await;
        if res.status == StatusCode::UNPROCESSABLE_ENTITY {
            break;
        }
        assert_eq!(res.status, StatusCode::CREATED);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edited blocklist was never read"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        create(&app, uid, "https://evil.com/").await.status,
        StatusCode::CREATED
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_seed_loader_skips_rows_with_bad_targets_and_loads_the_rest(db: PgPool) {
    let dir = temp_dir("seed-targets");
    let blocklist = dir.join("blocklist.txt");
    write(&blocklist, "evil.com\n");
    write(
        &dir.join("urls.csv"),
        "id,user_id,short_code,original_url,title,is_active,created_at,updated_at\n\
         1,1,good01,https://example.com/a,,True,,\n\
         2,1,bel001,https://example.com/\u{7},,True,,\n\
         3,1,esc001,https://example.com/\u{1b}[0m,,True,,\n\
         4,1,usr001,https://trusted.com@evil.com/,,True,,\n\
         5,1,own001,http://localhost:8000/good01,,True,,\n\
         6,1,blk001,https://www.evil.com/,,True,,\n\
         7,1,good02,https://bücher.example/,,True,,\n",
    );
    let policy = TargetPolicy::new(&["localhost:8000".into()], Some(&blocklist)).expect("policy");
    let report = shortline_api::import::seed_dir(&db, &dir, Arc::new(policy))
        .await
        .expect("the load is not aborted");
    assert_eq!(
        (report.urls.rows, report.urls.inserted, report.urls.skipped),
        (7, 2, 5)
    );
    let codes: Vec<String> = sqlx::query_scalar("SELECT short_code FROM urls ORDER BY id")
        .fetch_all(&db)
        .await
        .expect("codes");
    assert_eq!(codes, ["good01", "good02"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_openapi_document_names_the_422(db: PgPool) {
    let app = TestApp::new(db).await;
    let doc: Value = app.get("/openapi.json").await.json();
    for (path, method) in [("/urls", "post"), ("/urls/{id}", "put")] {
        assert!(
            doc["paths"][path][method]["responses"]["422"].is_object(),
            "{method} {path}"
        );
    }
}
