//! Push invalidation: every replica reads the link-change stream and drops
//! the changed codes from its caches.
//!
//! Each replica has its own ephemeral pull consumer on the change stream
//! (named `redirect-<ULID>`, filtered to link changes, explicit acks, removed
//! by the server a while after the replica stops pulling). A message is acked
//! only after [`LinkCache::invalidate`] has dropped the L1 entry and
//! tombstoned the L2 key; the write side waits for that ack before it
//! answers, which is what makes the next redirect see the change.
//!
//! When the tombstone cannot be written (Valkey slow or away), the L1 entry
//! is still dropped but the message is not acked: it is naked with a delay
//! and applied again when redelivered, so the write side never hears "done"
//! while Valkey may still serve the old target.
//!
//! If the consumer is lost (NATS restarted, network gap), a new one starts
//! right after the last sequence this replica handled (or at the first one
//! still waiting for its tombstone), so no change is missed while the stream
//! still holds it. When that is not known (the first consumer of a replica,
//! or a gap of unknown size) it reads changes from now on and drops all of
//! L1 once it is in place, since L1 may hold links changed before.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use shortline_shared::events::{ChangeEnvelope, Subjects};
use shortline_shared::nats::{
    INVALIDATION_CONSUMER_PREFIX, TraceHeaders, changes_stream_config, ensure_stream,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::resolve::LinkCache;

/// How long the server keeps a consumer nobody pulls from (a replica that
/// died without deleting its consumer holds link writes up to
/// `INVALIDATION_WAIT_MS` each for this long).
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(30);
/// Idle heartbeat asked of the server while pulling: two missed in a row end
/// the pull and the consumer is re-created. It bounds how long a replica
/// trusts L1 after its consumer vanished without a word (the NATS node that
/// held it died while this replica's connection, to another node, stayed up):
/// about two heartbeats, after which the lost changes are read again and L1 is
/// re-read every `REDIRECT_DEGRADED_L1_TTL_MS` meanwhile (`make chaos`,
/// fault `nats-kill`, counts the stale redirects of that window).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// When a change whose tombstone failed is delivered again.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// The change-stream reader of one replica.
pub struct Invalidator {
    js: jetstream::Context,
    subjects: Subjects,
    links: LinkCache,
    /// Stream sequence of the last change handled.
    last_sequence: Option<u64>,
    /// Changes handled but not applied (tombstone failed), to be redelivered.
    unapplied: BTreeSet<u64>,
    /// The current consumer's name (deleted on a clean stop).
    consumer: Option<String>,
    /// True while a consumer is in place and being read.
    reading: tokio::sync::watch::Sender<bool>,
}

impl Invalidator {
    pub fn new(client: async_nats::Client, subjects: Subjects, links: LinkCache) -> Self {
        Self {
            reading: tokio::sync::watch::Sender::new(false),
            js: jetstream::new(client),
            subjects,
            links,
            last_sequence: None,
            unapplied: BTreeSet::new(),
            consumer: None,
        }
    }

    /// True while this replica reads the change stream (false before the
    /// first consumer is in place and whenever it is lost).
    pub fn reading(&self) -> tokio::sync::watch::Receiver<bool> {
        self.reading.subscribe()
    }

    /// Reads changes until `cancel` fires, re-creating the consumer after any
    /// failure (with backoff).
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = tokio::select! {
                () = cancel.cancelled() => break,
                r = self.consume() => r,
            };
            self.reading.send_replace(false);
            match result {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "link-change consumer stopped; re-creating it")
                }
            }
            // The old consumer would outlive this replica's use of it by
            // `INACTIVE_THRESHOLD`, and link writes would wait for its ack in
            // vain all that time.
            self.delete_consumer().await;
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(backoff) => {},
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        // Without this the server keeps the consumer until its inactivity
        // threshold, and writes wait for it in vain meanwhile.
        self.delete_consumer().await;
        tracing::info!("link-change consumer stopped");
    }

    /// Deletes the current consumer, if any (best effort: when the server
    /// cannot be asked, it drops the consumer after `INACTIVE_THRESHOLD`).
    async fn delete_consumer(&mut self) {
        if let Some(name) = self.consumer.take() {
            let deleted = tokio::time::timeout(Duration::from_secs(2), async {
                let stream = self.js.get_stream(self.subjects.changes_stream()).await?;
                stream.delete_consumer(&name).await?;
                Ok::<_, async_nats::Error>(())
            })
            .await;
            if !matches!(deleted, Ok(Ok(()))) {
                tracing::debug!(consumer = %name, "change consumer not deleted; the server will drop it");
            }
        }
    }

    async fn consume(&mut self) -> Result<(), async_nats::Error> {
        ensure_stream(&self.js, changes_stream_config(&self.subjects)).await?;
        let stream = self.js.get_stream(self.subjects.changes_stream()).await?;
        let resume_at = self
            .unapplied
            .first()
            .copied()
            .or(self.last_sequence.map(|s| s + 1));
        let deliver_policy = match resume_at {
            Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
            None => consumer::DeliverPolicy::New,
        };
        let name = format!("{INVALIDATION_CONSUMER_PREFIX}{}", ulid::Ulid::generate());
        // Named before it exists: a stop while it is being created still
        // deletes it (deleting one that never came is harmless).
        self.consumer = Some(name.clone());
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                name: Some(name.clone()),
                description: Some("redirect replica cache invalidation".into()),
                deliver_policy,
                ack_policy: consumer::AckPolicy::Explicit,
                filter_subject: self.subjects.link_changes_wildcard(),
                inactive_threshold: INACTIVE_THRESHOLD,
                ack_wait: Duration::from_secs(5),
                ..Default::default()
            })
            .await?;
        if resume_at.is_none() {
            // Reading only changes from now on: whatever L1 took in before
            // (requests served while this replica started, or during a gap
            // of unknown size) may have missed one, so none of it is trusted.
            self.links.invalidate_all_local();
        }
        self.reading.send_replace(true);
        tracing::info!(consumer = %name, "reading link changes");
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(256)
            .heartbeat(HEARTBEAT)
            .expires(Duration::from_secs(30))
            .messages()
            .await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            // One span per change, a child of the API request that made it
            // when the message carries its trace context.
            let span = tracing::info_span!(
                "link_change.apply",
                otel.kind = "consumer",
                messaging.destination = %message.subject,
            );
            if let Some(headers) = &message.headers {
                shortline_shared::telemetry::set_parent_from(&span, &TraceHeaders(headers));
            }
            self.apply(&message).instrument(span).await?;
        }
        Ok(())
    }

    /// Drops the changed link from the caches, then acks; naks (for a
    /// later retry) when the L2 tombstone could not be written.
    async fn apply(&mut self, message: &jetstream::Message) -> Result<(), async_nats::Error> {
        let mut applied = true;
        match serde_json::from_slice::<ChangeEnvelope>(&message.payload) {
            Ok(envelope) => {
                if let Some(link) = envelope.change.link() {
                    match self.links.invalidate(&link.cache_key()).await {
                        Ok(()) => tracing::debug!(
                            short_code = %link.short_code,
                            url_id = link.id,
                            change = envelope.change.kind(),
                            "cache entry dropped"
                        ),
                        Err(e) => {
                            applied = false;
                            tracing::warn!(
                                error = %e,
                                short_code = %link.short_code,
                                url_id = link.id,
                                "change not applied to Valkey; retrying it"
                            );
                        }
                    }
                }
            }
            Err(e) => {
                // Unknown versions and shapes are skipped, not retried.
                tracing::warn!(error = %e, subject = %message.subject, "unreadable change event skipped");
            }
        }
        let sequence = message.info().map(|i| i.stream_sequence).ok();
        if applied {
            message.ack_with(AckKind::Ack).await?;
        } else {
            message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await?;
        }
        if let Some(seq) = sequence {
            if applied {
                self.unapplied.remove(&seq);
            } else {
                self.unapplied.insert(seq);
            }
            self.last_sequence = Some(self.last_sequence.map_or(seq, |last| last.max(seq)));
        }
        Ok(())
    }
}
