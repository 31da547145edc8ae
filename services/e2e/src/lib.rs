//! End-to-end tests across the services live in `tests/`: the write API and
//! redirect replicas wired together through real Postgres, Valkey and NATS,
//! in one process. No service depends on another; only these tests see them
//! all.

use std::time::Duration;

use shortline_api::config::{ApiConfig, AuthMode};
use shortline_api::state::AppState;

/// The write API's state for a pipeline test: subjects under `prefix`, the
/// given NATS client (`None`: no relay, no propagation), link changes
/// waiting up to `invalidation_wait` for the redirect replicas. Keys and
/// rate limits are off (`API_AUTH=off`): these tests are about the
/// pipeline; the api's own tests cover access control. No Valkey (no link
/// tombstones from the API): see [`api_state_with_valkey`].
pub fn api_state(
    db: sqlx::PgPool,
    prefix: &str,
    nats: Option<async_nats::Client>,
    invalidation_wait: Duration,
) -> AppState {
    api_state_with_valkey(db, prefix, nats, invalidation_wait, "")
}

/// [`api_state`] with the API writing link tombstones to the Valkey at
/// `valkey_url` (under `prefix`, as the redirect reads them).
pub fn api_state_with_valkey(
    db: sqlx::PgPool,
    prefix: &str,
    nats: Option<async_nats::Client>,
    invalidation_wait: Duration,
    valkey_url: &str,
) -> AppState {
    let mut config = ApiConfig::for_urls("postgres://unused", "nats://unused");
    config.common.nats_prefix = prefix.to_owned();
    config.invalidation_wait_ms = u64::try_from(invalidation_wait.as_millis()).unwrap_or(u64::MAX);
    config.api_auth = AuthMode::Off;
    config.valkey_url = valkey_url.to_owned();
    config.valkey_timeout_ms = 500;
    AppState::new(config, db, nats).expect("api state builds")
}
