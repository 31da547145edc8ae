//! Versioned messages that cross service boundaries, and their subjects.
//!
//! The write side publishes a [`ChangeEnvelope`] for every committed change to
//! a link or a user. The JSON form is
//! `{"type":"link.updated","version":1,"event_id":"01J…","occurred_at":"…","link":{…}}`;
//! consumers must ignore fields they do not know and skip versions they do
//! not understand. A breaking change to a payload gets a new `version`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// The payload version this build writes.
pub const CHANGE_EVENT_VERSION: u32 = 1;

/// A committed change, as published on the change stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEnvelope {
    pub version: u32,
    /// Unique per change; used as `Nats-Msg-Id` so a republish is deduplicated.
    pub event_id: Ulid,
    /// When the change was committed (full precision, RFC 3339).
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub change: Change,
}

impl ChangeEnvelope {
    /// Wraps a change with a fresh id and the current time.
    pub fn new(change: Change) -> Self {
        Self {
            version: CHANGE_EVENT_VERSION,
            event_id: Ulid::generate(),
            occurred_at: Utc::now(),
            change,
        }
    }
}

/// What changed. The `type` tag doubles as the last two subject tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Change {
    #[serde(rename = "link.created")]
    LinkCreated { link: LinkSnapshot },
    #[serde(rename = "link.updated")]
    LinkUpdated {
        link: LinkSnapshot,
        /// Names of the fields whose value changed (`original_url`, `is_active`, `title`).
        changed: Vec<String>,
    },
    #[serde(rename = "link.deleted")]
    LinkDeleted { link: LinkSnapshot },
    #[serde(rename = "user.created")]
    UserCreated { user: UserSnapshot },
    #[serde(rename = "user.updated")]
    UserUpdated { user: UserSnapshot },
    #[serde(rename = "user.deleted")]
    UserDeleted { user: UserSnapshot },
}

impl Change {
    /// The `type` tag, e.g. `link.updated`.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::LinkCreated { .. } => "link.created",
            Change::LinkUpdated { .. } => "link.updated",
            Change::LinkDeleted { .. } => "link.deleted",
            Change::UserCreated { .. } => "user.created",
            Change::UserUpdated { .. } => "user.updated",
            Change::UserDeleted { .. } => "user.deleted",
        }
    }

    /// The link this change is about, if any.
    pub fn link(&self) -> Option<&LinkSnapshot> {
        match self {
            Change::LinkCreated { link }
            | Change::LinkUpdated { link, .. }
            | Change::LinkDeleted { link } => Some(link),
            _ => None,
        }
    }
}

/// A link's state right after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkSnapshot {
    pub id: i64,
    pub user_id: i64,
    pub short_code: String,
    /// The link's custom domain (its host); absent for the default domain
    /// (and in events written before domains existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub original_url: String,
    pub is_active: bool,
    pub updated_at: DateTime<Utc>,
}

impl LinkSnapshot {
    /// The link's key in the redirect caches ([`crate::cache::domain_code`]).
    pub fn cache_key(&self) -> String {
        crate::cache::domain_code(self.domain.as_deref(), &self.short_code)
    }
}

/// A user's state right after the change (no personal data beyond the id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSnapshot {
    pub id: i64,
}

/// The click payload version this build writes.
pub const CLICK_EVENT_VERSION: u32 = 1;

/// One successful redirect, as the redirect service saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Click {
    /// The event's own id: becomes `events.event_id`, so a click stored twice
    /// is stored once.
    pub event_id: Ulid,
    pub url_id: i64,
    pub user_id: i64,
    pub short_code: String,
    /// When the redirect was answered (full precision, RFC 3339).
    pub occurred_at: DateTime<Utc>,
    /// `User-Agent` as sent (cut to a bounded length), if any.
    pub user_agent: Option<String>,
    /// `Referer` as sent (cut to a bounded length), if any.
    pub referrer: Option<String>,
    /// The client's address with its host part zeroed (IPv4 /24, IPv6 /48),
    /// never the full address.
    pub ip: Option<String>,
    /// For a link with rules, which of its URLs the redirect went to
    /// (`target`, `rule:N`, `fallback`); absent for a plain link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// Clicks travel in batches: one JetStream message per batch. The JSON form
/// is `{"version":1,"batch_id":"01J…","clicks":[{…},…]}`; a consumer must
/// skip versions it does not understand.
///
/// The redirect service publishes the clicks it answered; their event rows do
/// not exist yet and the analytics consumer inserts them. The write API
/// publishes (through its outbox) each `redirect` event a client records with
/// `POST /events` as a batch of one with `"recorded":true`: the API has
/// written that event row itself, so the consumer only folds the click into
/// the rollups (once, claiming the API's `rollup_pending` row). The flag is
/// additive (absent means `false`), so the version stays 1; a consumer that
/// predates it would find the row present and count nothing, so analytics is
/// deployed before an API that sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickBatch {
    pub version: u32,
    /// Used as `Nats-Msg-Id`, so a batch re-sent after a lost ack is dropped
    /// by the stream.
    pub batch_id: Ulid,
    pub clicks: Vec<Click>,
    /// The clicks' event rows exist already (recorded by the write API).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recorded: bool,
}

impl ClickBatch {
    /// Wraps clicks with a fresh batch id.
    pub fn new(clicks: Vec<Click>) -> Self {
        Self {
            version: CLICK_EVENT_VERSION,
            batch_id: Ulid::generate(),
            clicks,
            recorded: false,
        }
    }

