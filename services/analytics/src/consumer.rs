//! The click consumer: a durable JetStream pull consumer shared by every
//! replica, writing click batches into `events` and the rollups.
//!
//! Two kinds of batch arrive on the click stream: the redirect service's
//! clicks (their event rows are inserted here) and, one per message,
//! `redirect` events a client recorded through the write API's `POST
//! /events` (`"recorded": true`: the API wrote the row; only the rollups are
//! added here, once). See `shortline_shared::events::ClickBatch`.
//!
//! Messages are taken as they come; once one has arrived the batch waits at
//! most `ANALYTICS_BATCH_WAIT_MS` for more (bounded by message and click
//! counts), so a lone click is written at once and a busy stream is written
//! in large statements. A batch is written in one statement
//! ([`repo::store_clicks`]) and its messages are acked only after the commit;
//! a crash before the ack means a redelivery, which inserts nothing twice.
//!
//! Batches are written by `ANALYTICS_WRITERS` tasks at once (the next batch
//! is gathered while others are written).
//!
//! A message that cannot be decoded is negatively acknowledged and, on its
//! `ANALYTICS_MAX_DELIVER`th delivery, copied to the dead-letter stream and
//! terminated; the rest of the stream keeps flowing. A database failure naks
//! the batch (redelivered later, never dropped: the consumer itself has no
//! delivery limit). On shutdown the batch in hand is written and acked first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, Message, consumer};
use chrono::Utc;
use futures::StreamExt;
use opentelemetry::metrics::{Counter, Gauge, Histogram};
use shortline_shared::events::{CLICK_EVENT_VERSION, Click, ClickBatch, Subjects};
use shortline_shared::nats::{clicks_stream_config, dead_letter_stream_config, ensure_stream};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::repo;

/// Consumer settings (from the service config).
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub durable: String,
    pub batch_messages: usize,
    pub batch_clicks: usize,
    pub batch_wait: Duration,
    pub max_deliver: i64,
    pub ack_wait: Duration,
    /// Batches written concurrently (each on its own connection).
    pub writers: usize,
}

/// Every instrument of the consumer.
#[derive(Clone)]
pub struct ConsumerMetrics {
    batch_size: Histogram<u64>,
    rows_written: Counter<u64>,
    duplicates: Counter<u64>,
    write_failures: Counter<u64>,
    write_seconds: Histogram<f64>,
    undecodable: Counter<u64>,
    dead_letters: Counter<u64>,
    end_to_end_seconds: Histogram<f64>,
    pending: Gauge<u64>,
    ack_pending: Gauge<u64>,
    oldest_unacked_seconds: Gauge<f64>,
}

impl ConsumerMetrics {
    pub fn new() -> Self {
        let meter = shortline_shared::telemetry::meter();
        let seconds = shortline_shared::telemetry::SECONDS_BUCKETS.to_vec();
        let metrics = Self {
            batch_size: meter
                .u64_histogram("shortline.analytics.batch.size")
                .with_description("Clicks per database write")
                .with_boundaries(vec![
                    1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
                ])
                .build(),
            rows_written: meter
                .u64_counter("shortline.analytics.rows.written")
                .with_description("Redirect event rows inserted")
                .build(),
            duplicates: meter
                .u64_counter("shortline.analytics.duplicates")
                .with_description("Clicks already stored (redelivered or published twice), skipped")
                .build(),
            write_failures: meter
                .u64_counter("shortline.analytics.write.failures")
                .with_description("Batches whose database write failed (redelivered later)")
                .build(),
            write_seconds: meter
                .f64_histogram("shortline.analytics.write.duration")
                .with_unit("s")
                .with_description("Time to write one batch of clicks")
                .with_boundaries(seconds.clone())
                .build(),
            undecodable: meter
                .u64_counter("shortline.analytics.undecodable")
                .with_description("Deliveries of messages that could not be decoded")
                .build(),
            dead_letters: meter
                .u64_counter("shortline.analytics.dead_letters")
                .with_description("Messages moved to the dead-letter stream")
                .build(),
            end_to_end_seconds: meter
                .f64_histogram("shortline.analytics.end_to_end.duration")
                .with_unit("s")
                .with_description("From the redirect to its event row being committed")
                .with_boundaries(seconds)
                .build(),
            pending: meter
                .u64_gauge("shortline.analytics.consumer.pending")
                .with_description("Click messages not yet delivered to the consumer")
                .build(),
            ack_pending: meter
                .u64_gauge("shortline.analytics.consumer.ack_pending")
                .with_description("Click messages delivered but not yet acknowledged")
                .build(),
            oldest_unacked_seconds: meter
                .f64_gauge("shortline.analytics.consumer.oldest_unacked_age")
                .with_unit("s")
                .with_description(
                    "Age of the oldest click message not yet acknowledged (0 when caught up)",
                )
                .build(),
        };
        // Series exist from the first scrape (0, not absent).
        for counter in [
            &metrics.rows_written,
            &metrics.duplicates,
            &metrics.write_failures,
            &metrics.undecodable,
            &metrics.dead_letters,
        ] {
            counter.add(0, &[]);
        }
        metrics
    }
}

