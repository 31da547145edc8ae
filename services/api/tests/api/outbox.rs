//! Outbox rows reach real NATS JetStream exactly once, and wait out an outage.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::json;
use shortline_api::outbox::OutboxRelay;
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

    let client = shortline_shared::nats::connect(&nats_url(), "test")
        .await
        .expect("nats");
    let relay = OutboxRelay::new(
        db.clone(),
        client.clone(),
        app.state.subjects.clone(),
        Duration::from_secs(1),
    );
    shortline_shared::nats::ensure_stream(
        &jetstream::new(client.clone()),
        shortline_shared::nats::changes_stream_config(&app.state.subjects),
    )
    .await
    .expect("stream");
    relay.drain().await.expect("drains");
    assert_eq!(outbox_len(&db).await, 0, "acked rows are deleted");

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
    relay.drain().await.expect("drains again");
    assert_eq!(outbox_len(&db).await, 0);

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
    let app = TestApp::with_prefix(db.clone(), &prefix).await;
    let mut nats = OwnServer::not_started(ServerKind::Nats);
    let url = nats.url();

    // The relay starts before NATS exists.
    let client = shortline_shared::nats::connect(&url, "test")
        .await
        .expect("client connects lazily");
    let relay = OutboxRelay::new(
        db.clone(),
        client.clone(),
        app.state.subjects.clone(),
        Duration::from_millis(200),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));

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
    let messages = stream_messages(&client, &app.state.subjects.changes_stream()).await;
    assert_eq!(messages.len(), 6);
    stop.cancel();
    task.await.expect("relay stops cleanly");
    drop(nats);
}
