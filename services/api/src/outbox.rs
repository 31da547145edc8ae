//! The transactional outbox and its relay to NATS JetStream.
//!
//! [`enqueue`] writes a change event in the caller's transaction, so it is
//! committed exactly when the change is ([`enqueue_recorded_click`] does the
//! same for a `redirect` event recorded through `POST /events`, which goes to
//! the analytics service on the click stream). [`OutboxRelay`] then publishes the
//! rows in id order (woken by `NOTIFY shortline_outbox`, with a slow poll as a
//! fallback), with `Nats-Msg-Id` = the event ULID, and deletes each row once
//! JetStream has acknowledged it. A crash between the ack and the delete only
//! causes a republish, which the stream's duplicate window drops. NATS being
//! down never fails a write: rows wait here until it is back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use futures::StreamExt;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};
use shortline_shared::cache::{LINK_TOMBSTONE, LINK_TOMBSTONE_TTL, Valkey, link_key};
use shortline_shared::events::{ChangeEnvelope, Click, ClickBatch, Subjects};
use shortline_shared::nats::{changes_stream_config, clicks_stream_config, ensure_stream};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

/// The Postgres channel the outbox trigger notifies.
pub const NOTIFY_CHANNEL: &str = "shortline_outbox";

/// A change this transaction wrote to the outbox, kept so that it can be
/// published right after the commit ([`Propagator`]).
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub event_id: String,
    pub subject: String,
    pub event_type: &'static str,
    pub payload: bytes::Bytes,
    /// W3C trace context of the request that made the change (empty when
    /// tracing is off), sent as NATS headers.
    pub trace: HashMap<String, String>,
    /// The cache key of a link change (its code, `<host>/<code>` on a
    /// custom domain): the Valkey key the API tombstones.
    pub short_code: Option<String>,
}

impl Enqueued {
    /// Whether redirect replicas must see this change before the API answers.
    fn is_link_change(&self) -> bool {
        self.event_type.starts_with("link.")
    }
}

/// Writes one change event to the outbox inside the caller's transaction,
/// with the current span's trace context in its `headers`.
pub async fn enqueue(
    conn: &mut PgConnection,
    subjects: &Subjects,
    event: &ChangeEnvelope,
) -> Result<Enqueued, sqlx::Error> {
    insert(
        conn,
        event,
        event.event_id.to_string(),
        subjects.change(&event.change),
        event.change.kind(),
        event
            .change
            .link()
            .map(shortline_shared::events::LinkSnapshot::cache_key),
    )
    .await
}

/// Writes a `redirect` event the caller's transaction recorded to the
/// outbox, as a click batch for the analytics service
/// ([`ClickBatch::recorded`]: the event row exists, only its rollups are to
/// be added), on the click subject under the event's own id.
pub async fn enqueue_recorded_click(
    conn: &mut PgConnection,
    subjects: &Subjects,
    click: Click,
) -> Result<Enqueued, sqlx::Error> {
    let batch = ClickBatch::recorded(click);
    insert(
        conn,
        &batch,
        batch.batch_id.to_string(),
        subjects.clicks(),
        RECORDED_CLICK,
        None,
    )
    .await
}

/// The `Shortline-Event-Type` of a recorded click (click batches have no
/// `type` field).
const RECORDED_CLICK: &str = "click.recorded";

/// Inserts one outbox row, with the current span's trace context.
async fn insert(
    conn: &mut PgConnection,
    message: &impl serde::Serialize,
    event_id: String,
    subject: String,
    event_type: &'static str,
    short_code: Option<String>,
) -> Result<Enqueued, sqlx::Error> {
    let payload = serde_json::to_value(message).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let enqueued = Enqueued {
        event_id,
        subject,
        event_type,
        payload: serde_json::to_vec(&payload)
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?
            .into(),
        trace: shortline_shared::telemetry::current_trace_headers(),
        short_code,
    };
    sqlx::query("INSERT INTO outbox (event_id, subject, payload, headers) VALUES ($1, $2, $3, $4)")
        .bind(&enqueued.event_id)
        .bind(&enqueued.subject)
        .bind(payload)
        .bind(sqlx::types::Json(&enqueued.trace))
        .execute(conn)
        .await?;
    Ok(enqueued)
}

