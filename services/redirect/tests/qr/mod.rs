//! `GET /{short_code}/qr` through the service's own HTTP server (fast path
//! in front of the router): the image read back is the link's short URL,
//! unknown and inactive codes are the redirect's 404, bad parameters 400,
//! revalidation 304, and no QR request records a click.

use axum::http::StatusCode;
use shortline_shared::events::Subjects;
use shortline_shared::testing::decode_qr;
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_qr_code_reads_back_to_the_short_url_and_records_no_click(db: PgPool) {
    insert_link(&db, "qr1", "https://example.com/q", true).await;
    let mut c = config(&shared_valkey(), &shared_nats());
    c.public_base_url = "https://go.example/".into();
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    let qr = |query: &str| http.get(format!("{}/qr1/qr{query}", served.base)).send();

    let svg = qr("").await.expect("svg");
    assert_eq!(svg.status(), reqwest::StatusCode::OK);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert_eq!(svg.headers()["cache-control"], "public, max-age=3600");
    let etag = svg.headers()["etag"].to_str().expect("etag").to_owned();
    let body = svg.bytes().await.expect("body");
    assert_eq!(decode_qr("image/svg+xml", &body), "https://go.example/qr1");

    let png = qr("?format=png&size=128&margin=1").await.expect("png");
    assert_eq!(png.status(), reqwest::StatusCode::OK);
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_ne!(png.headers()["etag"].to_str().expect("etag"), etag);
    let body = png.bytes().await.expect("body");
    let image = image::load_from_memory(&body).expect("a PNG");
    assert_eq!((image.width(), image.height()), (128, 128));
    assert_eq!(decode_qr("image/png", &body), "https://go.example/qr1");

    // The link is in L1 now: the fast path still leaves `/qr1/qr` alone.
    let again = http
        .get(format!("{}/qr1/qr", served.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("revalidation");
    assert_eq!(again.status(), reqwest::StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().expect("etag"), etag);
    let head = http
        .head(format!("{}/qr1/qr", served.base))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), reqwest::StatusCode::OK);

    // One redirect after the QR requests: its click is the only one (a
    // click of a QR request would have been buffered before it).
    let redirect = http
        .get(format!("{}/qr1", served.base))
        .send()
        .await
        .expect("redirect");
    assert_eq!(redirect.status(), reqwest::StatusCode::FOUND);
    let got = clicks(&shared_nats(), &subjects, 1).await;
    assert_eq!(got.len(), 1, "only the redirect clicked: {got:?}");
    assert_eq!(got[0].short_code, "qr1");
    served.stop().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn unknown_and_inactive_codes_are_404_and_bad_parameters_400(db: PgPool) {
    insert_link(&db, "qr2", "https://example.com/q", true).await;
    insert_link(&db, "off2", "https://example.com/q", false).await;
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &db).await;

    for code in ["nope22", "off2", "bad%20code"] {
        let res = get(&service, &format!("/{code}/qr")).await;
        let redirect = get(&service, &format!("/{code}")).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{code}");
        assert_eq!(res.json()["error"], "Short code not found", "{code}");
        assert_eq!(res.json(), redirect.json(), "{code}: the redirect's 404");
    }
    for (query, field) in [
        ("format=gif", "format"),
        ("size=63", "size"),
        ("size=x", "size"),
        ("margin=17", "margin"),
    ] {
        let res = get(&service, &format!("/qr2/qr?{query}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}");
        let message = res.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{query}: {message}"
        );
    }
    let ok = get(&service, "/qr2/qr?format=png").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        decode_qr("image/png", &ok.body),
        "http://127.0.0.1:8000/qr2",
        "PUBLIC_BASE_URL's default"
    );
}
