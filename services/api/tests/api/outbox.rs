//! Outbox rows reach real NATS JetStream exactly once, and wait out an outage.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::json;
use shortline_api::config::ApiConfig;
use shortline_shared::events::ChangeEnvelope;
use shortline_shared::testing::{OwnServer, ServerKind, unique_prefix};
use sqlx::PgPool;

use crate::support::TestApp;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:54222".into())
}

async fn stream_messages(
    client: &async_nats::Client,
    name: &str,
) -> Vec<(String, String, ChangeEnvelope)> {
    let js = jetstream::new(client.clone());
    let mut stream = js.get_stream(name).await.expect("stream exists");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(msg) = stream.get_raw_message(seq).await {
            let id = msg
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.to_string())
                .unwrap_or_default();
            let env: ChangeEnvelope =
                serde_json::from_slice(&msg.payload).expect("versioned envelope");
            out.push((msg.subject.to_string(), id, env));
        }
    }
    out
}

async fn outbox_len(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(db)
        .await
        .expect("count")
}

/// The API's config with NATS at `nats_url` (so its outbox relay runs),
/// subjects under `prefix`, and no waiting for propagation.
fn relaying_config(prefix: &str, nats_url: &str) -> ApiConfig {
    let mut config = ApiConfig::for_urls("postgres://unused", nats_url);
    config.common.nats_prefix = prefix.to_owned();
    config.outbox_poll_ms = 200;
    config.invalidation_wait_ms = 0;
    config.valkey_url = String::new();
    config
}

/// Waits until the relay has published (and so deleted) every outbox row.
async fn until_drained(db: &PgPool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while outbox_len(db).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn relay_publishes_each_change_exactly_once(db: PgPool) {
    let prefix = unique_prefix();
    let app = TestApp::with_prefix(db.clone(), &prefix).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let link = app.link(uid, "https://a.io").await;
    app.put(
        &format!("/urls/{}", link["id"]),
        json!({"is_active": false}),
    )
    .await;
    app.delete(&format!("/urls/{}", link["id"])).await;
    assert_eq!(outbox_len(&db).await, 4);
    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT event_id, payload FROM outbox ORDER BY id")
            .fetch_all(&db)
            .await
            .expect("rows");

    // The API started with NATS: its relay publishes what waits.
    let relaying = TestApp::with_config(db.clone(), relaying_config(&prefix, &nats_url())).await;
    until_drained(&db, "acked rows are deleted").await;

    // A relay that crashed after publishing but before deleting republishes:
    // the stream's duplicate window drops the copies.
    for (event_id, payload) in &rows {
        sqlx::query("INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)")
            .bind(event_id)
            .bind(format!(
                "{prefix}.changes.{}",
                payload["type"].as_str().unwrap_or("")
            ))
            .bind(payload)
            .execute(&db)
            .await
            .expect("reinsert");
    }
    until_drained(&db, "republished rows are deleted").await;
    relaying.service.shutdown().await;

    let client = shortline_shared::nats::connect(&nats_url(), "test")
        .await
        .expect("nats");
    let messages = stream_messages(&client, &app.state.subjects.changes_stream()).await;
    let kinds: Vec<&str> = messages.iter().map(|(_, _, e)| e.change.kind()).collect();
    assert_eq!(
        kinds,
        [
            "user.created",
            "link.created",
            "link.updated",
            "link.deleted"
        ],
        "each change exactly once, in order"
    );
    for ((subject, msg_id, env), (event_id, _)) in messages.iter().zip(&rows) {
        assert_eq!(msg_id, event_id, "Nats-Msg-Id is the event ULID");
        assert_eq!(&env.event_id.to_string(), event_id);
        assert_eq!(subject, &format!("{prefix}.changes.{}", env.change.kind()));
        assert_eq!(env.version, 1);
    }
    let link_change = messages[1].2.change.link().expect("link payload");
    assert_eq!(
        link_change.short_code,
        link["short_code"].as_str().unwrap_or_default()
    );
    assert!(!messages[2].2.change.link().expect("link").is_active);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn writes_succeed_while_nats_is_down_and_the_backlog_drains_after(db: PgPool) {
    let prefix = unique_prefix();
    let mut nats = OwnServer::not_started(ServerKind::Nats);
    let url = nats.url();

    // The API (and its relay) starts before NATS exists.
    let app = TestApp::with_config(db.clone(), relaying_config(&prefix, &url)).await;

    let uid = app.user("u").await["id"].as_i64().expect("id");
    for i in 0..5 {
        app.link(uid, &format!("https://a.io/{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outbox_len(&db).await,
        6,
        "rows wait in the outbox while NATS is down"
    );

    nats.resume().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while outbox_len(&db).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog did not drain after NATS came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = shortline_shared::nats::connect(&url, "test")
        .await
        .expect("nats");
    let messages = stream_messages(&client, &app.state.subjects.changes_stream()).await;
    assert_eq!(messages.len(), 6);
    app.service.shutdown().await;
    drop(nats);
}