impl Default for ConsumerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a message was not usable.
#[derive(Debug, thiserror::Error)]
pub enum Undecodable {
    #[error("not a click batch: {0}")]
    Json(#[from] serde_json::Error),
    #[error("click batch version {0} is not understood (this build reads {CLICK_EVENT_VERSION})")]
    Version(u32),
}

/// Decodes one message's payload.
pub fn decode(payload: &[u8]) -> Result<ClickBatch, Undecodable> {
    let batch: ClickBatch = serde_json::from_slice(payload)?;
    if batch.version != CLICK_EVENT_VERSION {
        return Err(Undecodable::Version(batch.version));
    }
    Ok(batch)
}

/// The consumer task.
#[derive(Clone)]
pub struct ClickConsumer {
    db: sqlx::PgPool,
    js: jetstream::Context,
    subjects: Subjects,
    settings: ConsumerSettings,
    metrics: ConsumerMetrics,
}

impl ClickConsumer {
    pub fn new(
        db: sqlx::PgPool,
        client: async_nats::Client,
        subjects: Subjects,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
    ) -> Self {
        Self {
            db,
            js: jetstream::new(client),
            subjects,
            settings,
            metrics,
        }
    }

    /// Consumes until `cancel` fires (finishing the batch in hand), re-creating
    /// the subscription after any failure, with backoff.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.consume(&cancel).await {
                Ok(()) => break,
                Err(e) => tracing::warn!(error = %e, "click consumer interrupted; restarting it"),
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(backoff) => {},
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        tracing::info!("click consumer stopped");
    }

    async fn consumer(&self) -> Result<consumer::PullConsumer, async_nats::Error> {
        ensure_stream(&self.js, dead_letter_stream_config(&self.subjects)).await?;
        ensure_stream(&self.js, clicks_stream_config(&self.subjects)).await?;
        let stream = self.js.get_stream(self.subjects.clicks_stream()).await?;
        let consumer = stream
            .get_or_create_consumer(
                &self.settings.durable,
                consumer::pull::Config {
                    durable_name: Some(self.settings.durable.clone()),
                    description: Some("analytics: clicks into the event log".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.settings.ack_wait,
                    // No server-side limit: a database outage must never drop
                    // clicks. Undecodable messages are bounded by this code.
                    max_deliver: -1,
                    max_ack_pending: 20_000,
                    filter_subject: self.subjects.clicks(),
                    ..Default::default()
                },
            )
            .await?;
        Ok(consumer)
    }

    /// `Ok` when cancelled; `Err` when the subscription broke.
    async fn consume(&self, cancel: &CancellationToken) -> Result<(), async_nats::Error> {
        let consumer = self.consumer().await?;
        tracing::info!(consumer = %self.settings.durable, stream = %self.subjects.clicks_stream(), "consuming clicks");
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.settings.batch_messages.max(1))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?;
        // Batches are gathered here and written by `writers` tasks, so the
        // next batch is fetched while the last one is written, and Postgres
        // can write several at once.
        let (tx, rx) = mpsc::channel::<Vec<Message>>(1);
        let rx = Arc::new(Mutex::new(rx));
        let mut writers = JoinSet::new();
        for _ in 0..self.settings.writers.max(1) {
            let (writer, rx) = (self.clone(), rx.clone());
            writers.spawn(async move { writer.write_batches(rx).await });
        }
        let gathered = self.gather(&mut messages, &tx, cancel).await;
        // Writers finish every batch already handed over, then stop.
        drop(tx);
        while writers.join_next().await.is_some() {}
        gathered
    }