/// A JetStream message for one change: `Nats-Msg-Id` is the event ULID, so
/// the relay and the fast path can both send it and the stream keeps one.
fn change_message(
    event_id: &str,
    event_type: &str,
    payload: bytes::Bytes,
    trace: &HashMap<String, String>,
) -> PublishMessage {
    let mut headers = HeaderMap::new();
    headers.insert("Shortline-Event-Type", event_type);
    for (name, value) in trace {
        headers.insert(name.as_str(), value.as_str());
    }
    PublishMessage::build()
        .payload(payload)
        .headers(headers)
        .message_id(event_id)
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
    headers: sqlx::types::Json<HashMap<String, String>>,
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
        let metrics = Self {
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
        };
        // Series exist from the first scrape (0, not absent).
        metrics.published.add(0, &[]);
        metrics.failures.add(0, &[]);
        metrics
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
        // The streams must exist before the first publish; keep trying.
        // (Changes, and clicks for the `redirect` events of `POST /events`.)
        loop {
            let ensured = match ensure_stream(&self.js, changes_stream_config(&self.subjects)).await
            {
                Ok(_) => ensure_stream(&self.js, clicks_stream_config(&self.subjects)).await,
                Err(e) => Err(e),
            };
            match ensured {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "change or click stream not ready; retrying");
                    let _ = self.record_backlog().await;
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
                    // The backlog keeps growing while NATS is away: show it.
                    let _ = self.record_backlog().await;
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
                return self.record_backlog().await;
            }
        }
    }

    /// Counts the rows waiting and records the backlog gauge.
    async fn record_backlog(&self) -> Result<(), RelayError> {
        let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.db)
            .await?;
        self.metrics.backlog.record(backlog.max(0) as u64, &[]);
        Ok(())
    }

    /// Publishes one batch of rows (locked with `SKIP LOCKED`, so several API
    /// replicas share the work) and deletes the acknowledged ones. Returns
    /// how many rows the batch held.
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        let mut tx = self.db.begin().await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT id, event_id, subject, payload, headers FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
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
            let message = change_message(
                &row.event_id,
                &event_type(&row.payload),
                serde_json::to_vec(&row.payload).unwrap_or_default().into(),
                &row.headers,
            );
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

/// Publishes a transaction's changes right after its commit, instead of
/// waiting for the relay, and for link changes waits until every redirect
/// replica has dropped the link from its caches, so that the API's answer
/// is never followed by a stale redirect.
///
/// Before that, it replaces each changed link's Valkey entry with a
/// tombstone itself, so that a takedown reaches the shared cache even while
/// NATS is away (redirect replicas that have lost the change stream stop
/// trusting their in-process cache after a second and read Valkey).
///
/// Everything here is best effort within `INVALIDATION_WAIT_MS`: when NATS is
/// down or a replica is slow, the request answers anyway (the rows stay in
/// the outbox for the relay; the miss is counted and logged, and the answer
/// says so in `Shortline-Propagation: unconfirmed`) and caches converge when
/// the events arrive.
#[derive(Clone)]
pub struct Propagator {
    client: Option<async_nats::Client>,
    js: Option<jetstream::Context>,
    stream: String,
    wait: Duration,
    tombstones: Option<Tombstones>,
    metrics: PropagateMetrics,
}

/// Where the API writes link tombstones (the redirect's L2).
#[derive(Clone)]
struct Tombstones {
    valkey: Valkey,
    prefix: String,
}