    /// A `redirect` event whose row the write API recorded, as a batch of
    /// one under the event's own id (the outbox row's `Nats-Msg-Id`).
    pub fn recorded(click: Click) -> Self {
        Self {
            version: CLICK_EVENT_VERSION,
            batch_id: click.event_id,
            clicks: vec![click],
            recorded: true,
        }
    }
}

/// Subject and stream names, all derived from one prefix so that tests (and
/// several deployments sharing one NATS) never see each other's messages.
///
/// It also carries how many copies each stream keeps (`NATS_STREAM_REPLICAS`:
/// 1 on a single server, 3 on a three-node JetStream cluster), since every
/// service creates or updates the streams it uses at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    stream_replicas: usize,
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new("shortline")
    }
}

impl Subjects {
    /// `prefix` must be a valid single NATS token (letters, digits, `-`, `_`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            stream_replicas: 1,
        }
    }

    /// The same names, with streams kept in `replicas` copies (at least 1).
    #[must_use]
    pub fn with_stream_replicas(mut self, replicas: usize) -> Self {
        self.stream_replicas = replicas.max(1);
        self
    }

    /// Copies each stream keeps.
    pub fn stream_replicas(&self) -> usize {
        self.stream_replicas
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Subject of one change: `<prefix>.changes.link.updated`.
    pub fn change(&self, change: &Change) -> String {
        format!("{}.changes.{}", self.prefix, change.kind())
    }

    /// Wildcard covering every change subject.
    pub fn changes_wildcard(&self) -> String {
        format!("{}.changes.>", self.prefix)
    }

    /// Wildcard covering link changes only (what redirect replicas read).
    pub fn link_changes_wildcard(&self) -> String {
        format!("{}.changes.link.>", self.prefix)
    }

    /// Subject of click batches: `<prefix>.clicks`.
    pub fn clicks(&self) -> String {
        format!("{}.clicks", self.prefix)
    }

    /// JetStream stream holding click batches.
    pub fn clicks_stream(&self) -> String {
        format!("{}_CLICKS", self.stream_token())
    }

    /// Subject of click batches the analytics consumer gave up on.
    pub fn dead_letter_clicks(&self) -> String {
        format!("{}.deadletter.clicks", self.prefix)
    }

    /// Wildcard covering every dead-letter subject.
    pub fn dead_letter_wildcard(&self) -> String {
        format!("{}.deadletter.>", self.prefix)
    }

    /// JetStream stream holding dead letters.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DEADLETTER", self.stream_token())
    }

    /// JetStream stream holding the change events.
    pub fn changes_stream(&self) -> String {
        format!("{}_CHANGES", self.stream_token())
    }

    fn stream_token(&self) -> String {
        self.prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> LinkSnapshot {
        LinkSnapshot {
            id: 7,
            user_id: 3,
            short_code: "abc123".into(),
            domain: None,
            original_url: "https://example.com/x".into(),
            is_active: true,
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn envelope_is_flat_and_tagged() {
        let env = ChangeEnvelope::new(Change::LinkUpdated {
            link: link(),
            changed: vec!["is_active".into()],
        });
        let json = serde_json::to_value(&env).expect("serialises");
        assert_eq!(json["type"], "link.updated");
        assert_eq!(json["version"], 1);
        assert_eq!(json["link"]["short_code"], "abc123");
        assert_eq!(json["event_id"], env.event_id.to_string());
        let back: ChangeEnvelope = serde_json::from_value(json).expect("round-trips");
        assert_eq!(back, env);
    }

    #[test]
    fn a_recorded_batch_says_so_and_a_click_batch_does_not() {
        let click = Click {
            event_id: Ulid::generate(),
            url_id: 7,
            user_id: 3,
            short_code: "abc123".into(),
            occurred_at: Utc::now(),
            user_agent: None,
            referrer: None,
            ip: None,
            outcome: None,
        };
        let plain = serde_json::to_value(ClickBatch::new(vec![click.clone()])).expect("json");
        assert!(plain.get("recorded").is_none(), "{plain}");
        let recorded = ClickBatch::recorded(click.clone());
        assert_eq!(recorded.batch_id, click.event_id);
        let json = serde_json::to_value(&recorded).expect("json");
        assert_eq!(json["recorded"], true);
        let back: ClickBatch = serde_json::from_value(json).expect("round-trips");
        assert_eq!(back, recorded);
        let old: ClickBatch = serde_json::from_value(plain).expect("reads without the flag");
        assert!(!old.recorded);
    }

    #[test]
    fn subjects_derive_from_prefix() {
        let s = Subjects::new("t-01abc");
        let change = Change::LinkDeleted { link: link() };
        assert_eq!(s.change(&change), "t-01abc.changes.link.deleted");
        assert_eq!(s.changes_stream(), "T_01ABC_CHANGES");
        assert_eq!(s.link_changes_wildcard(), "t-01abc.changes.link.>");
        assert_eq!(s.clicks(), "t-01abc.clicks");
        assert_eq!(s.clicks_stream(), "T_01ABC_CLICKS");
        assert_eq!(s.dead_letter_clicks(), "t-01abc.deadletter.clicks");
        assert_eq!(s.dead_letter_stream(), "T_01ABC_DEADLETTER");
    }
}
