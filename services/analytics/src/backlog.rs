//! The rollup job: folds `rollup_backlog` into the daily referrer and
//! user-agent breakdowns.
//!
//! Writing those two breakdowns with every click batch was close to half of
//! the consumer's Postgres time (with clicks spread over many links nearly
//! every click is a new row in each), so the consumer only appends one backlog
//! row per newly counted `redirect` event (a click, or an event the write API
//! recorded), in the same statement as the event row and the per-link rollups
//! `link_stats` and `link_stats_hourly`, which stay exact at commit. Every
//! `ANALYTICS_ROLLUP_INTERVAL_MS` this job takes up to
//! `ANALYTICS_ROLLUP_MAX_EVENTS` backlog rows, adds them up and deletes them in
//! one transaction ([`repo::fold_backlog`]), under a Postgres advisory lock so
//! that one replica at a time does it; a row is counted exactly once.
//!
//! While the click consumer is behind (more than a batch of messages waiting)
//! the job defers, so that Postgres spends its time on the event rows, but
//! never longer than `ANALYTICS_ROLLUP_MAX_DEFER_SECS` since the oldest backlog
//! row. On shutdown it runs once more, after the consumer has stopped, without
//! deferring. The breakdowns therefore trail the event rows by about the
//! interval, and by at most the deferral limit while a backlog of clicks is
//! being drained; totals, the last redirect and the hourly series never trail.

use std::time::{Duration, Instant};

use opentelemetry::metrics::{Counter, Gauge, Histogram};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::consumer::ClickConsumer;
use crate::repo;

/// Most folds in one tick (each of up to `max_events` rows), so a tick ends
/// even when the backlog grows as fast as it is folded.
const MAX_FOLDS_PER_TICK: usize = 16;

/// Longest the last fold at shutdown may take. A large backlog (a drain cut
/// short) takes seconds per `max_events` rows; past this the transaction in
/// hand is abandoned (rolled back, nothing lost: its rows stay for the next
/// replica) so the service stops well inside its termination grace period.
const SHUTDOWN_FOLD_BUDGET: Duration = Duration::from_secs(5);

/// Rollup job settings (from the service config).
#[derive(Debug, Clone)]
pub struct RollupSettings {
    pub interval: Duration,
    pub max_events: i64,
    pub max_defer: Duration,
}

/// The rollup job's instruments.
#[derive(Clone)]
pub struct RollupMetrics {
    runs: Counter<u64>,
    rows: Counter<u64>,
    duration: Histogram<f64>,
    failures: Counter<u64>,
    oldest_age: Gauge<f64>,
}

impl RollupMetrics {
    pub fn new() -> Self {
        let meter = shortline_shared::telemetry::meter();
        let metrics = Self {
            runs: meter
                .u64_counter("shortline.analytics.rollup.runs")
                .with_description(
                    "Rollup transactions that folded backlog rows into the breakdowns",
                )
                .build(),
            rows: meter
                .u64_counter("shortline.analytics.rollup.rows")
                .with_description("Backlog rows folded into the breakdowns")
                .build(),
            duration: meter
                .f64_histogram("shortline.analytics.rollup.duration")
                .with_unit("s")
                .with_description("Time of one rollup transaction")
                .with_boundaries(shortline_shared::telemetry::SECONDS_BUCKETS.to_vec())
                .build(),
            failures: meter
                .u64_counter("shortline.analytics.rollup.failures")
                .with_description("Rollup attempts that failed (the rows stay for the next one)")
                .build(),
            oldest_age: meter
                .f64_gauge("shortline.analytics.rollup.backlog.oldest_age")
                .with_unit("s")
                .with_description(
                    "Age of the oldest backlog row not yet in the breakdowns (0 when empty)",
                )
                .build(),
        };
        // Series exist from the first scrape (0, not absent).
        for counter in [&metrics.runs, &metrics.rows, &metrics.failures] {
            counter.add(0, &[]);
        }
        metrics.oldest_age.record(0.0, &[]);
        metrics
    }
}

