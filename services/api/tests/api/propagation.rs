//! A link change reaches the redirect's shared cache (Valkey) from the API
//! itself, and the answer says whether every redirect replica confirmed it.

use axum::http::StatusCode;
use serde_json::json;
use shortline_api::config::ApiConfig;
use shortline_shared::testing::{OwnServer, ServerKind, unique_prefix};
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn link_changes_tombstone_valkey_and_say_they_are_unconfirmed(db: PgPool) {
    let valkey = OwnServer::start(ServerKind::Valkey).await;
    let mut config = ApiConfig::for_urls("postgres://unused", "");
    config.common.nats_prefix = unique_prefix();
    config.valkey_url = valkey.url();
    config.valkey_timeout_ms = 500;
    let prefix = config.common.nats_prefix.clone();
    let app = TestApp::with_config(db, config).await;
    let user = app.user("owner").await["id"].as_i64().expect("id");
    let created = app
        .post(
            "/urls",
            json!({"user_id": user, "original_url": "https://example.com/a"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    // No NATS here: nobody can have confirmed it.
    assert_eq!(
        created.headers["shortline-propagation"], "unconfirmed",
        "{:?}",
        created.headers
    );
    let link = created.json();
    let code = link["short_code"].as_str().expect("code");
    let key = format!("{prefix}:link:{code}");
    // Whatever a redirect replica cached for the code goes.
    valkey
        .valkey_command(&["SET", &key, "1\t1\thttps://example.com/old"])
        .await;
    let mut written = false;
    for _ in 0..100 {
        if app
            .state
            .access
            .limiter
            .as_ref()
            .expect("valkey")
            .is_connected()
        {
            written = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(written, "the api connected to Valkey");
    let res = app
        .put(
            &format!("/urls/{}", link["id"]),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["shortline-propagation"], "unconfirmed");
    assert_eq!(
        valkey.valkey_command(&["GET", &key]).await,
        "$1",
        "a one-byte tombstone"
    );
    let ttl = valkey.valkey_command(&["TTL", &key]).await;
    let ttl: i64 = ttl.trim_start_matches(':').parse().expect("ttl");
    assert!((1..=10).contains(&ttl), "the tombstone expires: {ttl}");
    let del = app.delete(&format!("/urls/{}", link["id"])).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(del.headers["shortline-propagation"], "unconfirmed");
}
