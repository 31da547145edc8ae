//! NATS connection and JetStream stream definitions.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::events::Subjects;

/// Connects without blocking start-up: when NATS is down the client keeps
/// retrying in the background and the service runs degraded meanwhile.
pub async fn connect(
    url: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .max_reconnects(None)
        .connect(url)
        .await
}

/// Whether the client currently holds a connection to the server.
pub fn is_connected(client: &async_nats::Client) -> bool {
    matches!(
        client.connection_state(),
        async_nats::connection::State::Connected
    )
}

/// Reads W3C trace context from NATS message headers.
pub struct TraceHeaders<'a>(pub &'a async_nats::HeaderMap);

impl opentelemetry::propagation::Extractor for TraceHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes W3C trace context into NATS message headers.
pub struct TraceHeadersMut<'a>(pub &'a mut async_nats::HeaderMap);

impl opentelemetry::propagation::Injector for TraceHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

/// How long JetStream remembers a `Nats-Msg-Id` to drop a republished message.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The change stream: link and user changes from the write side.
pub fn changes_stream_config(subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: subjects.changes_stream(),
        description: Some("Shortline link and user change events (from the API outbox)".into()),
        subjects: vec![subjects.changes_wildcard()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: subjects.stream_replicas(),
        ..Default::default()
    }
}

/// Name prefix of the redirect replicas' change-stream consumers. The write
/// side waits for every consumer with this prefix to acknowledge a link
/// change before it answers, so the next redirect sees the change.
pub const INVALIDATION_CONSUMER_PREFIX: &str = "redirect-";

/// How long the click stream drops a re-sent batch (a publisher retries a
/// batch for at most this long before the id could be forgotten).
pub const CLICK_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60);

/// The click stream: batches of redirects from every redirect replica.
pub fn clicks_stream_config(subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: subjects.clicks_stream(),
        description: Some("Shortline click batches (from the redirect service)".into()),
        subjects: vec![subjects.clicks()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: CLICK_DUPLICATE_WINDOW,
        num_replicas: subjects.stream_replicas(),
        ..Default::default()
    }
}

/// Dead letters: messages a consumer could not process after its bounded
/// redeliveries, kept for a person to look at (30 days).
pub fn dead_letter_stream_config(subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: subjects.dead_letter_stream(),
        description: Some("Shortline dead letters (messages consumers gave up on)".into()),
        subjects: vec![subjects.dead_letter_wildcard()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::from_secs(30 * 24 * 3600),
        num_replicas: subjects.stream_replicas(),
        ..Default::default()
    }
}

/// Creates the stream, or updates it in place when its config changed, so
/// every replica can call this at start.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Info, async_nats::Error> {
    Ok(js.create_or_update_stream(config).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_keeps_the_configured_copies() {
        let one = Subjects::new("t");
        let three = Subjects::new("t").with_stream_replicas(3);
        for (subjects, want) in [(&one, 1), (&three, 3)] {
            assert_eq!(changes_stream_config(subjects).num_replicas, want);
            assert_eq!(clicks_stream_config(subjects).num_replicas, want);
            assert_eq!(dead_letter_stream_config(subjects).num_replicas, want);
        }
        assert_eq!(
            Subjects::new("t").with_stream_replicas(0).stream_replicas(),
            1
        );
    }
}
