//! Click events: one per successful redirect, never waited on by the request.
//!
//! The request hands a compact [`ClickRecord`] to the [`ClickSink`], which
//! only tries to put it in a bounded buffer: when the buffer is full (NATS has been away
//! for a while) the click is dropped and counted in
//! `shortline_clicks_dropped_total{reason="overflow"}`. The
//! [`ClickPublisher`] task takes clicks out in batches (up to
//! `CLICK_BATCH_MAX`, or what arrived within `CLICK_LINGER_MS`), turns the
//! records into [`Click`] events, publishes each batch as one JetStream
//! message with `Nats-Msg-Id` = the batch ULID,
//! and retries a batch until it is acknowledged; the stream's duplicate
//! window drops a batch sent twice. On shutdown it publishes what is left,
//! for at most `CLICK_FLUSH_TIMEOUT_SECS`, and writes what it still could
//! not publish to a spill file in `CLICK_SPILL_DIR` (see [`crate::spill`]),
//! which a replica publishes later: a graceful shutdown loses no click.
//!
//! Also here: the client address that goes into a click, taken from
//! `X-Forwarded-For` only when the peer is a trusted proxy, and always cut
//! to its network part (IPv4 /24, IPv6 /48).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use opentelemetry::KeyValue;
use shortline_shared::events::{Click, ClickBatch, Subjects};
use shortline_shared::nats::{TraceHeadersMut, clicks_stream_config, ensure_stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::click_record::ClickRecord;
use crate::spill::SpillDir;
use crate::state::RedirectMetrics;

/// Longest `User-Agent` / `Referer` kept in a click.
const MAX_HEADER_CHARS: usize = 512;
/// Longest wait for one batch's ack before it is retried.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The request side: non-blocking, never fails the request.
#[derive(Clone)]
pub struct ClickSink {
    tx: mpsc::Sender<ClickRecord>,
    metrics: RedirectMetrics,
}

impl ClickSink {
    /// Buffers a click, or drops and counts it when the buffer is full.
    pub fn record(&self, click: ClickRecord) {
        match self.tx.try_send(click) {
            Ok(()) => self.metrics.clicks_buffered.add(1, &[]),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics
                    .clicks_dropped
                    .add(1, &[KeyValue::new("reason", "overflow")]);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics
                    .clicks_dropped
                    .add(1, &[KeyValue::new("reason", "shutdown")]);
            }
        }
    }

    /// Clicks waiting in the buffer.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Settings for [`ClickPublisher`].
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    pub buffer: usize,
    pub batch_max: usize,
    pub linger: Duration,
    pub flush_timeout: Duration,
    /// Where the shutdown flush writes what it could not publish (`None`:
    /// it is dropped and counted).
    pub spill: Option<SpillDir>,
}

/// The publishing side: a task that owns the buffer's receiver.
pub struct ClickPublisher {
    rx: mpsc::Receiver<ClickRecord>,
    js: jetstream::Context,
    subjects: Subjects,
    settings: PublisherSettings,
    metrics: RedirectMetrics,
    stream_ready: bool,
}

/// Creates the buffer: the sink for handlers and the publisher task.
pub fn channel(
    client: async_nats::Client,
    subjects: Subjects,
    settings: PublisherSettings,
    metrics: RedirectMetrics,
) -> (ClickSink, ClickPublisher) {
    let (tx, rx) = mpsc::channel(settings.buffer.max(1));
    let sink = ClickSink {
        tx,
        metrics: metrics.clone(),
    };
    let publisher = ClickPublisher {
        rx,
        js: jetstream::new(client),
        subjects,
        settings,
        metrics,
        stream_ready: false,
    };
    (sink, publisher)
}

