//! Shortline's write side (`shortline-api`).
//!
//! Layout: `routes/` holds thin handlers; `users/`, `links/`, `events/` and
//! `keys/` hold the domain (each with `model.rs` and its SQL in `repo.rs`),
//! addressed by the typed ids of `ids`; `mutation` is the one write path
//! every change to links and users takes (row, event log and outbox in one
//! transaction, then propagation); `auth` checks API keys in front of the
//! routes and `ratelimit` counts requests in Valkey; `outbox` publishes
//! committed changes to JetStream;
//! `import` loads CSV files; `extract`, `validate` and `paging` turn
//! requests into checked values; `row_stream` streams unpaged lists from a
//! cursor; `error` maps every failure to a JSON problem response. The link
//! statistics are the analytics service's read models: the API reads them
//! (`links::stats`) and never writes them; a `redirect` event recorded here
//! reaches them through the outbox, like a click.
//! [`Service`] starts it all, as the other services' `Service` does.

pub mod auth;
pub mod config;
pub mod domains;
pub mod error;
pub mod events;
pub mod extract;
pub mod ids;
pub mod import;
pub mod keys;
pub mod links;
pub mod mutation;
pub mod openapi;
pub mod outbox;
pub mod paging;
pub mod ratelimit;
pub mod routes;
pub mod row_stream;
pub mod state;
pub mod users;
pub mod validate;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use shortline_shared::db::{self, PoolSettings};
use shortline_shared::http::{CommonLayers, with_common_layers};
use shortline_shared::probe::DependencyProbe;
use shortline_shared::shutdown::BackgroundTasks;
use sqlx::PgPool;

use crate::config::{ApiConfig, AuthMode};
use crate::error::ApiError;
use crate::outbox::OutboxRelay;
use crate::state::AppState;

/// The complete HTTP application: API routes, docs, metrics, and the
/// common layers (request ids, logs, metrics, JSON errors).
pub fn router(state: AppState) -> Router {
    let (routes, api) = openapi::build(routes::api_routes);
    let json_limit = state.config.json_max_bytes;
    let timeout = state.config.request_timeout();
    let app = openapi::serve_docs(routes, api)
        .route(
            "/metrics",
            get(shortline_shared::telemetry::metrics_handler),
        )
        .fallback(|| async { ApiError::NotFound("Not found") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(
            shortline_shared::http::drain_unread_body,
        ))
        .layer(DefaultBodyLimit::max(json_limit))
        .with_state(state);
    with_common_layers(
        app,
        &CommonLayers {
            request_timeout: timeout,
        },
    )
}

/// A started API: its state (for the router) and its background tasks: the
/// outbox relay (when there is NATS) and the dependency probe. The binary,
/// the tests and the end-to-end tests all start the API this way.
pub struct Service {
    pub state: AppState,
    tasks: BackgroundTasks,
    _probe: DependencyProbe,
}

impl Service {
    /// Connects (without waiting for any server to be up) and starts the
    /// background tasks.
    pub async fn start(config: &ApiConfig) -> anyhow::Result<Self> {
        let db = config.common.pool(config.db_max_connections)?;
        Self::start_with_pool(config, db).await
    }

    /// [`Service::start`] with a given Postgres pool (`DATABASE_URL`
    /// unused). An empty `NATS_URL` runs without NATS: no relay and no
    /// propagation, changes wait in the outbox.
    pub async fn start_with_pool(config: &ApiConfig, db: PgPool) -> anyhow::Result<Self> {
        let nats = if config.common.nats_url.trim().is_empty() {
            None
        } else {
            Some(config.common.connect_nats("shortline-api").await?)
        };
        let state = AppState::new(config.clone(), db, nats)?;
        let tasks = BackgroundTasks::new();
        if let Some(client) = state.nats.clone() {
            let relay = OutboxRelay::new(
                state.db.pool().clone(),
                client,
                state.subjects.clone(),
                state.config.outbox_poll(),
            );
            tasks.spawn(relay.run(tasks.token()));
        }
        let probe = state.dependencies().observe(tasks.token());
        Ok(Self {
            state,
            tasks,
            _probe: probe,
        })
    }

    /// The HTTP application over this service's state.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Stops the background tasks; the outbox relay makes a last pass first.
    pub async fn shutdown(self) {
        self.tasks.stop().await;
    }
}

/// Serves until SIGINT/SIGTERM: in-flight requests finish first, then the
/// outbox relay makes a last pass and stops.
pub async fn run(config: ApiConfig) -> anyhow::Result<()> {
    let shutdown = shortline_shared::shutdown::on_signal();
    if config.api_auth == AuthMode::Off {
        tracing::warn!(
            "API_AUTH=off: every route is open to anyone who can reach this service, with no rate limits; use it only to run the contract's test suites on a trusted network"
        );
    }
    let service = Service::start(&config).await?;
    let listener = shortline_shared::http::bind(config.listen, "shortline-api").await?;
    axum::serve(
        listener,
        service
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await?;
    service.shutdown().await;
    tracing::info!("shortline-api stopped");
    Ok(())
}

/// Applies pending migrations.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let pool = db::pool(
        database_url,
        &PoolSettings {
            max_connections: 2,
            ..Default::default()
        },
    )?;
    db::MIGRATOR.run(&pool).await.context("migration failed")?;
    tracing::info!("migrations applied");
    Ok(())
}
