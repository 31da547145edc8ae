//! PostgreSQL away: the API answers 503 at once while the database is known
//! down (instead of every request waiting out the pool's acquire timeout),
//! and recovers by itself when it is back.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use shortline_shared::testing::TcpProxy;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::support::TestApp;

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn postgres_away_fails_fast_and_recovers(db: PgPool) {
    let opts = db.connect_options().as_ref().clone();
    let target: SocketAddr = ([127, 0, 0, 1], opts.get_port()).into();
    let mut proxy = TcpProxy::start(target).await;
    // The production pool's acquire timeout (shared::db::PoolSettings).
    let through_proxy = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(opts.port(proxy.addr().port()));
    let app = TestApp::new(through_proxy).await;
    let id = app.user("before").await["id"].as_i64().expect("id");

    proxy.cut().await;
    // The first request finds out (it may wait for the pool's timeout).
    app.get(&format!("/users/{id}"))
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE);

    // 3 s each would be a minute; fail-fast answers take milliseconds.
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        let mut unavailable = 0;
        for i in 0..20 {
            let res = if i % 2 == 0 {
                app.get(&format!("/users/{id}")).await
            } else {
                app.post(
                    "/users",
                    json!({"username": format!("during{i}"), "email": format!("d{i}@example.com")}),
                )
                .await
            };
            res.assert_error(StatusCode::SERVICE_UNAVAILABLE);
            unavailable += 1;
        }
        unavailable
    })
    .await
    .expect("20 requests while Postgres is away finish within seconds, not a minute");
    assert_eq!(answered, 20);

    proxy.heal().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let res = app.get(&format!("/users/{id}")).await;
        if res.status == StatusCode::OK {
            assert_eq!(res.json()["username"], "before");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the API did not recover: {}",
            res.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = app.user("after").await;
    assert!(created["id"].is_i64());
}
