//! Custom domains across the services: links with the same code on the
//! default domain and on a custom domain, created through the write API,
//! resolve by `Host` on a redirect replica, and an edit of the custom
//! domain's link is served from the moment the API answers (its change
//! event and Valkey tombstone name the domain).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use shortline_e2e::send;
use shortline_redirect::Service;
use shortline_redirect::config::RedirectConfig;
use shortline_redirect::fast::FastPath;
use shortline_shared::testing::unique_prefix;
use sqlx::PgPool;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn get_on(fast: &FastPath, host: &str, code: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .uri(format!("/{code}"))
        .header("host", host)
        .body(Body::empty())
        .expect("request");
    let response = fast.handle(request, ([127, 0, 0, 1], 40_000).into()).await;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (response.status(), location)
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn custom_domain_links_resolve_by_host_and_edits_are_never_stale(db: PgPool) {
    let prefix = unique_prefix();
    let nats_url = env_or("NATS_URL", "nats://127.0.0.1:54222");
    let valkey_url = env_or("VALKEY_URL", "redis://127.0.0.1:56379");
    let api_service = shortline_e2e::api_with_valkey(
        db.clone(),
        &prefix,
        Some(&nats_url),
        Duration::from_secs(30),
        &valkey_url,
    )
    .await;
    let api = api_service.router();
    let mut redirect_config =
        RedirectConfig::for_urls("postgres://unused", &valkey_url, &nats_url, &prefix);
    redirect_config.change_stream_wait_ms = 30_000;
    let replicas = [
        Service::start_with_pool(&redirect_config, db.clone())
            .await
            .expect("replica a"),
        Service::start_with_pool(&redirect_config, db.clone())
            .await
            .expect("replica b"),
    ];
    let fast: Vec<FastPath> = replicas
        .iter()
        .map(|r| FastPath::new(r.state.clone()))
        .collect();

    let (s, user, _) = send(
        &api,
        Method::POST,
        "/users",
        Some(json!({"username": "hoster", "email": "hoster@example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let (s, domain, _) = send(
        &api,
        Method::POST,
        "/domains",
        Some(json!({"host": "go.example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{domain}");
    for (domain, url) in [
        (None, "https://example.com/default"),
        (Some("go.example.com"), "https://example.com/v0"),
    ] {
        let (s, link, _) = send(
            &api,
            Method::POST,
            "/urls",
            Some(json!({"user_id": user["id"], "original_url": url, "short_code": "promo", "domain": domain})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{link}");
    }
    let (_, links, _) = send(&api, Method::GET, "/urls", None).await;
    let custom = links
        .as_array()
        .expect("links")
        .iter()
        .find(|l| l["domain"] == "go.example.com")
        .expect("the custom domain's link")
        .clone();

    for f in &fast {
        assert_eq!(
            get_on(f, "127.0.0.1:8000", "promo").await,
            (StatusCode::FOUND, "https://example.com/default".into())
        );
        assert_eq!(
            get_on(f, "go.example.com", "promo").await,
            (StatusCode::FOUND, "https://example.com/v0".into())
        );
        assert_eq!(
            get_on(f, "elsewhere.example", "promo").await.0,
            StatusCode::NOT_FOUND
        );
    }
    for round in 1..8 {
        let url = format!("https://example.com/v{round}");
        let (s, body, _) = send(
            &api,
            Method::PUT,
            &format!("/urls/{}", custom["id"]),
            Some(json!({"original_url": url})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        for f in &fast {
            assert_eq!(
                get_on(f, "go.example.com", "promo").await,
                (StatusCode::FOUND, url.clone()),
                "stale after edit {round}"
            );
            assert_eq!(
                get_on(f, "127.0.0.1:8000", "promo").await,
                (StatusCode::FOUND, "https://example.com/default".into())
            );
        }
    }
    for s in replicas {
        s.shutdown().await;
    }
    api_service.shutdown().await;
}
