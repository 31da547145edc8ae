//! NATS connection and JetStream stream definitions.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::events::Subjects;

/// Connects without blocking start-up: when NATS is down the client keeps
/// retrying in the background and the service runs degraded meanwhile.
///
/// `url` may carry a user and password (`nats://api:secret@host:4222`, or a
/// comma-separated list of such URLs): they are taken out of the URL,
/// percent-decoded, and sent with the CONNECT (async-nats ignores URL
/// credentials); the client itself only ever sees the URL without them, so
/// no log line of its prints the password.
pub async fn connect(
    url: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let target = NatsTarget::parse(url).map_err(|e| {
        async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e)
    })?;
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .max_reconnects(None)
        .event_callback(|event| async move { log_event(&event) });
    if let Some((user, password)) = target.credentials {
        options = options.user_and_password(user, password);
    }
    // A list goes in as one address per server (async-nats reads a single
    // string as one address).
    let servers: Vec<&str> = target.servers.split(',').collect();
    options.connect(servers).await
}

/// Logs what the server tells the client outside any request: a refused
/// login or a permissions violation (the user of `NATS_URL` may not publish
/// or subscribe to a subject: the operation is dropped, and a request waits
/// for its timeout) would otherwise only show as timeouts.
fn log_event(event: &async_nats::Event) {
    use async_nats::{Event, ServerError};
    match event {
        Event::ServerError(ServerError::AuthorizationViolation) => {
            tracing::error!("NATS refused the login: check the user and password in NATS_URL")
        }
        Event::ServerError(ServerError::Other(message))
            if message
                .to_ascii_lowercase()
                .contains("permissions violation") =>
        {
            tracing::error!(
                error = %message,
                "NATS refused an operation: this service's NATS user lacks the permission (docs/runbook.md, \"Access control\")"
            );
        }
        Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
        Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
        Event::Connected => tracing::info!("NATS connected"),
        Event::SlowConsumer(sid) => tracing::warn!(subscription = sid, "NATS slow consumer"),
        _ => {}
    }
}

/// A `NATS_URL` taken apart: the server URLs without credentials, and the
/// user and password that were in them.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsTarget {
    /// Comma-separated server URLs, credentials removed.
    pub servers: String,
    /// `(user, password)`, percent-decoded, when the URL named a user.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for NatsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTarget")
            .field("servers", &self.servers)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

/// Why a `NATS_URL` could not be taken apart. Never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum NatsUrlError {
    #[error("NATS_URL entry {index} is not a URL: {reason}")]
    Invalid {
        index: usize,
        reason: url::ParseError,
    },
    #[error("NATS_URL entry {index}: user name or password is not valid UTF-8 once decoded")]
    Encoding { index: usize },
    #[error("NATS_URL entries name different users or passwords")]
    MixedCredentials,
}

impl NatsTarget {
    /// Splits `url` (one URL, or several separated by commas). An entry
    /// without `://` (`host:port`) is kept as it is and carries no
    /// credentials; every entry that carries some must carry the same.
    pub fn parse(url: &str) -> Result<Self, NatsUrlError> {
        let mut servers = Vec::new();
        let mut credentials: Option<(String, String)> = None;
        for (index, entry) in url.split(',').map(str::trim).enumerate() {
            if !entry.contains("://") {
                servers.push(entry.to_owned());
                continue;
            }
            let mut parsed =
                url::Url::parse(entry).map_err(|reason| NatsUrlError::Invalid { index, reason })?;
            if !parsed.username().is_empty() || parsed.password().is_some() {
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .map(|c| c.into_owned())
                        .map_err(|_| NatsUrlError::Encoding { index })
                };
                let found = (
                    decode(parsed.username())?,
                    decode(parsed.password().unwrap_or_default())?,
                );
                match &credentials {
                    Some(known) if *known != found => return Err(NatsUrlError::MixedCredentials),
                    _ => credentials = Some(found),
                }
                // Both always succeed on a URL with a host (the only kind
                // that can carry credentials).
                let _ = parsed.set_username("");
                let _ = parsed.set_password(None);
            }
            servers.push(parsed.to_string());
        }
        Ok(Self {
            servers: servers.join(","),
            credentials,
        })
    }
}

/// `url` with any password replaced by `***`, for log lines and error
/// messages (each entry of a comma-separated list).
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|entry| match url::Url::parse(entry.trim()) {
            Ok(mut parsed) if parsed.password().is_some() => {
                let _ = parsed.set_password(Some("***"));
                parsed.to_string()
            }
            Ok(_) => entry.trim().to_owned(),
            // Unparseable: show nothing after a possible `user:` part.
            Err(_) => match entry.rfind('@') {
                Some(at) => format!("***@{}", &entry[at + 1..]),
                None => entry.trim().to_owned(),
            },
        })
        .collect::<Vec<_>>()
        .join(",")
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
    fn credentials_leave_the_url_and_are_percent_decoded() {
        let t = NatsTarget::parse("nats://api:s%40cr%3Aet%2F1@127.0.0.1:4222").expect("parses");
        assert_eq!(t.servers, "nats://127.0.0.1:4222");
        assert_eq!(
            t.credentials,
            Some(("api".to_owned(), "s@cr:et/1".to_owned()))
        );
        assert!(
            !format!("{t:?}").contains("s@cr"),
            "Debug shows no password"
        );
    }

    #[test]
    fn a_url_without_credentials_is_unchanged() {
        let t = NatsTarget::parse("nats://127.0.0.1:54222").expect("parses");
        assert_eq!(t.servers, "nats://127.0.0.1:54222");
        assert_eq!(t.credentials, None);
        let bare = NatsTarget::parse("127.0.0.1:4222").expect("parses");
        assert_eq!(bare.servers, "127.0.0.1:4222");
        assert_eq!(bare.credentials, None);
    }

    #[test]
    fn every_server_of_a_list_loses_its_credentials() {
        let t = NatsTarget::parse("nats://u:p@a:4222, nats://u:p@b:4222,nats://c:4222")
            .expect("parses");
        assert_eq!(t.servers, "nats://a:4222,nats://b:4222,nats://c:4222");
        assert_eq!(t.credentials, Some(("u".to_owned(), "p".to_owned())));
        assert!(matches!(
            NatsTarget::parse("nats://u:p@a:4222,nats://v:q@b:4222"),
            Err(NatsUrlError::MixedCredentials)
        ));
    }

    #[tokio::test]
    async fn a_list_of_servers_is_accepted() {
        // Connects in the background (nothing listens there): only the
        // parsing of the list is decided here.
        let client = connect(
            "nats://u:p@127.0.0.1:1,nats://u:p@127.0.0.1:2,127.0.0.1:3",
            "test",
        )
        .await;
        assert!(client.is_ok(), "{:?}", client.err());
    }

    #[test]
    fn a_user_without_a_password_is_still_sent() {
        let t = NatsTarget::parse("nats://token-user@h:4222").expect("parses");
        assert_eq!(
            t.credentials,
            Some(("token-user".to_owned(), String::new()))
        );
    }

    #[test]
    fn redacted_urls_hide_only_the_password() {
        assert_eq!(
            redact_url("nats://api:secret@h:4222,nats://h2:4222"),
            "nats://api:***@h:4222,nats://h2:4222"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert!(!redact_url("not a url:secret@h").contains("secret"));
    }

    #[test]
    fn a_bad_url_error_names_no_password() {
        let err = NatsTarget::parse("nats://api:secret@[::1").expect_err("invalid");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

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
