//! Plumbing and event contracts shared by the Shortline services.
//!
//! Nothing here knows about a particular service's domain: `db` owns the pool
//! (behind a circuit breaker) and the migrator, `breakdown` how a redirect is classified for the
//! per-link breakdowns, `cache` the Valkey client, `config` the settings every service
//! reads, `events` the versioned messages that cross service
//! boundaries, `nats` the JetStream connection and stream definitions,
//! `telemetry` logs, metrics and traces, `probe` the dependency and pool
//! gauges, `http` the layers every router wears,
//! `shutdown` the signal handling, and `wire` the contract's wire formats.

pub mod breakdown;
pub mod cache;
pub mod config;
pub mod db;
pub mod events;
pub mod http;
pub mod nats;
pub mod probe;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;
