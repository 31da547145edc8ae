//! The backing servers a service uses ([`Dependencies`]), as every service
//! reports them: the gauges of whether Postgres, Valkey and NATS are
//! reachable (`shortline_dependency_up`) and how the database pool is used
//! (`shortline_db_pool_connections`, `shortline_db_pool_max_connections`),
//! and the one `/ready` answer ([`Dependencies::ready`]).
//!
//! For the gauges, Postgres and Valkey are pinged by a background task (a
//! scrape must never wait on a server); NATS and the pool are read when
//! Prometheus scrapes. `/ready` checks each dependency when asked and names
//! its state in one vocabulary ([`DependencyState`]: `ok`, `unreachable`,
//! `not configured`) in every service; which dependencies gate readiness is
//! the service's [`ReadyWhen`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opentelemetry::KeyValue;
use opentelemetry::metrics::ObservableGauge;
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::cache::Valkey;

/// How often Postgres and Valkey are pinged.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Longest wait for one ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The backing servers a service uses (`None`: not used by this service).
#[derive(Clone, Default)]
pub struct Dependencies {
    pub postgres: Option<PgPool>,
    pub valkey: Option<Valkey>,
    pub nats: Option<async_nats::Client>,
}

/// Last ping results: 0 down, 1 up, 2 not checked yet (reported as down).
#[derive(Default)]
struct Pings {
    postgres: AtomicU8,
    valkey: AtomicU8,
}

const UNKNOWN: u8 = 2;

/// Keeps the gauges registered; the ping task stops with the token.
///
/// The SDK keeps a gauge's callback for as long as the meter provider
/// lives, whatever happens to the gauge, so the callbacks reach the pool and
/// the NATS client only through [`Watched`], which dropping the probe
/// empties: a stopped service's pool and connections are not kept alive
/// (and stop being reported).
pub struct DependencyProbe {
    watched: Arc<Mutex<Option<Watched>>>,
    _up: ObservableGauge<u64>,
    _pool: Option<(ObservableGauge<u64>, ObservableGauge<u64>)>,
}

/// What the scrape-time callbacks read.
struct Watched {
    pool: Option<PgPool>,
    nats: Option<async_nats::Client>,
}

impl Drop for DependencyProbe {
    fn drop(&mut self) {
        if let Ok(mut watched) = self.watched.lock() {
            watched.take();
        }
    }
}

impl Dependencies {
    /// Registers the gauges and spawns the ping task (ends when `stop` is
    /// cancelled). Must run inside a tokio runtime.
    pub fn observe(self, stop: CancellationToken) -> DependencyProbe {
        let pings = Arc::new(Pings {
            postgres: AtomicU8::new(UNKNOWN),
            valkey: AtomicU8::new(UNKNOWN),
        });
        let meter = crate::telemetry::meter();
        let watched = Arc::new(Mutex::new(Some(Watched {
            pool: self.postgres.clone(),
            nats: self.nats.clone(),
        })));
        let (has_postgres, has_valkey) = (self.postgres.is_some(), self.valkey.is_some());
        let (seen, live) = (pings.clone(), watched.clone());
        let up = meter
            .u64_observable_gauge("shortline.dependency.up")
            .with_description("Whether a backing server is reachable (1) or not (0), by dependency")
            .with_callback(move |o| {
                let Ok(live) = live.lock() else { return };
                let Some(live) = live.as_ref() else { return };
                let flag = |v: &AtomicU8| u64::from(v.load(Ordering::Relaxed) == 1);
                if has_postgres {
                    o.observe(
                        flag(&seen.postgres),
                        &[KeyValue::new("dependency", "postgres")],
                    );
                }
                if has_valkey {
                    o.observe(flag(&seen.valkey), &[KeyValue::new("dependency", "valkey")]);
                }
                if let Some(nats) = &live.nats {
                    o.observe(
                        u64::from(crate::nats::is_connected(nats)),
                        &[KeyValue::new("dependency", "nats")],
                    );
                }
            })
            .build();
        let pool = self.postgres.as_ref().map(|db| {
            let max = db.options().get_max_connections();
            let live = watched.clone();
            let connections = meter
                .u64_observable_gauge("shortline.db.pool.connections")
                .with_description("Database pool connections by state (idle, in_use)")
                .with_callback(move |o| {
                    let Ok(live) = live.lock() else { return };
                    let Some(pool) = live.as_ref().and_then(|w| w.pool.as_ref()) else {
                        return;
                    };
                    let size = u64::from(pool.size());
                    let idle = pool.num_idle() as u64;
                    o.observe(idle, &[KeyValue::new("state", "idle")]);
                    o.observe(
                        size.saturating_sub(idle),
                        &[KeyValue::new("state", "in_use")],
                    );
                })
                .build();
            let live = watched.clone();
            let max_gauge = meter
                .u64_observable_gauge("shortline.db.pool.max_connections")
                .with_description("Largest number of connections the database pool opens")
                .with_callback(move |o| {
                    if live.lock().is_ok_and(|w| w.is_some()) {
                        o.observe(u64::from(max), &[]);
                    }
                })
                .build();
            (connections, max_gauge)
        });
        tokio::spawn(ping_loop(self, pings, stop));
        DependencyProbe {
            watched,
            _up: up,
            _pool: pool,
        }
    }
}

