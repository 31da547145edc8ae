//! PostgreSQL pool construction, the embedded migrator, and [`Db`]: the
//! pool behind a circuit breaker, so that requests fail fast while the
//! database is known to be unreachable instead of each waiting out the
//! pool's acquire timeout.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

/// The forward-only migrations in the workspace's `migrations/` folder,
/// embedded in every binary so `shortline-api migrate` needs no files.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Pool settings shared by every service.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// Builds a lazily connecting pool: a service starts (and reports itself not
/// ready) while Postgres is still coming up, instead of crashing.
pub fn pool(url: &str, settings: &PoolSettings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.application_name("shortline").options([(
        "statement_timeout",
        format!("{}", settings.statement_timeout.as_millis()),
    )]);
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options))
}

/// Answers whether the database takes a trivial query right now.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}

/// Settings of [`Db`]'s circuit breaker.
#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// While the database is down, how often one request may try it.
    pub probe_interval: Duration,
    /// How long that one request waits for a connection.
    pub probe_timeout: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

/// The pool as handlers use it: [`Db::acquire`] and [`Db::begin`] go
/// through a circuit breaker.
///
/// When getting a connection fails because PostgreSQL cannot be reached
/// (the pool's acquire timeout ran out with no connection handed out
/// meanwhile, or connecting failed outright), the database is marked down.
/// While it is down, `acquire`/`begin` fail at once with
/// [`sqlx::Error::PoolTimedOut`] (the services answer that with a 503),
/// except that one caller at a time, at most every `probe_interval`, tries
/// for real (for at most `probe_timeout`); when it gets a connection, the
/// database is up again. A pool that is merely busy does not trip it: other
/// callers keep getting connections.
///
/// Everything else (`&PgPool` uses through `Deref`, readiness pings) goes to
/// the pool directly.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    breaker: Arc<Breaker>,
}

#[derive(Debug)]
struct Breaker {
    settings: BreakerSettings,
    /// Base of the millisecond clocks below.
    epoch: Instant,
    down: AtomicBool,
    /// A probe is under way.
    probing: AtomicBool,
    /// Milliseconds since `epoch` from which the next probe may start.
    next_probe_ms: AtomicU64,
    /// Milliseconds since `epoch` of the last connection handed out.
    last_success_ms: AtomicU64,
}

/// What the breaker lets a caller do.
enum Admission {
    /// Up: go ahead.
    Pass,
    /// Down, and it is this caller's turn to try.
    Probe,
    /// Down: fail at once.
    Reject,
}

impl Db {
    /// The pool behind a breaker with the default settings.
    pub fn new(pool: PgPool) -> Self {
        Self::with_settings(pool, BreakerSettings::default())
    }

    pub fn with_settings(pool: PgPool, settings: BreakerSettings) -> Self {
        Self {
            pool,
            breaker: Arc::new(Breaker {
                settings,
                epoch: Instant::now(),
                down: AtomicBool::new(false),
                probing: AtomicBool::new(false),
                next_probe_ms: AtomicU64::new(0),
                last_success_ms: AtomicU64::new(0),
            }),
        }
    }

    /// The pool itself (no breaker).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database is currently marked unreachable.
    pub fn is_down(&self) -> bool {
        self.breaker.down.load(Ordering::Acquire)
    }

    /// A connection from the pool, or an immediate
    /// [`sqlx::Error::PoolTimedOut`] while the database is known down.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.guarded(self.pool.acquire()).await
    }

    /// A transaction, or an immediate [`sqlx::Error::PoolTimedOut`] while
    /// the database is known down.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.guarded(self.pool.begin()).await
    }

    /// [`Db::begin`] with its own `BEGIN` statement.
    pub async fn begin_with(
        &self,
        statement: &'static str,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.guarded(self.pool.begin_with(statement)).await
    }

    async fn guarded<T>(
        &self,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        let b = &self.breaker;
        let started = b.now_ms();
        match b.admit() {
            Admission::Reject => Err(sqlx::Error::PoolTimedOut),
            Admission::Pass => {
                let result = work.await;
                b.observe(started, result.as_ref().err(), false);
                result
            }
            Admission::Probe => {
                // Released however the probe ends (even when its caller is
                // dropped half-way), so the next one can start.
                let _probing = ProbeTurn(b);
                let result = tokio::time::timeout(b.settings.probe_timeout, work)
                    .await
                    .unwrap_or(Err(sqlx::Error::PoolTimedOut));
                b.observe(started, result.as_ref().err(), true);
                result
            }
        }
    }
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn admit(&self) -> Admission {
        if !self.down.load(Ordering::Acquire) {
            return Admission::Pass;
        }
        if self.now_ms() >= self.next_probe_ms.load(Ordering::Acquire)
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Admission::Probe;
        }
        Admission::Reject
    }

    /// Notes how an attempt that began at `started` (ms) ended.
    fn observe(&self, started: u64, error: Option<&sqlx::Error>, probe: bool) {
        let now = self.now_ms();
        match error {
            None => {
                self.last_success_ms.fetch_max(now, Ordering::AcqRel);
                if self.down.swap(false, Ordering::AcqRel) {
                    tracing::info!("PostgreSQL reachable again; database requests resume");
                }
            }
            Some(e) if unreachable(e) => {
                // A timeout while others got connections is a busy pool, not
                // a database that is away.
                let busy = matches!(e, sqlx::Error::PoolTimedOut)
                    && self.last_success_ms.load(Ordering::Acquire) > started;
                if probe || !busy {
                    self.next_probe_ms.store(
                        now.saturating_add(
                            u64::try_from(self.settings.probe_interval.as_millis())
                                .unwrap_or(u64::MAX),
                        ),
                        Ordering::Release,
                    );
                    if !self.down.swap(true, Ordering::AcqRel) {
                        tracing::error!(
                            error = %e,
                            probe_interval_ms = self.settings.probe_interval.as_millis(),
                            "PostgreSQL unreachable; failing database requests fast until a probe connects"
                        );
                    }
                }
            }
            Some(_) => {}
        }
    }
}

/// The one probe under way; ends it when dropped.
struct ProbeTurn<'a>(&'a Breaker);

impl Drop for ProbeTurn<'_> {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
    }
}

/// Errors that mean no connection could be had at all.
fn unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
    )
}

impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Self {
        Self::new(pool)
    }
}

impl std::ops::Deref for Db {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.pool
    }
}