impl ClickPublisher {
    /// Publishes batches until `cancel` fires, then flushes what is left.
    ///
    /// While clicks flow, the task does not wait on the channel (which
    /// would wake it for every click): after the first click of a batch it
    /// sleeps for the linger time, then takes whatever has arrived.
    pub async fn run(mut self, cancel: CancellationToken) {
        let max = self.settings.batch_max.max(1);
        let mut batch: Vec<ClickRecord> = Vec::with_capacity(max);
        loop {
            if self.rx.is_empty() {
                // Idle: wait for the next click.
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    n = self.rx.recv_many(&mut batch, max) => if n == 0 { break },
                }
            }
            self.take_available(&mut batch, max);
            if batch.len() < max {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => {},
                    () = tokio::time::sleep(self.settings.linger) => {},
                }
                self.take_available(&mut batch, max);
            }
            self.record_depth();
            let clicks = batch.drain(..).map(ClickRecord::into_click).collect();
            if let Err(unsent) = self
                .publish_until_acked(ClickBatch::new(clicks), &cancel, None)
                .await
            {
                self.flush(vec![unsent]).await;
                return;
            }
            if cancel.is_cancelled() {
                break;
            }
        }
        let pending: Vec<Click> = batch.into_iter().map(ClickRecord::into_click).collect();
        let pending = if pending.is_empty() {
            Vec::new()
        } else {
            vec![ClickBatch::new(pending)]
        };
        self.flush(pending).await;
    }

    /// Moves buffered clicks into `batch` (up to `max`) without waiting.
    fn take_available(&mut self, batch: &mut Vec<ClickRecord>, max: usize) {
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(click) => batch.push(click),
                Err(_) => break,
            }
        }
    }

    /// After the signal: no new clicks; publish everything buffered (the
    /// batches given first, keeping their ids), within the flush timeout;
    /// spill the rest to a file, or count it as dropped when that fails.
    async fn flush(mut self, mut pending: Vec<ClickBatch>) {
        self.rx.close();
        let max = self.settings.batch_max.max(1);
        let mut rest = Vec::new();
        while let Ok(click) = self.rx.try_recv() {
            rest.push(click.into_click());
            if rest.len() == max {
                pending.push(ClickBatch::new(std::mem::take(&mut rest)));
            }
        }
        if !rest.is_empty() {
            pending.push(ClickBatch::new(rest));
        }
        let total: usize = pending.iter().map(|b| b.clicks.len()).sum();
        if total == 0 {
            return;
        }
        tracing::info!(clicks = total, "flushing buffered clicks before exit");
        let deadline = Instant::now() + self.settings.flush_timeout;
        let never = CancellationToken::new();
        let mut unsent = Vec::new();
        let mut batches = pending.into_iter();
        for batch in batches.by_ref() {
            if let Err(batch) = self
                .publish_until_acked(batch, &never, Some(deadline))
                .await
            {
                unsent.push(batch);
                break;
            }
        }
        unsent.extend(batches);
        let left: usize = unsent.iter().map(|b| b.clicks.len()).sum();
        if left == 0 {
            tracing::info!(clicks = total, "buffered clicks flushed");
        } else {
            self.spill(unsent, left).await;
        }
        self.record_depth();
    }

    /// Writes what the flush could not publish to a spill file.
    async fn spill(&self, batches: Vec<ClickBatch>, clicks: usize) {
        let written = match self.settings.spill.clone() {
            Some(dir) => tokio::task::spawn_blocking(move || dir.write(&batches))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r),
            None => Err(std::io::Error::other("CLICK_SPILL_DIR is empty")),
        };
        match written {
            Ok(path) => {
                self.metrics.clicks_spilled.add(clicks as u64, &[]);
                tracing::warn!(
                    clicks,
                    file = %path.display(),
                    "NATS unavailable at shutdown; buffered clicks spilled to a file (a replica publishes them later)"
                );
            }
            Err(e) => {
                self.metrics
                    .clicks_dropped
                    .add(clicks as u64, &[KeyValue::new("reason", "shutdown")]);
                tracing::error!(
                    clicks,
                    error = %e,
                    "NATS unavailable at shutdown and the clicks could not be spilled; they were lost"
                );
            }
        }
    }

    /// Sends one batch until JetStream acknowledges it. Gives the batch back
    /// when `cancel` fires or `deadline` passes first (an attempt under way
    /// is cut off at the deadline).
    async fn publish_until_acked(
        &mut self,
        batch: ClickBatch,
        cancel: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Result<(), ClickBatch> {
        let count = batch.clicks.len() as u64;
        let payload: bytes::Bytes = match serde_json::to_vec(&batch) {
            Ok(p) => p.into(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a click batch");
                return Ok(());
            }
        };
        let mut backoff = Duration::from_millis(50);
        let span = tracing::info_span!("clicks.publish", otel.kind = "producer", clicks = count);
        loop {
            let started = Instant::now();
            let attempt = self
                .publish_once(&batch, payload.clone())
                .instrument(span.clone());
            let result = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), attempt)
                    .await
                    .unwrap_or_else(|_| Err("flush deadline passed".into())),
                None => attempt.await,
            };
            match result {
                Ok(()) => {
                    self.metrics.clicks_published.add(count, &[]);
                    self.metrics.click_batch_size.record(count, &[]);
                    self.metrics
                        .click_publish_seconds
                        .record(started.elapsed().as_secs_f64(), &[]);
                    return Ok(());
                }
                Err(e) => {
                    self.metrics.click_publish_failures.add(1, &[]);
                    self.stream_ready = false;
                    tracing::warn!(error = %e, clicks = count, "click batch not published; retrying");
                }
            }
            self.record_depth();
            let wait = match deadline {
                Some(d) if Instant::now() + backoff >= d => return Err(batch),
                _ => backoff,
            };
            tokio::select! {
                () = cancel.cancelled() => return Err(batch),
                () = tokio::time::sleep(wait) => {},
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn publish_once(
        &mut self,
        batch: &ClickBatch,
        payload: bytes::Bytes,
    ) -> Result<(), async_nats::Error> {
        if !self.stream_ready {
            ensure_clicks_stream(&self.js, &self.subjects).await?;
            self.stream_ready = true;
        }
        send_batch(&self.js, &self.subjects, batch, payload).await
    }

    fn record_depth(&self) {
        self.metrics
            .click_buffer_depth
            .record(self.rx.len() as u64, &[]);
    }
}

