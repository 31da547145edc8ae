//! Shortline's redirect service (`shortline-redirect`): the hot read path.
//!
//! `fast` serves HTTP and answers redirects of links held in memory
//! itself, in front of the router; `routes` answers `GET|HEAD|POST
//! /{short_code}` for the rest (`code` says which codes can exist at all);
//! `resolve` finds the target through the tiered cache (moka, Valkey,
//! Postgres); `policy` decides links with rules (expiry, targeting rules,
//! query forwarding, fallback, password), `limits` counts their clicks and
//! password attempts in Valkey, `pages` answers browsers with HTML; `invalidate` drops
//! changed links from the caches as the write side's change events arrive;
//! `clicks` turns every redirect into a click event published to JetStream
//! in batches, off the request path, and `spill` keeps what a shutdown could
//! not publish for a replica to replay; `error` maps failures to JSON.
//! `qr` answers `GET /{short_code}/qr`, the link's QR code (no click).
//! Liveness, readiness and metrics are served beside the redirect route.

pub mod click_record;
pub mod clicks;
pub mod code;
pub mod config;
pub mod error;
pub mod fast;
pub mod hosts;
pub mod invalidate;
pub mod limits;
pub mod pages;
pub mod policy;
pub mod qr;
pub mod resolve;
pub mod routes;
pub mod spill;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use shortline_shared::cache::{Valkey, ValkeySettings};
use shortline_shared::http::{
    CommonLayers, RequestTelemetry, error_body, health, with_common_layers_using,
};
use shortline_shared::probe::{Dependencies, DependencyProbe, ReadyWhen};
use shortline_shared::shutdown::BackgroundTasks;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::clicks::{PublisherSettings, TrustedProxies};
use crate::config::RedirectConfig;
use crate::hosts::Hosts;
use crate::invalidate::Invalidator;
use crate::limits::Limits;
use crate::pages::Pages;
use crate::policy::AgentMemo;
use crate::resolve::{CacheSettings, LinkCache};
use crate::spill::{SpillDir, SpillReplayer};
use crate::state::{RedirectMetrics, RedirectState, Shared};

/// The HTTP application.
pub fn router(state: RedirectState) -> Router {
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(shortline_shared::telemetry::metrics_handler),
        )
        .route("/{short_code}", get(routes::redirect).post(routes::unlock))
        .route("/{short_code}/qr", get(qr::link_qr))
        .fallback(|| async { error_body(StatusCode::NOT_FOUND, "Not found") })
        .with_state(state.clone());
    with_common_layers_using(app, &CommonLayers::default(), state.http.clone())
}

/// Ready while links can be served from somewhere: Postgres, or Valkey when
/// Postgres is away (the shared readiness answer, plus the click buffer's
/// depth).
async fn ready(State(state): State<RedirectState>) -> Response {
    let deps = Dependencies {
        postgres: Some(state.db.clone()),
        valkey: state.valkey.clone(),
        nats: state.nats.clone(),
    };
    let click_buffer = state.clicks.depth();
    deps.ready(
        ReadyWhen::PostgresOrValkeyUp,
        serde_json::json!({ "click_buffer": click_buffer }),
    )
    .await
}

/// A started service: its state (for the router) and its background tasks
/// (change consumer, click publisher).
pub struct Service {
    pub state: RedirectState,
    tasks: BackgroundTasks,
    _probe: DependencyProbe,
}

impl Service {
    /// Connects (without waiting for any server to be up) and starts the
    /// background tasks.
    pub async fn start(config: &RedirectConfig) -> anyhow::Result<Self> {
        let db = config.common.pool(config.db_max_connections)?;
        Self::start_with_pool(config, db).await
    }

