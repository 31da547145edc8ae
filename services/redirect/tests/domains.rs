//! Custom domains through the real redirect service: the same short code on
//! the default domain and on two custom domains resolves by the request's
//! `Host` (case-insensitive, port stripped) through every cache tier; a host
//! that is no domain answers 404; a change event naming a domain drops only
//! that domain's entry.

use std::time::Duration;

use reqwest::header;
use shortline_shared::events::{Change, Subjects};
use sqlx::PgPool;

mod support;
use support::*;

async fn add_domain(db: &PgPool, host: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO domains (host) VALUES ($1) RETURNING id")
        .bind(host)
        .fetch_one(db)
        .await
        .expect("domain")
}

async fn link_on(db: &PgPool, domain_id: i64, code: &str, url: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO urls (user_id, short_code, original_url, domain_id) VALUES (7, $1, $2, $3) RETURNING id",
    )
    .bind(code)
    .bind(url)
    .bind(domain_id)
    .fetch_one(db)
    .await
    .expect("link on a domain")
}

async fn location_for(
    http: &reqwest::Client,
    base: &str,
    host: &str,
    code: &str,
) -> (u16, String, String) {
    let r = http
        .get(format!("{base}/{code}"))
        .header(header::HOST, host)
        .send()
        .await
        .expect("answer");
    let get = |name| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    (r.status().as_u16(), get("location"), get("x-cache"))
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_same_code_resolves_by_host_in_every_tier(db: PgPool) {
    insert_link(&db, "same", "https://default.example/", true).await;
    let go = add_domain(&db, "go.example.com").await;
    let other = add_domain(&db, "links.example.org").await;
    let go_link = link_on(&db, go, "same", "https://go.example/target").await;
    link_on(&db, other, "same", "https://org.example/target").await;

    let mut c = config(&shared_valkey(), &shared_nats());
    c.public_base_url = "https://sho.rt".into();
    let subjects = Subjects::new(&c.common.nats_prefix);
    // Two replicas: the second finds what the first put in Valkey (L2).
    let (one, two) = (start(&c, &db).await, start(&c, &db).await);
    let (a, b) = (Served::start(&one).await, Served::start(&two).await);
    let http = no_redirects();
    let cases = [
        ("sho.rt", "https://default.example/"),
        ("127.0.0.1:8000", "https://default.example/"),
        ("go.example.com", "https://go.example/target"),
        ("GO.Example.com:443", "https://go.example/target"),
        ("links.example.org", "https://org.example/target"),
    ];
    for (host, want) in cases {
        let (status, location, cache) = location_for(&http, &a.base, host, "same").await;
        assert_eq!(
            (status, location.as_str()),
            (302, want),
            "{host} on replica a"
        );
        assert!(["MISS", "HIT"].contains(&cache.as_str()));
    }
    for (host, want) in cases {
        // L1 on replica a.
        assert_eq!(
            location_for(&http, &a.base, host, "same").await,
            (302, want.to_owned(), "HIT".to_owned()),
            "{host}"
        );
        // L2 (or Postgres) on replica b.
        let (status, location, _) = location_for(&http, &b.base, host, "same").await;
        assert_eq!(
            (status, location.as_str()),
            (302, want),
            "{host} on replica b"
        );
    }
    // The public QR code names the domain it was asked on.
    for (host, want) in [
        ("go.example.com", "https://go.example.com/same"),
        ("sho.rt", "https://sho.rt/same"),
    ] {
        let r = http
            .get(format!("{}/same/qr?format=png&size=200", a.base))
            .header(header::HOST, host)
            .send()
            .await
            .expect("qr");
        assert_eq!(r.status().as_u16(), 200, "{host}");
        let png = r.bytes().await.expect("png");
        assert_eq!(
            shortline_shared::testing::decode_qr("image/png", &png),
            want,
            "{host}"
        );
    }
    let r = http
        .get(format!("{}/same/qr", a.base))
        .header(header::HOST, "unknown.example")
        .send()
        .await
        .expect("qr");
    assert_eq!(r.status().as_u16(), 404);
    // A host that is no domain, and a domain without that code: 404.
    assert_eq!(
        location_for(&http, &a.base, "unknown.example", "same")
            .await
            .0,
        404
    );
    assert_eq!(
        location_for(&http, &a.base, "go.example.com", "nothere")
            .await
            .0,
        404
    );

    // A change naming the domain drops that domain's entry only.
    sqlx::query("UPDATE urls SET original_url = 'https://go.example/new' WHERE id = $1")
        .bind(go_link)
        .execute(&db)
        .await
        .expect("retarget");
    let mut link = snapshot(go_link, "same", "https://go.example/new", true);
    link.domain = Some("go.example.com".into());
    publish_change(
        &shared_nats(),
        &subjects,
        Change::LinkUpdated {
            link,
            changed: vec!["original_url".into()],
        },
    )
    .await;
    for served in [&a, &b] {
        let base = served.base.clone();
        let http = http.clone();
        eventually("the domain's link is re-read", move || {
            let (base, http) = (base.clone(), http.clone());
            async move {
                location_for(&http, &base, "go.example.com", "same").await.1
                    == "https://go.example/new"
            }
        })
        .await;
    }
    assert_eq!(
        location_for(&http, &a.base, "sho.rt", "same").await,
        (302, "https://default.example/".to_owned(), "HIT".to_owned()),
        "the default domain's entry stays cached"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    a.stop().await;
    b.stop().await;
    one.shutdown().await;
    two.shutdown().await;
}