    /// Hands batches to the writers until cancelled (`Ok`) or the
    /// subscription breaks (`Err`).
    async fn gather(
        &self,
        messages: &mut consumer::pull::Stream,
        tx: &mpsc::Sender<Vec<Message>>,
        cancel: &CancellationToken,
    ) -> Result<(), async_nats::Error> {
        loop {
            let first = tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(()),
                m = messages.next() => m,
            };
            let first = first.ok_or("click message stream ended")??;
            let mut batch = vec![first];
            let mut broken = None;
            let deadline = tokio::time::Instant::now() + self.settings.batch_wait;
            while batch.len() < self.settings.batch_messages {
                match tokio::time::timeout_at(deadline, messages.next()).await {
                    Ok(Some(Ok(m))) => batch.push(m),
                    Ok(Some(Err(e))) => {
                        broken = Some(e);
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            // Not cancellable: the batch in hand goes to a writer.
            tx.send(batch).await.map_err(|_| "click writers stopped")?;
            if let Some(e) = broken {
                return Err(e.into());
            }
        }
    }

    /// One writer: takes batches until the gatherer stops.
    async fn write_batches(self, rx: Arc<Mutex<mpsc::Receiver<Vec<Message>>>>) {
        loop {
            let batch = rx.lock().await.recv().await;
            let Some(batch) = batch else { return };
            if let Err(e) = self.handle(batch).await {
                // Already naked (redelivered later); give Postgres or NATS a moment.
                tracing::warn!(error = %e, "click batch failed; backing off");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Writes one batch and acks it (or naks it on a database failure), in a
    /// span that continues the first message's trace and links the others'.
    pub async fn handle(&self, batch: Vec<Message>) -> Result<(), async_nats::Error> {
        let span = tracing::info_span!(
            "clicks.store",
            otel.kind = "consumer",
            messages = batch.len()
        );
        if shortline_shared::telemetry::tracing_enabled() {
            for (i, headers) in batch.iter().filter_map(|m| m.headers.as_ref()).enumerate() {
                let carrier = shortline_shared::nats::TraceHeaders(headers);
                if i == 0 {
                    shortline_shared::telemetry::set_parent_from(&span, &carrier);
                } else {
                    shortline_shared::telemetry::add_link_from(&span, &carrier);
                }
            }
        }
        self.write_and_ack(batch).instrument(span).await
    }

    async fn write_and_ack(&self, batch: Vec<Message>) -> Result<(), async_nats::Error> {
        let mut clicks: Vec<Click> = Vec::new();
        // `redirect` events the write API recorded (rows present already).
        let mut recorded: Vec<Click> = Vec::new();
        let mut good = Vec::with_capacity(batch.len());
        for message in batch {
            match decode(&message.payload) {
                Ok(b) if b.recorded => {
                    recorded.extend(b.clicks);
                    good.push(message);
                }
                Ok(b) => {
                    clicks.extend(b.clicks);
                    good.push(message);
                }
                Err(reason) => self.undecodable(message, &reason).await?,
            }
        }
        let started = Instant::now();
        let mut stored = repo::Stored::default();
        // Recorded events counted now (their rows are not this consumer's).
        let mut folded = 0;
        let writes = clicks
            .chunks(self.settings.batch_clicks.max(1))
            .map(|chunk| (chunk, repo::Source::Redirects))
            .chain(
                recorded
                    .chunks(self.settings.batch_clicks.max(1))
                    .map(|chunk| (chunk, repo::Source::Recorded)),
            );
        for (chunk, source) in writes {
            match store_with_retry(&self.db, chunk, source).await {
                Ok(s) => {
                    match source {
                        repo::Source::Redirects => stored.inserted += s.inserted,
                        repo::Source::Recorded => folded += s.inserted,
                    }
                    stored.duplicates += s.duplicates;
                }
                Err(e) => {
                    self.metrics.write_failures.add(1, &[]);
                    tracing::error!(error = %e, clicks = clicks.len() + recorded.len(), "click batch not written; it will be redelivered");
                    for m in &good {
                        let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                    }
                    return Err(e.into());
                }
            }
        }
        clicks.append(&mut recorded);
        let committed = Utc::now();
        for m in &good {
            m.ack().await?;
        }
        if !clicks.is_empty() {
            self.metrics.batch_size.record(clicks.len() as u64, &[]);
            self.metrics
                .write_seconds
                .record(started.elapsed().as_secs_f64(), &[]);
            self.metrics.rows_written.add(stored.inserted, &[]);
            self.metrics.duplicates.add(stored.duplicates, &[]);
            for click in &clicks {
                let lag = (committed - click.occurred_at).to_std().unwrap_or_default();
                self.metrics
                    .end_to_end_seconds
                    .record(lag.as_secs_f64(), &[]);
            }
            tracing::debug!(
                clicks = clicks.len(),
                inserted = stored.inserted,
                recorded = folded,
                duplicates = stored.duplicates,
                "clicks written"
            );
        }
        Ok(())
    }

    /// Naks an undecodable message, or dead-letters it on its last allowed
    /// delivery.
    async fn undecodable(
        &self,
        message: Message,
        reason: &Undecodable,
    ) -> Result<(), async_nats::Error> {
        self.metrics.undecodable.add(1, &[]);
        let (delivered, sequence) = message
            .info()
            .map(|i| (i.delivered, i.stream_sequence))
            .unwrap_or((1, 0));
        if delivered < self.settings.max_deliver {
            tracing::warn!(%reason, delivered, sequence, "undecodable click message; will retry");
            message
                .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
                .await?;
            return Ok(());
        }
        let mut headers = HeaderMap::new();
        headers.insert("Shortline-Dead-Letter-Reason", reason.to_string().as_str());
        headers.insert("Shortline-Original-Subject", message.subject.as_str());
        headers.insert("Shortline-Original-Sequence", sequence.to_string().as_str());
        self.js
            .publish_with_headers(
                self.subjects.dead_letter_clicks(),
                headers,
                message.payload.clone(),
            )
            .await?
            .await?;
        message.ack_with(AckKind::Term).await?;
        self.metrics.dead_letters.add(1, &[]);
        tracing::error!(%reason, delivered, sequence, "click message dead-lettered");
        Ok(())
    }

    /// Records consumer lag every `every` until cancelled.
    pub async fn watch_lag(self, every: Duration, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.record_lag().await {
                tracing::debug!(error = %e, "consumer lag not readable");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {},
            }
        }
    }

    /// Whether more than one batch of messages waits for this consumer
    /// (undelivered or unacknowledged): while it does, the rollup job leaves
    /// Postgres to the event rows.
    pub async fn is_behind(&self) -> Result<bool, async_nats::Error> {
        let stream = self
            .js
            .get_stream_no_info(self.subjects.clicks_stream())
            .await?;
        let info = stream.consumer_info(&self.settings.durable).await?;
        let waiting = info.num_pending + info.num_ack_pending as u64;
        Ok(waiting > self.settings.batch_messages as u64)
    }

    async fn record_lag(&self) -> Result<(), async_nats::Error> {
        let stream = self.js.get_stream(self.subjects.clicks_stream()).await?;
        let mut consumer: consumer::PullConsumer =
            stream.get_consumer(&self.settings.durable).await?;
        let info = consumer.info().await?.clone();
        self.metrics.pending.record(info.num_pending, &[]);
        self.metrics
            .ack_pending
            .record(info.num_ack_pending as u64, &[]);
        let mut age = 0.0;
        if info.num_pending > 0 || info.num_ack_pending > 0 {
            let oldest = info.ack_floor.stream_sequence + 1;
            if let Ok(message) = stream.get_raw_message(oldest).await {
                let sent_nanos = message.time.unix_timestamp_nanos();
                let now_nanos = i128::from(Utc::now().timestamp_nanos_opt().unwrap_or(0));
                age = ((now_nanos - sent_nanos).max(0) as f64) / 1e9;
            }
        }
        self.metrics.oldest_unacked_seconds.record(age, &[]);
        Ok(())
    }
}

/// Retries a write that lost a deadlock or serialization race with another
/// replica (both are safe to retry: nothing was committed).
async fn store_with_retry(
    db: &sqlx::PgPool,
    clicks: &[Click],
    source: repo::Source,
) -> Result<repo::Stored, sqlx::Error> {
    let mut attempt = 0;
    loop {
        match repo::store(db, clicks, source).await {
            Err(sqlx::Error::Database(e))
                if attempt < 3 && matches!(e.code().as_deref(), Some("40P01" | "40001")) =>
            {
                attempt += 1;
                tracing::debug!(attempt, "click write lost a lock race; retrying");
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_known_versions_only() {
        let batch = ClickBatch::new(vec![]);
        let json = serde_json::to_vec(&batch).expect("json");
        assert!(decode(&json).is_ok());
        let mut v: serde_json::Value = serde_json::from_slice(&json).expect("value");
        v["version"] = 99.into();
        assert!(matches!(
            decode(v.to_string().as_bytes()),
            Err(Undecodable::Version(99))
        ));
        assert!(matches!(decode(b"not json"), Err(Undecodable::Json(_))));
    }
}
