//! What every handler can reach: the pool, the NATS subjects, configuration
//! and the service's metric instruments.

use std::sync::Arc;

use opentelemetry::metrics::Counter;
use shortline_shared::db::Db;
use shortline_shared::events::Subjects;

use crate::config::ApiConfig;
use crate::outbox::Propagator;

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
