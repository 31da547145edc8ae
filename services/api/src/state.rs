//! What every handler can reach: the pool, the NATS subjects, configuration
//! and the service's metric instruments.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::Counter;
use shortline_shared::cache::{Valkey, ValkeySettings};
use shortline_shared::db::Db;
use shortline_shared::events::Subjects;
use shortline_shared::probe::Dependencies;

use crate::auth::Access;
use crate::config::ApiConfig;
use crate::keys::KeyVerifier;
use crate::links::targets::TargetPolicy;
use crate::outbox::Propagator;
use crate::ratelimit::RateLimiter;

#[derive(Clone)]
pub struct AppState {
    /// The pool behind the database circuit breaker: while PostgreSQL is
    /// known down, `acquire`/`begin` fail at once (503).
    pub db: Db,
    pub subjects: Subjects,
    pub config: Arc<ApiConfig>,
    pub metrics: ApiMetrics,
    /// The NATS client, when one was configured (readiness reports it).
    pub nats: Option<async_nats::Client>,
    /// Publishes committed changes at once and waits for the redirect caches.
    pub propagator: Propagator,
    /// API keys and rate limits.
    pub access: Access,
    /// Which link targets this deployment refuses (own hosts, blocklist).
    pub targets: Arc<TargetPolicy>,
}

impl AppState {
    /// The state for `config` over a pool and, when there is one, a NATS
    /// client: subjects from `NATS_PREFIX`, the propagator, key checking and
    /// (when `VALKEY_URL` is set) the rate limiter and link tombstones,
    /// connecting in the background.
    pub fn new(
        config: ApiConfig,
        db: impl Into<Db>,
        nats: Option<async_nats::Client>,
    ) -> anyhow::Result<Self> {
        let db: Db = db.into();
        let subjects = config.common.subjects();
        let valkey = if config.valkey_url.trim().is_empty() {
            None
        } else {
            Some(Valkey::connect(
                &config.valkey_url,
                &ValkeySettings {
                    pool_size: 2,
                    command_timeout: Duration::from_millis(config.valkey_timeout_ms.max(1)),
                    ..ValkeySettings::default()
                },
            )?)
        };
        let prefix = config.common.nats_prefix.as_str();
        let limiter = valkey.clone().map(|v| RateLimiter::new(v, prefix));
        let verifier = KeyVerifier::new(db.clone(), config.api_key_cache());
        let access = Access::new(&config, verifier, limiter);
        let targets = Arc::new(config.target_policy()?);
        Ok(Self {
            propagator: Propagator::new(
                nats.clone(),
                &subjects,
                config.invalidation_wait(),
                valkey.map(|v| (v, prefix)),
            ),
            db,
            subjects,
            config: Arc::new(config),
            metrics: ApiMetrics::new(),
            nats,
            access,
            targets,
        })
    }
}

impl AppState {
    /// The backing servers this state uses (for `/ready` and the dependency
    /// gauges): PostgreSQL, the rate limits' Valkey, NATS.
    pub fn dependencies(&self) -> Dependencies {
        Dependencies {
            postgres: Some(self.db.pool().clone()),
            valkey: self.access.limiter.as_ref().map(|l| l.valkey().clone()),
            nats: self.nats.clone(),
        }
    }
}

/// Business instruments of the write side.
#[derive(Clone)]
pub struct ApiMetrics {
    pub links_created: Counter<u64>,
    pub short_code_collisions: Counter<u64>,
    pub users_imported: Counter<u64>,
}

impl ApiMetrics {
    pub fn new() -> Self {
        let meter = shortline_shared::telemetry::meter();
        let metrics = Self {
            links_created: meter
                .u64_counter("shortline.links.created")
                .with_description("Links created through the API")
                .build(),
            short_code_collisions: meter
                .u64_counter("shortline.short_code.collisions")
                .with_description("Generated short codes that were already taken and retried")
                .build(),
            users_imported: meter
                .u64_counter("shortline.users.imported")
                .with_description("CSV rows processed by POST /users/bulk")
                .build(),
        };
        // Series exist from the first scrape (0, not absent).
        for counter in [
            &metrics.links_created,
            &metrics.short_code_collisions,
            &metrics.users_imported,
        ] {
            counter.add(0, &[]);
        }
        metrics
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}
