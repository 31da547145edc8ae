//! Link rules across the services: a link with rules created through the
//! write API, answered by two redirect replicas, its clicks folded by the
//! analytics consumer, all against the same real Postgres, Valkey and NATS.
//! A click limit holds exactly across the replicas and leaves exactly that
//! many event rows; an edit of the rules through the API is served by every
//! replica from the moment the API answers.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use shortline_e2e::{api_and_replicas, redirect_get, send, server_urls};
use shortline_redirect::fast::FastPath;
use sqlx::PgPool;

const PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36";

/// `GET /{code}` by a phone, as the replica's server handles it.
async fn phone_get(fast: &FastPath, code: &str) -> (StatusCode, String) {
    redirect_get(fast, code, &[("user-agent", PHONE)]).await
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn click_limits_are_exact_end_to_end_and_rule_edits_are_never_stale(db: PgPool) {
    let (api_service, replicas, prefix) = api_and_replicas(&db, 2).await;
    let api = api_service.router();
    let analytics = shortline_analytics::Service::start_with_pool(
        &shortline_analytics::config::AnalyticsConfig::for_urls(&server_urls().0, &prefix),
        db.clone(),
    )
    .await
    .expect("analytics");

    let (s, user, _) = send(
        &api,
        Method::POST,
        "/users",
        Some(json!({"username": "ruler", "email": "ruler@example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let (s, link, _) = send(
        &api,
        Method::POST,
        "/urls",
        Some(json!({
            "user_id": user["id"],
            "original_url": "https://example.com/desk",
            "max_clicks": 1000,
            "rules": [{"when": {"device": ["mobile"]}, "target": "https://m.example.com/v1"}],
        })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{link}");
    let code = link["short_code"].as_str().expect("code").to_owned();
    let id = link["id"].as_i64().expect("id");

    // Both replicas count in Valkey: wait for their connections (a replica
    // that has none yet answers a limited link 503 after a short wait).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !replicas
        .iter()
        .all(|r| r.state.valkey.as_ref().is_some_and(|v| v.is_connected()))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "valkey never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 64 concurrent clients over both replicas, 20 requests each.
    let fast: Vec<std::sync::Arc<FastPath>> = replicas
        .iter()
        .map(|r| std::sync::Arc::new(FastPath::new(r.state.clone())))
        .collect();
    // (Concurrent within this task: the fast path's futures are not Send.)
    let clients = (0..64).map(|client| {
        let (fast, code) = (fast[client % 2].clone(), code.clone());
        async move {
            let mut answers = Vec::new();
            for _ in 0..20 {
                answers.push(phone_get(&fast, &code).await);
            }
            answers
        }
    });
    let mut answers: Vec<(StatusCode, String)> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    // A take whose Valkey reply is late (a starved machine) answers 503 and
    // is given back; once those settle, the clicks they held are served.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while replicas.iter().any(|r| r.state.limits.giving_back() > 0) {
        assert!(tokio::time::Instant::now() < deadline, "give-backs stuck");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for replica in &fast {
        loop {
            let answer = phone_get(replica, &code).await;
            let gone = answer.0 == StatusCode::GONE;
            answers.push(answer);
            if gone {
                break;
            }
            assert!(answers.len() < 2_560, "never exhausted");
        }
    }
    let count = |status: StatusCode| answers.iter().filter(|(s, _)| *s == status).count();
    let redirected = answers
        .iter()
        .filter(|(s, l)| *s == StatusCode::FOUND && l == "https://m.example.com/v1")
        .count();
    let others: Vec<_> = answers
        .iter()
        .filter(|(s, l)| {
            let expected = matches!(*s, StatusCode::GONE | StatusCode::SERVICE_UNAVAILABLE)
                || (*s == StatusCode::FOUND && l == "https://m.example.com/v1");
            !expected
        })
        .take(3)
        .collect();
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(
        redirected,
        1000,
        "410: {}, 503: {}",
        count(StatusCode::GONE),
        count(StatusCode::SERVICE_UNAVAILABLE)
    );

    // Exactly 1000 event rows, each saying which rule it followed.
    let events =
        shortline_e2e::redirect_events_once_counted(&api, id, 1000, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 1000);
    assert!(
        events
            .iter()
            .all(|e| e["details"]["outcome"] == json!("rule:0")),
        "{:?}",
        events.first()
    );

    // Rule edits through the API: lift the limit, then change the rule's
    // target again and again; every replica follows each edit from the
    // moment the API has answered.
    let (s, body, _) = send(
        &api,
        Method::PUT,
        &format!("/urls/{id}"),
        Some(json!({"max_clicks": null})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for round in 2..12 {
        let target = format!("https://m.example.com/v{round}");
        let (s, body, _) = send(
            &api,
            Method::PUT,
            &format!("/urls/{id}"),
            Some(json!({"rules": [{"when": {"device": ["mobile"]}, "target": target}]})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        for f in &fast {
            assert_eq!(
                phone_get(f, &code).await,
                (StatusCode::FOUND, target.clone()),
                "stale after edit {round}"
            );
        }
    }
    let stored: Value = sqlx::query_scalar("SELECT rules FROM urls WHERE id = $1")
        .bind(id)
        .fetch_one(&db)
        .await
        .expect("rules");
    assert_eq!(stored[0]["target"], "https://m.example.com/v11");

    for s in replicas {
        s.shutdown().await;
    }
    analytics.shutdown().await;
    api_service.shutdown().await;
}