/// How a dependency stands, in every service's `/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum DependencyState {
    /// It answers.
    #[serde(rename = "ok")]
    Ok,
    /// It is configured but does not answer (NATS: not connected).
    #[serde(rename = "unreachable")]
    Unreachable,
    /// This service runs without it.
    #[serde(rename = "not configured")]
    NotConfigured,
}

impl DependencyState {
    fn of(checked: Option<bool>) -> Self {
        match checked {
            Some(true) => DependencyState::Ok,
            Some(false) => DependencyState::Unreachable,
            None => DependencyState::NotConfigured,
        }
    }

    fn is_ok(self) -> bool {
        self == DependencyState::Ok
    }
}

/// Which dependencies a service cannot serve without; the others are
/// reported in `/ready` but do not fail it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyWhen {
    /// PostgreSQL answers (the api: writes wait in the outbox while NATS is
    /// away, and Valkey only counts rate limits).
    PostgresUp,
    /// PostgreSQL or Valkey answers: links can be read from somewhere (the
    /// redirect).
    PostgresOrValkeyUp,
    /// PostgreSQL and NATS both answer: without either nothing moves (the
    /// analytics consumer).
    PostgresAndNatsUp,
}

/// Each dependency's state, as `/ready` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct DependencyStates {
    pub postgres: DependencyState,
    pub valkey: DependencyState,
    pub nats: DependencyState,
}

/// The body of every service's `/ready`: the verdict, each dependency's
/// state, then what the service adds of its own (`service`, flattened).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Readiness")]
pub struct Readiness<E> {
    /// `ok` (200) or `unavailable` (503).
    pub status: &'static str,
    #[serde(flatten)]
    pub dependencies: DependencyStates,
    #[serde(flatten)]
    pub service: E,
}

impl Dependencies {
    /// Checks every dependency now: PostgreSQL and Valkey are pinged, NATS's
    /// connection state is read.
    pub async fn check(&self) -> DependencyStates {
        let postgres = async {
            match &self.postgres {
                Some(db) => Some(crate::db::ping(db).await),
                None => None,
            }
        };
        let valkey = async {
            match &self.valkey {
                Some(v) => Some(v.ping().await),
                None => None,
            }
        };
        let (postgres, valkey) = tokio::join!(postgres, valkey);
        DependencyStates {
            postgres: DependencyState::of(postgres),
            valkey: DependencyState::of(valkey),
            nats: DependencyState::of(self.nats.as_ref().map(crate::nats::is_connected)),
        }
    }

    /// The `/ready` answer of a service: 200 with `status: ok` when
    /// `ready_when` holds, else 503 with `status: unavailable`; the body
    /// names each dependency's state and carries `service`'s own fields.
    pub async fn ready<E: Serialize>(&self, ready_when: ReadyWhen, service: E) -> Response {
        let states = self.check().await;
        let (postgres, valkey, nats) = (
            states.postgres.is_ok(),
            states.valkey.is_ok(),
            states.nats.is_ok(),
        );
        let ready = match ready_when {
            ReadyWhen::PostgresUp => postgres,
            ReadyWhen::PostgresOrValkeyUp => postgres || valkey,
            ReadyWhen::PostgresAndNatsUp => postgres && nats,
        };
        let body = Readiness {
            status: if ready { "ok" } else { "unavailable" },
            dependencies: states,
            service,
        };
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, Json(body)).into_response()
    }
}

async fn ping_loop(deps: Dependencies, pings: Arc<Pings>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let postgres = async {
            if let Some(db) = &deps.postgres {
                let up = tokio::time::timeout(PING_TIMEOUT, crate::db::ping(db))
                    .await
                    .unwrap_or(false);
                pings.postgres.store(u8::from(up), Ordering::Relaxed);
            }
        };
        let valkey = async {
            if let Some(v) = &deps.valkey {
                let up = tokio::time::timeout(PING_TIMEOUT, v.ping())
                    .await
                    .unwrap_or(false);
                pings.valkey.store(u8::from(up), Ordering::Relaxed);
            }
        };
        tokio::join!(postgres, valkey);
    }
}

#[cfg(test)]
mod tests {
    use super::{Dependencies, ReadyWhen};
    use axum::http::StatusCode;

    async fn body(response: axum::response::Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn ready_names_every_dependency_in_one_vocabulary() {
        let none = Dependencies::default();
        let res = none.ready(ReadyWhen::PostgresUp, ()).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(res).await,
            serde_json::json!({
                "status": "unavailable",
                "postgres": "not configured",
                "valkey": "not configured",
                "nats": "not configured",
            })
        );
        // A service's own fields follow the dependencies.
        let res = none
            .ready(
                ReadyWhen::PostgresOrValkeyUp,
                serde_json::json!({"click_buffer": 3}),
            )
            .await;
        assert_eq!(body(res).await["click_buffer"], 3);
    }
}
