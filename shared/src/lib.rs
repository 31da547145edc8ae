//! Plumbing and event contracts shared by the Shortline services.
//!
//! Nothing here knows about a particular service's domain: `db` owns the pool
//! (behind a circuit breaker) and the migrator, `cache` the Valkey client,
//! `client_ip` who a request came from behind proxies, `config` the settings every service
//! reads, `events` the versioned messages that cross service
//! boundaries, `nats` the JetStream connection and stream definitions,
//! `telemetry` logs, metrics and traces, `probe` the dependency and pool
//! gauges and the one `/ready` answer, `qr` QR codes of short URLs (SVG, PNG), `http` the layers every router wears
//! and the listener's bind, `shutdown` the signal handling and a service's
//! background tasks, `target_url` what a link may point at, `link_rules`
//! the wire form of a link's rules, `user_agent` the one classification of
//! user agents that rules and statistics share, and `wire` the contract's
//! wire formats.

pub mod cache;
pub mod client_ip;
pub mod config;
pub mod db;
pub mod events;
pub mod http;
pub mod link_rules;
pub mod nats;
pub mod probe;
pub mod qr;
pub mod shutdown;
pub mod target_url;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod user_agent;
pub mod wire;
