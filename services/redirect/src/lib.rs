//! Shortline's redirect service (`shortline-redirect`): the hot read path.
//!
//! `routes` answers `GET|HEAD /{short_code}`; `resolve` finds the target;
//! `error` maps failures to JSON. Liveness, readiness and metrics are served
//! beside the redirect route.

pub mod config;
pub mod error;
pub mod resolve;
pub mod routes;
pub mod state;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use shortline_shared::db::{self, PoolSettings};
use shortline_shared::http::{CommonLayers, error_body, health, with_common_layers};

use crate::config::RedirectConfig;
use crate::state::RedirectState;

/// The HTTP application.
pub fn router(state: RedirectState) -> Router {
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(shortline_shared::telemetry::metrics_handler),
        )
        .route("/{short_code}", get(routes::redirect))
        .fallback(|| async { error_body(StatusCode::NOT_FOUND, "Not found") })
        .with_state(state);
    with_common_layers(app, &CommonLayers::default())
}

async fn ready(State(state): State<RedirectState>) -> impl IntoResponse {
    if db::ping(&state.db).await {
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

/// Serves until SIGINT/SIGTERM, letting in-flight requests finish.
pub async fn run(config: RedirectConfig) -> anyhow::Result<()> {
    let shutdown = shortline_shared::shutdown::on_signal();
    let db = db::pool(
        &config.database_url,
        &PoolSettings {
            max_connections: config.db_max_connections,
            ..Default::default()
        },
    )
    .context("invalid DATABASE_URL")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %config.listen, "shortline-redirect listening");
    axum::serve(listener, router(RedirectState { db }))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    tracing::info!("shortline-redirect stopped");
    Ok(())
}