/// Longest wait for one tombstone write.
const TOMBSTONE_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Clone)]
struct PropagateMetrics {
    wait_seconds: Histogram<f64>,
}

/// How a propagation ended (the `outcome` label of
/// `shortline_invalidation_wait_duration_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Published, and every redirect replica acknowledged the link changes.
    Acknowledged,
    /// Published; nothing to wait for (no link change).
    Published,
    /// Not finished within the wait; the relay takes over.
    TimedOut,
    /// NATS unavailable or the publish failed; the relay takes over.
    Failed,
    /// No NATS configured, or waiting disabled.
    Skipped,
    /// Left to the outbox relay: nothing waits for this change (a user's
    /// creation or edit).
    Relayed,
}

impl Propagation {
    /// Whether every redirect replica confirmed the change before the
    /// answer (the `Shortline-Propagation` response header).
    pub fn header_value(self) -> &'static str {
        match self {
            Propagation::Acknowledged | Propagation::Published => "acknowledged",
            Propagation::TimedOut
            | Propagation::Failed
            | Propagation::Skipped
            | Propagation::Relayed => "unconfirmed",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Propagation::Acknowledged => "acknowledged",
            Propagation::Published => "published",
            Propagation::TimedOut => "timeout",
            Propagation::Failed => "failed",
            Propagation::Skipped => "skipped",
            Propagation::Relayed => "relayed",
        }
    }
}

impl Propagator {
    /// `wait` zero disables the fast path (the relay alone publishes).
    /// With `valkey`, link changes are also tombstoned there under
    /// `<key_prefix>:link:<code>` (the redirect's keys).
    pub fn new(
        client: Option<async_nats::Client>,
        subjects: &Subjects,
        wait: Duration,
        valkey: Option<(Valkey, &str)>,
    ) -> Self {
        let meter = shortline_shared::telemetry::meter();
        Self {
            js: client.clone().map(jetstream::new),
            client,
            stream: subjects.changes_stream(),
            wait,
            tombstones: valkey.map(|(valkey, prefix)| Tombstones {
                valkey,
                prefix: prefix.to_owned(),
            }),
            metrics: PropagateMetrics {
                wait_seconds: meter
                    .f64_histogram("shortline.invalidation.wait.duration")
                    .with_unit("s")
                    .with_description(
                        "Time a write waited for its change to be published and applied by every redirect replica, by outcome",
                    )
                    .with_boundaries(shortline_shared::telemetry::SECONDS_BUCKETS.to_vec())
                    .build(),
            },
        }
    }

    /// Tombstones the changed links in Valkey, publishes `changes`
    /// (committed already) and waits as described above. A link change that
    /// not every redirect replica confirmed is logged.
    pub async fn propagate(&self, db: &PgPool, changes: Vec<Enqueued>) -> Propagation {
        if changes.is_empty() {
            return Propagation::Published;
        }
        let codes: Vec<&str> = changes
            .iter()
            .filter_map(|c| c.short_code.as_deref())
            .collect();
        let tombstoned = self.tombstone(&codes).await;
        let outcome = self.publish(db, &changes).await;
        if !codes.is_empty() && matches!(outcome, Propagation::TimedOut | Propagation::Failed) {
            tracing::warn!(
                short_codes = ?codes,
                outcome = outcome.as_str(),
                tombstoned,
                "link change not confirmed by every redirect replica; Valkey {} and replicas without the change stream re-read within a second",
                if tombstoned { "holds its tombstone" } else { "could not take its tombstone" },
            );
        }
        outcome
    }

    /// Writes the tombstones of `codes`; whether all were written.
    async fn tombstone(&self, codes: &[&str]) -> bool {
        let Some(t) = &self.tombstones else {
            return codes.is_empty();
        };
        let writes = codes.iter().map(|code| async move {
            t.valkey
                .set(
                    &link_key(&t.prefix, code),
                    LINK_TOMBSTONE,
                    LINK_TOMBSTONE_TTL,
                    TOMBSTONE_TIMEOUT,
                )
                .await
        });
        let mut all = true;
        for (code, result) in codes.iter().zip(futures::future::join_all(writes).await) {
            if let Err(e) = result {
                all = false;
                tracing::warn!(short_code = code, error = %e, "could not tombstone a changed link in Valkey");
            }
        }
        all
    }