impl Default for RollupMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What one tick of the job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// The backlog was empty.
    Empty,
    /// The consumer is behind and the oldest row is younger than the limit.
    Deferred,
    /// Another job (another replica) held the lock.
    Locked,
    /// This many rows were folded.
    Folded(u64),
}

/// The job: one per service instance.
#[derive(Clone)]
pub struct RollupJob {
    db: PgPool,
    /// Asked whether it is behind before each fold (`None`: never defer).
    consumer: Option<ClickConsumer>,
    settings: RollupSettings,
    metrics: RollupMetrics,
}

impl RollupJob {
    pub fn new(
        db: PgPool,
        consumer: Option<ClickConsumer>,
        settings: RollupSettings,
        metrics: RollupMetrics,
    ) -> Self {
        Self {
            db,
            consumer,
            settings,
            metrics,
        }
    }

    /// Ticks every interval until `cancel` fires, then folds once more
    /// without deferring, for at most `SHUTDOWN_FOLD_BUDGET` (cancel it after
    /// the consumer has stopped).
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.settings.interval) => {},
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "rollup failed; the backlog waits for the next run");
            }
        }
        match tokio::time::timeout(SHUTDOWN_FOLD_BUDGET, self.fold()).await {
            Ok(Ok(tick)) => tracing::info!(?tick, "rollup job stopped after a last run"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "last rollup failed; the backlog waits for the next start")
            }
            Err(_) => tracing::warn!(
                budget_s = SHUTDOWN_FOLD_BUDGET.as_secs(),
                "last rollup cut short; the rest of the backlog waits for the next start"
            ),
        }
    }

    /// One scheduled run: updates the backlog-age gauge, then folds unless the
    /// consumer is behind and the oldest row is younger than the limit.
    pub async fn tick(&self) -> Result<Tick, sqlx::Error> {
        let Some(age) = self.oldest_age().await? else {
            return Ok(Tick::Empty);
        };
        if age < self.settings.max_defer.as_secs_f64() && self.consumer_behind().await {
            tracing::debug!(oldest_age_s = age, "consumer behind; rollup deferred");
            return Ok(Tick::Deferred);
        }
        self.fold().await
    }

    /// Folds the backlog now (up to `MAX_FOLDS_PER_TICK` transactions of
    /// `max_events` rows), never deferring.
    pub async fn fold(&self) -> Result<Tick, sqlx::Error> {
        let mut total = 0;
        for _ in 0..MAX_FOLDS_PER_TICK {
            let started = Instant::now();
            let folded = match repo::fold_backlog(&self.db, self.settings.max_events).await {
                Ok(Some(n)) => n,
                Ok(None) => {
                    return Ok(if total > 0 {
                        Tick::Folded(total)
                    } else {
                        Tick::Locked
                    });
                }
                Err(e) => {
                    self.metrics.failures.add(1, &[]);
                    return Err(e);
                }
            };
            if folded > 0 {
                self.metrics.runs.add(1, &[]);
                self.metrics.rows.add(folded, &[]);
                self.metrics
                    .duration
                    .record(started.elapsed().as_secs_f64(), &[]);
                tracing::debug!(
                    rows = folded,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "backlog folded into the breakdowns"
                );
            }
            total += folded;
            if folded < self.settings.max_events as u64 {
                break;
            }
        }
        self.oldest_age().await?;
        Ok(if total > 0 {
            Tick::Folded(total)
        } else {
            Tick::Empty
        })
    }

    /// Reads the oldest backlog row's age into the gauge.
    async fn oldest_age(&self) -> Result<Option<f64>, sqlx::Error> {
        let age = repo::oldest_backlog_age(&self.db).await?;
        self.metrics.oldest_age.record(age.unwrap_or(0.0), &[]);
        Ok(age)
    }

    /// Whether the consumer is behind (unreadable: not behind, so the
    /// breakdowns never wait on a NATS problem).
    async fn consumer_behind(&self) -> bool {
        let Some(consumer) = &self.consumer else {
            return false;
        };
        match consumer.is_behind().await {
            Ok(behind) => behind,
            Err(e) => {
                tracing::debug!(error = %e, "consumer lag not readable; not deferring the rollup");
                false
            }
        }
    }
}
