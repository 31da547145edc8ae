//! The operational gauges every service exports beside its own metrics:
//! dependency reachability (with real servers that this test stops and
//! starts again), database pool usage and the process gauges. Its own test
//! binary, so that no other probe in the process reports the same series.

use std::time::Duration;

use shortline_shared::cache::{Valkey, ValkeySettings};
use shortline_shared::probe::Dependencies;
use shortline_shared::telemetry::render_metrics;
use shortline_shared::testing::{OwnServer, ServerKind};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Waits until the metrics text holds every line of `want` (as prefixes of
/// sample lines, value included).
async fn wait_for(want: &[&str], within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let text = render_metrics().expect("metrics render");
        let missing: Vec<&&str> = want
            .iter()
            .filter(|w| !text.lines().any(|l| l.starts_with(**w)))
            .collect();
        if missing.is_empty() {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw {missing:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn dependency_pool_and_process_gauges_follow_the_servers(db: PgPool) {
    let mut valkey_server = OwnServer::start(ServerKind::Valkey).await;
    let mut nats_server = OwnServer::start(ServerKind::Nats).await;
    let valkey = Valkey::connect(&valkey_server.url(), &ValkeySettings::default()).expect("valkey");
    let nats = shortline_shared::nats::connect(&nats_server.url(), "probe-test")
        .await
        .expect("nats");
    let stop = CancellationToken::new();
    let _probe = Dependencies {
        postgres: Some(db.clone()),
        valkey: Some(valkey.clone()),
        nats: Some(nats.clone()),
    }
    .observe(stop.clone());

    let text = wait_for(
        &[
            r#"shortline_dependency_up{dependency="postgres"} 1"#,
            r#"shortline_dependency_up{dependency="valkey"} 1"#,
            r#"shortline_dependency_up{dependency="nats"} 1"#,
            r#"shortline_db_pool_connections{state="idle"}"#,
            r#"shortline_db_pool_connections{state="in_use"}"#,
            "shortline_db_pool_max_connections ",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ],
        Duration::from_secs(15),
    )
    .await;
    // Process memory is a real reading, not a placeholder.
    let rss: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rss value");
    assert!(rss > 1_000_000.0, "rss {rss}");

    // A held connection shows as in use.
    let held = db.acquire().await.expect("connection");
    wait_for(
        &[r#"shortline_db_pool_connections{state="in_use"} 1"#],
        Duration::from_secs(5),
    )
    .await;
    drop(held);

    // Both servers die: the gauges drop to 0 within a probe interval or two.
    valkey_server.stop();
    nats_server.stop();
    wait_for(
        &[
            r#"shortline_dependency_up{dependency="valkey"} 0"#,
            r#"shortline_dependency_up{dependency="nats"} 0"#,
            r#"shortline_dependency_up{dependency="postgres"} 1"#,
        ],
        Duration::from_secs(20),
    )
    .await;

    // And come back.
    valkey_server.resume().await;
    nats_server.resume().await;
    wait_for(
        &[
            r#"shortline_dependency_up{dependency="valkey"} 1"#,
            r#"shortline_dependency_up{dependency="nats"} 1"#,
        ],
        Duration::from_secs(30),
    )
    .await;
    stop.cancel();
}