    async fn publish(&self, db: &PgPool, changes: &[Enqueued]) -> Propagation {
        let (Some(client), Some(js)) = (&self.client, &self.js) else {
            return Propagation::Skipped;
        };
        if changes.is_empty() || self.wait.is_zero() {
            return Propagation::Skipped;
        }
        let started = Instant::now();
        let outcome = if shortline_shared::nats::is_connected(client) {
            match tokio::time::timeout(self.wait, self.publish_and_wait(db, js, changes)).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "change not propagated at once; the outbox relay will publish it");
                    Propagation::Failed
                }
                Err(_) => {
                    tracing::warn!(
                        wait_ms = self.wait.as_millis() as u64,
                        "redirect replicas did not acknowledge a change in time; caches may lag"
                    );
                    Propagation::TimedOut
                }
            }
        } else {
            Propagation::Failed
        };
        self.metrics.wait_seconds.record(
            started.elapsed().as_secs_f64(),
            &[KeyValue::new("outcome", outcome.as_str())],
        );
        outcome
    }

    async fn publish_and_wait(
        &self,
        db: &PgPool,
        js: &jetstream::Context,
        changes: &[Enqueued],
    ) -> Result<Propagation, async_nats::Error> {
        let mut acks = Vec::with_capacity(changes.len());
        for change in changes {
            let message = change_message(
                &change.event_id,
                change.event_type,
                change.payload.clone(),
                &change.trace,
            );
            acks.push(js.send_publish(change.subject.clone(), message).await?);
        }
        let mut last_link_sequence = None;
        for (change, ack) in changes.iter().zip(acks) {
            // A duplicate (the relay was faster) acks with the original
            // sequence, which is just as good.
            let ack = ack.await?;
            if change.is_link_change() {
                last_link_sequence = Some(ack.sequence);
            }
        }
        let ids: Vec<&str> = changes.iter().map(|c| c.event_id.as_str()).collect();
        sqlx::query("DELETE FROM outbox WHERE event_id = ANY($1)")
            .bind(&ids)
            .execute(db)
            .await?;
        let Some(sequence) = last_link_sequence else {
            return Ok(Propagation::Published);
        };
        self.wait_for_redirect_replicas(js, sequence).await?;
        Ok(Propagation::Acknowledged)
    }

    /// Polls the change stream's consumers until every redirect replica's
    /// consumer has acknowledged `sequence` (or has nothing left to do).
    async fn wait_for_redirect_replicas(
        &self,
        js: &jetstream::Context,
        sequence: u64,
    ) -> Result<(), async_nats::Error> {
        let stream = js.get_stream(&self.stream).await?;
        let mut pause = Duration::from_micros(500);
        loop {
            let mut consumers = stream.consumers();
            let mut behind = 0usize;
            while let Some(info) = consumers.next().await {
                let info = info?;
                if !info
                    .name
                    .starts_with(shortline_shared::nats::INVALIDATION_CONSUMER_PREFIX)
                {
                    continue;
                }
                let caught_up = info.ack_floor.stream_sequence >= sequence
                    || (info.num_pending == 0 && info.num_ack_pending == 0);
                if !caught_up {
                    behind += 1;
                }
            }
            if behind == 0 {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

fn event_type(payload: &serde_json::Value) -> String {
    match payload.get("type").and_then(|t| t.as_str()) {
        Some(kind) => kind.to_owned(),
        None if payload.get("recorded").is_some() => RECORDED_CLICK.to_owned(),
        None => "unknown".to_owned(),
    }
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