/// Creates or updates the click stream (bounded by the ack timeout).
pub(crate) async fn ensure_clicks_stream(
    js: &jetstream::Context,
    subjects: &Subjects,
) -> Result<(), async_nats::Error> {
    tokio::time::timeout(
        ACK_TIMEOUT,
        ensure_stream(js, clicks_stream_config(subjects)),
    )
    .await??;
    Ok(())
}

/// Publishes one encoded batch with `Nats-Msg-Id` = its batch id and waits
/// for JetStream's ack.
async fn send_batch(
    js: &jetstream::Context,
    subjects: &Subjects,
    batch: &ClickBatch,
    payload: bytes::Bytes,
) -> Result<(), async_nats::Error> {
    let mut message = PublishMessage::build()
        .payload(payload)
        .message_id(batch.batch_id.to_string());
    if shortline_shared::telemetry::tracing_enabled() {
        // The analytics consumer's span for this batch becomes a child of
        // the publish span.
        let mut headers = async_nats::HeaderMap::new();
        shortline_shared::telemetry::inject_current(&mut TraceHeadersMut(&mut headers));
        message = message.headers(headers);
    }
    let ack = js.send_publish(subjects.clicks(), message).await?;
    tokio::time::timeout(ACK_TIMEOUT, ack).await??;
    Ok(())
}

/// Publishes a batch as it is (its own batch id), for replaying spill files.
pub(crate) async fn publish_batch(
    js: &jetstream::Context,
    subjects: &Subjects,
    batch: &ClickBatch,
) -> Result<(), async_nats::Error> {
    let payload = serde_json::to_vec(batch)?;
    send_batch(js, subjects, batch, payload.into()).await
}

pub use shortline_shared::client_ip::TrustedProxies;

/// The address with its host part zeroed: IPv4 keeps /24, IPv6 /48.
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => anonymize(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    }
}

/// A header's value for a click: valid UTF-8, cut to a bounded length.
pub fn header_text(value: Option<&axum::http::HeaderValue>) -> Option<Box<str>> {
    let value = value?;
    let text = String::from_utf8_lossy(value.as_bytes());
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    // No longer in bytes than allowed in characters: kept whole, one copy.
    if text.len() <= MAX_HEADER_CHARS {
        return Some(text.into());
    }
    Some(text.chars().take(MAX_HEADER_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn addresses_lose_their_host_part() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("valid");
        assert_eq!(anonymize(ip("198.51.100.77")), ip("198.51.100.0"));
        assert_eq!(
            anonymize(ip("2001:db8:abcd:12:1:2:3:4")),
            ip("2001:db8:abcd::")
        );
        assert_eq!(anonymize(ip("::ffff:192.0.2.200")), ip("192.0.2.0"));
    }

    #[test]
    fn header_text_is_trimmed_and_bounded() {
        let mut h = HeaderMap::new();
        h.insert("user-agent", "x".repeat(2000).parse().expect("valid"));
        h.insert("referer", "  ".parse().expect("valid"));
        assert_eq!(
            header_text(h.get(axum::http::header::USER_AGENT)).map(|s| s.len()),
            Some(512)
        );
        assert_eq!(header_text(h.get(axum::http::header::REFERER)), None);
        // The bound is in characters: 300 two-byte characters stay whole.
        let accents = axum::http::HeaderValue::from_bytes("é".repeat(300).as_bytes())
            .expect("obs-text is a valid header value");
        assert_eq!(
            header_text(Some(&accents)).map(|s| s.chars().count()),
            Some(300)
        );
    }
}