    /// [`Service::start`] with a given Postgres pool (`DATABASE_URL` unused).
    pub async fn start_with_pool(config: &RedirectConfig, db: PgPool) -> anyhow::Result<Self> {
        let metrics = RedirectMetrics::new();
        let subjects = config.common.subjects();
        let valkey = if config.valkey_url.trim().is_empty() {
            None
        } else {
            Some(
                Valkey::connect(
                    &config.valkey_url,
                    &ValkeySettings {
                        pool_size: config.valkey_pool_size,
                        command_timeout: config.valkey_timeout(),
                        ..Default::default()
                    },
                )
                .context("invalid VALKEY_URL")?,
            )
        };
        let pages = Pages::load(config.template_dir().as_deref())?;
        let limits = Limits::new(
            valkey.clone(),
            db.clone().into(),
            &config.common.nats_prefix,
            config.password_attempts,
            config.password_window(),
            Duration::from_millis(config.limit_timeout_ms.max(1)),
        );
        let permanent_cache_control =
            HeaderValue::try_from(format!("public, max-age={}", config.permanent_max_age_secs))
                .context("REDIRECT_PERMANENT_MAX_AGE_SECS")?;
        let links = LinkCache::new(
            db.clone().into(),
            valkey.clone(),
            &CacheSettings {
                l1_capacity: config.l1_capacity,
                l1_ttl: config.l1_ttl(),
                negative_ttl: config.negative_ttl(),
                l2_ttl: config.l2_ttl(),
                key_prefix: config.common.nats_prefix.clone(),
            },
            metrics.clone(),
        );
        let nats = config.common.connect_nats("shortline-redirect").await?;
        let spill = config.click_spill_dir().map(SpillDir::new);
        let (clicks, publisher) = clicks::channel(
            nats.clone(),
            subjects.clone(),
            PublisherSettings {
                buffer: config.click_buffer,
                batch_max: config.click_batch_max,
                linger: config.click_linger(),
                flush_timeout: config.click_flush_timeout(),
                spill: spill.clone(),
            },
            metrics.clone(),
        );
        let tasks = BackgroundTasks::new();
        let stop = tasks.token();
        if let Some(dir) = spill {
            let replayer = SpillReplayer {
                dir,
                js: async_nats::jetstream::new(nats.clone()),
                subjects: subjects.clone(),
                interval: config.click_spill_replay(),
                metrics: metrics.clone(),
            };
            tasks.spawn(replayer.run(stop.clone()));
        }
        let invalidator = Invalidator::new(nats.clone(), subjects, links.clone());
        let mut reading = invalidator.reading();
        tasks.spawn(invalidator.run(stop.clone()));
        tasks.spawn(guard_l1(
            links.clone(),
            nats.clone(),
            reading.clone(),
            Duration::from_millis(config.degraded_l1_ttl_ms.max(1)),
            stop.clone(),
        ));
        tasks.spawn(publisher.run(stop.clone()));
        // Serve only once changes reach this replica, unless NATS is away:
        // then serve anyway (L1 is dropped when the stream is read).
        let wait = Duration::from_millis(config.change_stream_wait_ms);
        let waited = tokio::time::timeout(wait, reading.wait_for(|r| *r)).await;
        if !matches!(waited, Ok(Ok(_))) {
            tracing::warn!(
                "serving before the link-change stream is read; cached links are dropped once it is"
            );
        }
        let probe = Dependencies {
            postgres: Some(db.clone()),
            valkey: valkey.clone(),
            nats: Some(nats.clone()),
        }
        .observe(stop.clone());
        let state = RedirectState::new(Shared {
            db,
            valkey,
            nats: Some(nats),
            links,
            clicks,
            limits,
            agents: AgentMemo::default(),
            pages,
            hosts: Hosts::new(&config.public_base_url, &config.default_hosts)?,
            permanent_cache_control,
            trusted_proxies: Arc::new(TrustedProxies::new(config.trusted_proxies.clone())),
            public_base_url: Arc::from(config.public_base_url.trim_end_matches('/')),
            metrics,
            http: RequestTelemetry::new(),
        });
        Ok(Self {
            state,
            tasks,
            _probe: probe,
        })
    }

    /// Stops the background tasks: the change consumer at once, the click
    /// publisher after flushing its buffer (bounded by the flush timeout).
    pub async fn shutdown(self) {
        self.tasks.stop().await;
        if let Some(v) = &self.state.valkey {
            v.quit().await;
        }
    }
}

/// While this replica does not read the change stream (before the first
/// consumer, NATS away, consumer lost), changes may happen that it cannot
/// hear about: every `ttl` it stops trusting what L1 loaded, so each cached
/// link is re-read from Valkey (where the API tombstones changed links
/// itself) or Postgres at most once per `ttl`.
async fn guard_l1(
    links: LinkCache,
    nats: async_nats::Client,
    reading: tokio::sync::watch::Receiver<bool>,
    ttl: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(ttl);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now; start-up waits for the stream on its own.
    tick.tick().await;
    let mut degraded = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let healthy = *reading.borrow() && shortline_shared::nats::is_connected(&nats);
        if !healthy {
            links.distrust_cached();
        }
        if healthy == degraded {
            degraded = !healthy;
            if degraded {
                tracing::warn!(
                    ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                    "not reading link changes: cached links are re-read from Valkey or PostgreSQL at most this often"
                );
            } else {
                tracing::info!(
                    "reading link changes again: cached links are trusted until changed"
                );
            }
        }
    }
}

/// Serves until SIGINT/SIGTERM: in-flight requests finish, then the click
/// buffer is flushed to NATS, then the process exits.
pub async fn run(config: RedirectConfig) -> anyhow::Result<()> {
    let shutdown = shortline_shared::shutdown::on_signal();
    let service = Service::start(&config).await?;
    let running = fast::spawn(config.listen, service.state.clone(), shutdown)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %running.addr, "shortline-redirect listening");
    running.stopped().await?;
    service.shutdown().await;
    tracing::info!("shortline-redirect stopped");
    Ok(())
}
