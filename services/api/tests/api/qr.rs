//! `GET /urls/{id}/qr`: the image read back (PNG decoded, SVG drawn by a
//! real renderer) is the link's short URL; parameters, caching and access.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use shortline_api::config::ApiConfig;
use shortline_shared::testing::decode_qr;
use sqlx::PgPool;

use crate::support::{TestApp, TestResponse};

/// The app with `PUBLIC_BASE_URL` set (with a trailing `/`, which the
/// short URL must not double).
async fn app(db: PgPool) -> TestApp {
    let mut config = ApiConfig::for_urls("postgres://unused", "");
    config.invalidation_wait_ms = 0;
    config.valkey_url = String::new();
    config.public_base_url =
        shortline_api::links::short_url::PublicBase::parse("https://sho.rt/").expect("base");
    TestApp::with_config(db, config).await
}

/// A GET with `key` (or none) and extra headers.
async fn get(
    app: &TestApp,
    key: Option<&str>,
    uri: &str,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut req = Request::builder().method(Method::GET).uri(uri);
    if let Some(key) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let reply = shortline_shared::testing::call(
        app.router.clone(),
        req.body(Body::empty()).expect("request builds"),
    )
    .await;
    TestResponse {
        status: reply.status,
        headers: reply.headers,
        body: reply.body.to_vec(),
    }
}

fn header<'a>(res: &'a TestResponse, name: &str) -> &'a str {
    res.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A link of a new user; its id and short code.
async fn link(app: &TestApp, name: &str) -> (i64, i64, String) {
    let user = app.user(name).await["id"].as_i64().expect("user id");
    let link = app.link(user, "https://example.com/qr").await;
    (
        user,
        link["id"].as_i64().expect("id"),
        link["short_code"].as_str().expect("code").to_owned(),
    )
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_qr_code_reads_back_to_the_short_url_in_both_formats(db: PgPool) {
    let app = app(db).await;
    let (_, id, code) = link(&app, "qr").await;
    let short_url = format!("https://sho.rt/{code}");

    let svg = get(&app, Some(&app.key), &format!("/urls/{id}/qr"), &[]).await;
    assert_eq!(
        svg.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&svg.body)
    );
    assert_eq!(header(&svg, "content-type"), "image/svg+xml");
    assert_eq!(header(&svg, "cache-control"), "private, max-age=3600");
    assert!(
        String::from_utf8_lossy(&svg.body).contains("width=\"300\" height=\"300\""),
        "default size 300"
    );
    assert_eq!(decode_qr("image/svg+xml", &svg.body), short_url);

    let png = get(
        &app,
        Some(&app.key),
        &format!("/urls/{id}/qr?format=png&size=200&margin=2"),
        &[],
    )
    .await;
    assert_eq!(png.status, StatusCode::OK);
    assert_eq!(header(&png, "content-type"), "image/png");
    let image = image::load_from_memory(&png.body).expect("a PNG");
    assert_eq!((image.width(), image.height()), (200, 200));
    assert_eq!(decode_qr("image/png", &png.body), short_url);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bad_parameters_are_400_naming_the_field(db: PgPool) {
    let app = app(db).await;
    let (_, id, _) = link(&app, "qr").await;
    for (query, field) in [
        ("format=gif", "format"),
        ("size=63", "size"),
        ("size=2049", "size"),
        ("size=big", "size"),
        ("margin=17", "margin"),
        ("margin=-1", "margin"),
    ] {
        let res = get(&app, Some(&app.key), &format!("/urls/{id}/qr?{query}"), &[]).await;
        let err = res.assert_error(StatusCode::BAD_REQUEST);
        assert!(err["details"][field].is_string(), "{query}: {err}");
    }
    // The longest code's URL makes a 37-module code: with a 16-module quiet
    // zone that is 69 modules, more than 64 pixels.
    let user = app.user("long").await["id"].as_i64().expect("user id");
    let long = app
        .post(
            "/urls",
            serde_json::json!({"user_id": user, "original_url": "https://example.com/", "short_code": "c".repeat(64)}),
        )
        .await
        .json();
    let uri = format!("/urls/{}/qr?size=64&margin=", long["id"]);
    let err = get(&app, Some(&app.key), &format!("{uri}16"), &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert!(
        err["details"]["size"]
            .as_str()
            .is_some_and(|p| p.contains("at least 69 pixels")),
        "{err}"
    );
    let fits = get(&app, Some(&app.key), &format!("{uri}4&format=png"), &[]).await;
    assert_eq!(fits.status, StatusCode::OK);
    assert_eq!(
        decode_qr("image/png", &fits.body),
        format!("https://sho.rt/{}", "c".repeat(64))
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_etag_answers_304_until_the_options_change(db: PgPool) {
    let app = app(db).await;
    let (_, id, _) = link(&app, "qr").await;
    let uri = format!("/urls/{id}/qr?format=png");
    let first = get(&app, Some(&app.key), &uri, &[]).await;
    let etag = header(&first, "etag").to_owned();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );
    assert_eq!(
        header(&get(&app, Some(&app.key), &uri, &[]).await, "etag"),
        etag,
        "stable"
    );

    for held in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
    ] {
        let again = get(&app, Some(&app.key), &uri, &[("if-none-match", &held)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{held}");
        assert!(again.body.is_empty());
        assert_eq!(header(&again, "etag"), etag);
        assert_eq!(header(&again, "cache-control"), "private, max-age=3600");
    }
    let other = get(
        &app,
        Some(&app.key),
        &format!("{uri}&size=301"),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(other.status, StatusCode::OK, "other options, other image");
    assert_ne!(header(&other, "etag"), etag);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_user_key_reads_only_its_own_links_qr_codes(db: PgPool) {
    let app = app(db.clone()).await;
    let (alice, alices, _) = link(&app, "alice").await;
    let (_, bobs, _) = link(&app, "bob").await;
    let key = TestApp::make_key(&db, Some(alice)).await;

    let own = get(&app, Some(&key), &format!("/urls/{alices}/qr"), &[]).await;
    assert_eq!(own.status, StatusCode::OK);
    get(&app, Some(&key), &format!("/urls/{bobs}/qr"), &[])
        .await
        .assert_error(StatusCode::NOT_FOUND);
    get(&app, None, &format!("/urls/{alices}/qr"), &[])
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    for missing in ["999999", "0", "x"] {
        get(&app, Some(&app.key), &format!("/urls/{missing}/qr"), &[])
            .await
            .assert_error(StatusCode::NOT_FOUND);
    }
    // A deleted link still reads back, and so does its QR code.
    assert_eq!(
        app.delete(&format!("/urls/{bobs}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&app, Some(&app.key), &format!("/urls/{bobs}/qr"), &[])
            .await
            .status,
        StatusCode::OK
    );
}
