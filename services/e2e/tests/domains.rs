//! Custom domains across the services: links with the same code on the
//! default domain and on a custom domain, created through the write API,
//! resolve by `Host` on a redirect replica, and an edit of the custom
//! domain's link is served from the moment the API answers (its change
//! event and Valkey tombstone name the domain).

use axum::http::{Method, StatusCode};
use serde_json::json;
use shortline_e2e::{api_and_replicas, redirect_get, send};
use shortline_redirect::fast::FastPath;
use sqlx::PgPool;

async fn get_on(fast: &FastPath, host: &str, code: &str) -> (StatusCode, String) {
    redirect_get(fast, code, &[("host", host)]).await
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn custom_domain_links_resolve_by_host_and_edits_are_never_stale(db: PgPool) {
    let (api_service, replicas, _) = api_and_replicas(&db, 2).await;
    let api = api_service.router();
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
