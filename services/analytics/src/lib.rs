//! Shortline's analytics service (`shortline-analytics`).
//!
//! It will consume the click stream into event rows and per-link rollups
//! (issue #4). Today it serves its operational endpoints — `/health`,
//! `/ready` (Postgres) and `/metrics` — so it deploys and is probed like the
//! other services.

pub mod config;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use shortline_shared::db::{self, PoolSettings};
use shortline_shared::http::{CommonLayers, error_body, health, with_common_layers};
use sqlx::PgPool;

use crate::config::AnalyticsConfig;

/// The operational HTTP endpoints.
pub fn router(db: PgPool) -> Router {
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(shortline_shared::telemetry::metrics_handler),
        )
        .fallback(|| async { error_body(StatusCode::NOT_FOUND, "Not found") })
        .with_state(db);
    with_common_layers(app, &CommonLayers::default())
}

async fn ready(State(db): State<PgPool>) -> impl IntoResponse {
    if db::ping(&db).await {
        (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ok", "postgres": "ok"})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "postgres": "unreachable"})),
        )
    }
}

/// Serves until SIGINT/SIGTERM.
pub async fn run(config: AnalyticsConfig) -> anyhow::Result<()> {
    let shutdown = shortline_shared::shutdown::on_signal();
    let db = db::pool(
        &config.database_url,
        &PoolSettings {
            max_connections: 4,
            ..Default::default()
        },
    )
    .context("invalid DATABASE_URL")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %config.listen, "shortline-analytics listening");
    axum::serve(listener, router(db))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
