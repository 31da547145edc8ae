//! Shortline's analytics service (`shortline-analytics`): the click stream
//! into the contract's event log and per-link statistics. It is the only
//! writer of those statistics (`link_stats`, `link_stats_hourly`,
//! `rollup_backlog`, `link_stats_referrers`, `link_stats_agents`); the write
//! API only reads them. The one hand-off is `rollup_pending`: the API marks a
//! `redirect` event it recorded there, and this service deletes the mark in
//! the statement that counts the event.
//!
//! `consumer` reads click batches from JetStream (one durable consumer
//! shared by every replica) and acks them after `repo` has written their
//! event rows, the per-link rollups (`link_stats`, `link_stats_hourly`) and
//! backlog rows (user agents and referrers classified with `breakdown`).
//! `redirect` events a client records through the API's `POST /events`
//! arrive on the same stream, as clicks whose event row the API has written
//! already: `repo` adds them to the same rollups, once. `backlog` is the
//! rollup job that folds the backlog into the daily referrer and user-agent
//! breakdowns; `toplinks` exports the most redirected links as a gauge.
//! Beside it the service serves `/health`, `/ready` (Postgres and NATS) and
//! `/metrics`.
//!
//! `shortline-analytics rebuild-rollups` ([`rebuild_rollups`]) recomputes
//! every one of those tables from the event rows: after `shortline-api seed`
//! (which loads event rows only; `make up` runs both) or a restore.

pub mod backlog;
pub mod breakdown;
pub mod config;
pub mod consumer;
pub mod repo;
pub mod toplinks;

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use shortline_shared::http::{CommonLayers, error_body, health, with_common_layers};
use shortline_shared::probe::{Dependencies, DependencyProbe, ReadyWhen};
use shortline_shared::shutdown::BackgroundTasks;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::backlog::{RollupJob, RollupMetrics, RollupSettings};
use crate::config::AnalyticsConfig;
use crate::consumer::{ClickConsumer, ConsumerMetrics, ConsumerSettings};

/// How often consumer lag is read into the metrics.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// What the operational endpoints look at.
#[derive(Clone)]
pub struct AnalyticsState {
    pub db: PgPool,
    pub nats: async_nats::Client,
}

/// The operational HTTP endpoints.
pub fn router(state: AnalyticsState) -> Router {
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(shortline_shared::telemetry::metrics_handler),
        )
        .fallback(|| async { error_body(StatusCode::NOT_FOUND, "Not found") })
        .with_state(state);
    with_common_layers(app, &CommonLayers::default())
}

/// Ready when both Postgres and NATS are reachable (without either it cannot
/// make progress): the shared readiness answer.
async fn ready(State(state): State<AnalyticsState>) -> Response {
    let deps = Dependencies {
        postgres: Some(state.db.clone()),
        valkey: None,
        nats: Some(state.nats.clone()),
    };
    deps.ready(ReadyWhen::PostgresAndNatsUp, ()).await
}

/// A started consumer, its lag watcher and the rollup job.
pub struct Service {
    pub state: AnalyticsState,
    tasks: BackgroundTasks,
    rollup: tokio::task::JoinHandle<()>,
    stop_rollup: CancellationToken,
    _probe: DependencyProbe,
}

impl Service {
    /// Connects (without waiting for NATS) and starts consuming.
    pub async fn start(config: &AnalyticsConfig) -> anyhow::Result<Self> {
        let db = config.common.pool(config.db_max_connections)?;
        Self::start_with_pool(config, db).await
    }

    /// [`Service::start`] with a given Postgres pool (`DATABASE_URL` unused).
    pub async fn start_with_pool(config: &AnalyticsConfig, db: PgPool) -> anyhow::Result<Self> {
        let nats = config.common.connect_nats("shortline-analytics").await?;
        let settings = ConsumerSettings {
            durable: config.consumer.clone(),
            batch_messages: config.batch_messages,
            batch_clicks: config.batch_clicks,
            batch_wait: config.batch_wait(),
            max_deliver: config.max_deliver,
            ack_wait: config.ack_wait(),
            writers: config.writers,
        };
        let metrics = ConsumerMetrics::new();
        let subjects = config.common.subjects();
        let tasks = BackgroundTasks::new();
        let stop = tasks.token();
        let make = || {
            ClickConsumer::new(
                db.clone(),
                nats.clone(),
                subjects.clone(),
                settings.clone(),
                metrics.clone(),
            )
        };
        tasks.spawn(make().run(stop.clone()));
        tasks.spawn(make().watch_lag(LAG_EVERY, stop.clone()));
        // Stopped only after the consumer, so its last run sees every row.
        let stop_rollup = CancellationToken::new();
        let rollup = tokio::spawn(
            RollupJob::new(
                db.clone(),
                Some(make()),
                RollupSettings {
                    interval: config.rollup_interval(),
                    max_events: config.rollup_max_events,
                    max_defer: config.rollup_max_defer(),
                },
                RollupMetrics::new(),
            )
            .run(stop_rollup.clone()),
        );
        if config.top_links > 0 {
            let top = toplinks::TopLinks::new(db.clone(), config.top_links);
            tasks.spawn(top.run(config.top_links_refresh(), stop.clone()));
        }
        let probe = Dependencies {
            postgres: Some(db.clone()),
            valkey: None,
            nats: Some(nats.clone()),
        }
        .observe(stop.clone());
        Ok(Self {
            state: AnalyticsState { db, nats },
            tasks,
            rollup,
            stop_rollup,
            _probe: probe,
        })
    }

    /// Stops consuming after the batch in hand is written and acked, then
    /// lets the rollup job fold what the consumer wrote.
    pub async fn shutdown(self) {
        self.tasks.stop().await;
        self.stop_rollup.cancel();
        let _ = self.rollup.await;
        // Acks are fire-and-forget publishes: make sure they left.
        let _ = self.state.nats.flush().await;
    }
}

/// `shortline-analytics rebuild-rollups`: recomputes the per-link rollups
/// and breakdowns from the event rows ([`repo::rebuild_rollups`]) and logs
/// what it counted.
pub async fn rebuild_rollups(config: &AnalyticsConfig) -> anyhow::Result<()> {
    let db = config.common.pool(config.db_max_connections)?;
    let started = std::time::Instant::now();
    let rebuilt = repo::rebuild_rollups(&db)
        .await
        .context("rebuilding the rollups")?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(?rebuilt, elapsed_ms, "rollups rebuilt from the event rows");
    Ok(())
}

/// Serves until SIGINT/SIGTERM, then stops the consumer cleanly.
pub async fn run(config: AnalyticsConfig) -> anyhow::Result<()> {
    let shutdown = shortline_shared::shutdown::on_signal();
    let service = Service::start(&config).await?;
    let listener = shortline_shared::http::bind(config.listen, "shortline-analytics").await?;
    axum::serve(listener, router(service.state.clone()))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    service.shutdown().await;
    tracing::info!("shortline-analytics stopped");
    Ok(())
}
