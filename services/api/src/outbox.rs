//! The transactional outbox and its relay to NATS JetStream.
//!
//! [`enqueue`] writes a change event in the caller's transaction, so it is
//! committed exactly when the change is. [`OutboxRelay`] then publishes the
//! rows in id order (woken by `NOTIFY shortline_outbox`, with a slow poll as a
//! fallback), with `Nats-Msg-Id` = the event ULID, and deletes each row once
//! JetStream has acknowledged it. A crash between the ack and the delete only
//! causes a republish, which the stream's duplicate window drops. NATS being
//! down never fails a write: rows wait here until it is back.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use opentelemetry::metrics::{Counter, Gauge, Histogram};
use shortline_shared::events::{ChangeEnvelope, Subjects};
use shortline_shared::nats::{changes_stream_config, ensure_stream};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

/// The Postgres channel the outbox trigger notifies.
pub const NOTIFY_CHANNEL: &str = "shortline_outbox";

/// Writes one change event to the outbox inside the caller's transaction.
pub async fn enqueue(
    conn: &mut PgConnection,
    subjects: &Subjects,
    event: &ChangeEnvelope,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)")
        .bind(event.event_id.to_string())
        .bind(subjects.change(&event.change))
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publish: {0}")]
    Publish(String),
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    event_id: String,
    subject: String,
    payload: serde_json::Value,
}

/// Publishes outbox rows to JetStream and deletes them after the ack.
pub struct OutboxRelay {
    db: PgPool,
    js: jetstream::Context,
    subjects: Subjects,
    poll: Duration,
    batch_size: i64,
    metrics: RelayMetrics,
}

#[derive(Clone)]
struct RelayMetrics {
    published: Counter<u64>,
    failures: Counter<u64>,
    backlog: Gauge<u64>,
    publish_seconds: Histogram<f64>,
}

impl RelayMetrics {
    fn new() -> Self {
        let meter = shortline_shared::telemetry::meter();
        Self {
            published: meter
                .u64_counter("shortline.outbox.published")
                .with_description("Outbox events published to JetStream and acknowledged")
                .build(),
            failures: meter
                .u64_counter("shortline.outbox.publish.failures")
                .with_description("Outbox publish attempts that failed (rows stay and are retried)")
                .build(),
            backlog: meter
                .u64_gauge("shortline.outbox.backlog")
                .with_description(
                    "Outbox rows waiting to be published, as of the relay's last pass",
                )
                .build(),
            publish_seconds: meter
                .f64_histogram("shortline.outbox.publish.duration")
                .with_unit("s")
                .with_description("Time to publish and get acks for one outbox batch")
                .with_boundaries(shortline_shared::telemetry::SECONDS_BUCKETS.to_vec())
                .build(),
        }
    }
}

impl OutboxRelay {
    pub fn new(db: PgPool, client: async_nats::Client, subjects: Subjects, poll: Duration) -> Self {
        let js = jetstream::new(client);
        Self {
            db,
            js,
            subjects,
            poll,
            batch_size: 256,
            metrics: RelayMetrics::new(),
        }
    }

    /// Runs until `cancel` fires: ensures the stream, then drains the outbox
    /// whenever a commit notifies it (or every `poll`), backing off while NATS
    /// or Postgres is unavailable.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::new();
        // The stream must exist before the first publish; keep trying.
        loop {
            match ensure_stream(&self.js, changes_stream_config(&self.subjects)).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "change stream not ready; retrying");
                    if sleep_or_cancel(backoff.next(), &cancel).await {
                        return;
                    }
                }
            }
        }
        backoff.reset();
        let mut listener = self.listen().await;
        tracing::info!(stream = %self.subjects.changes_stream(), "outbox relay started");
        loop {
            match self.drain().await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay pass failed; will retry");
                    if sleep_or_cancel(backoff.next(), &cancel).await {
                        return;
                    }
                    continue;
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.poll) => {},
                res = notified => {
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "outbox LISTEN connection lost; polling until it is back");
                        listener = self.listen().await;
                    }
                }
            }
        }
        // Last pass so that what was committed before the signal goes out.
        if let Err(e) = self.drain().await {
            tracing::warn!(error = %e, "final outbox pass failed; rows stay for the next start");
        }
        tracing::info!("outbox relay stopped");
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = match PgListener::connect_with(&self.db).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for outbox notifications; polling");
                return None;
            }
        };
        match listener.listen(NOTIFY_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for outbox notifications; polling");
                None
            }
        }
    }

    /// Publishes batches until the outbox is empty.
    pub async fn drain(&self) -> Result<(), RelayError> {
        loop {
            let published = self.publish_batch().await?;
            if published < self.batch_size as usize {
                let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                    .fetch_one(&self.db)
                    .await?;
                self.metrics.backlog.record(backlog.max(0) as u64, &[]);
                return Ok(());
            }
        }
    }

    /// Publishes one batch of rows (locked with `SKIP LOCKED`, so several API
    /// replicas share the work) and deletes the acknowledged ones. Returns
    /// how many rows the batch held.
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        let mut tx = self.db.begin().await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT id, event_id, subject, payload FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        // Send in order on one connection (the stream keeps that order), then
        // collect the acks.
        let mut pending: Vec<(i64, PublishAckFuture)> = Vec::with_capacity(rows.len());
        let mut send_error = None;
        for row in &rows {
            let mut headers = HeaderMap::new();
            headers.insert("Shortline-Event-Type", event_type(&row.payload));
            let message = PublishMessage::build()
                .payload(serde_json::to_vec(&row.payload).unwrap_or_default().into())
                .headers(headers)
                .message_id(&row.event_id);
            match self.js.send_publish(row.subject.clone(), message).await {
                Ok(ack) => pending.push((row.id, ack)),
                Err(e) => {
                    send_error = Some(e.to_string());
                    break;
                }
            }
        }
        let acks = futures::future::join_all(
            pending
                .into_iter()
                .map(|(id, ack)| async move { (id, ack.await) }),
        )
        .await;
        let mut done = Vec::with_capacity(acks.len());
        let mut ack_error = None;
        for (id, result) in acks {
            match result {
                Ok(_) => done.push(id),
                Err(e) => ack_error = Some((id, e.to_string())),
            }
        }
        if !done.is_empty() {
            sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
                .bind(&done)
                .execute(&mut *tx)
                .await?;
        }
        let failure = send_error.or(ack_error.as_ref().map(|(_, e)| e.clone()));
        if let Some(error) = &failure {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2
                 WHERE id = (SELECT min(id) FROM outbox WHERE NOT (id = ANY($1)))",
            )
            .bind(&done)
            .bind(error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.metrics.published.add(done.len() as u64, &[]);
        self.metrics
            .publish_seconds
            .record(started.elapsed().as_secs_f64(), &[]);
        match failure {
            Some(error) => {
                self.metrics.failures.add(1, &[]);
                Err(RelayError::Publish(error))
            }
            None => Ok(rows.len()),
        }
    }
}

fn event_type(payload: &serde_json::Value) -> String {
    payload
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("unknown")
        .to_owned()
}

/// Returns true when cancelled during the sleep.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

/// Exponential backoff from 100 ms to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        d
    }
}
