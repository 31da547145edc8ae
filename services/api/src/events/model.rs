//! Event-log records (`created`, `updated`, `deleted`, `redirect`, or any
//! type a client records) and the body of `POST /events`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};
use shortline_shared::events::Click;

use crate::validate::{Fields, FromJson};

/// An event as the contract shows it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct Event {
    pub id: i64,
    pub url_id: Option<i64>,
    pub user_id: Option<i64>,
    pub event_type: String,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2025-06-04T00:07:00")]
    #[sqlx(rename = "occurred_at")]
    pub timestamp: DateTime<Utc>,
    /// Always a JSON object.
    pub details: Value,
}

/// `POST /events` body.
#[derive(Debug, Clone, JsonSchema)]
pub struct NewEvent {
    /// An existing link.
    #[schemars(range(min = 1))]
    pub url_id: i64,
    /// An existing user.
    #[schemars(range(min = 1))]
    pub user_id: i64,
    /// A non-empty type, e.g. `created`, `updated`, `deleted`, `redirect`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"\S"))]
    pub event_type: String,
    /// A JSON object (default `{}`).
    pub details: Map<String, Value>,
}

impl FromJson for NewEvent {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let url_id = f.required_id("url_id");
        let user_id = f.required_id("user_id");
        let event_type = f.required_string("event_type");
        if event_type.as_ref().is_some_and(|t| t.chars().count() > 64) {
            f.error("event_type", "must be at most 64 characters");
        }
        let details = f.optional_object("details").unwrap_or_default();
        Some(NewEvent {
            url_id: url_id?,
            user_id: user_id?,
            event_type: event_type?,
            details,
        })
    }
}

/// An event row to write (the log's own id is assigned by the database).
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub event_id: ulid::Ulid,
    pub url_id: Option<i64>,
    pub user_id: Option<i64>,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub details: Value,
}

impl EventRecord {
    /// A new event happening now.
    pub fn now(url_id: i64, user_id: i64, event_type: &str, details: Value) -> Self {
        Self {
            event_id: ulid::Ulid::generate(),
            url_id: Some(url_id),
            user_id: Some(user_id),
            event_type: event_type.to_owned(),
            occurred_at: Utc::now(),
            details,
        }
    }
}

impl EventRecord {
    /// A recorded `redirect` event as the click the analytics service folds
    /// into the link's statistics: its id, link, owner and time, and the
    /// `user_agent` and `referrer` of its `details` when they are strings
    /// (what the breakdowns classify, as for a redirect's click).
    pub fn as_click(&self, user_id: i64, short_code: &str) -> Click {
        let text = |key: &str| {
            self.details
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Click {
            event_id: self.event_id,
            url_id: self.url_id.unwrap_or_default(),
            user_id: self.user_id.unwrap_or(user_id),
            short_code: short_code.to_owned(),
            occurred_at: self.occurred_at,
            user_agent: text("user_agent"),
            referrer: text("referrer"),
            ip: None,
            outcome: None,
        }
    }
}

/// Filters of `GET /events`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub url_id: Option<i64>,
    pub user_id: Option<i64>,
    pub event_type: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the breakdowns classify comes from `details` strings; anything
    /// else is absent (an unknown agent, a direct visit).
    #[test]
    fn a_recorded_redirect_as_a_click() {
        let record = EventRecord::now(
            7,
            3,
            "redirect",
            serde_json::json!({"user_agent": "curl/8.5.0", "referrer": "https://t.co/x", "ip": "1.2.3.0"}),
        );
        let click = record.as_click(3, "abc123");
        assert_eq!(click.event_id, record.event_id);
        assert_eq!((click.url_id, click.user_id), (7, 3));
        assert_eq!(click.short_code, "abc123");
        assert_eq!(click.occurred_at, record.occurred_at);
        assert_eq!(click.user_agent.as_deref(), Some("curl/8.5.0"));
        assert_eq!(click.referrer.as_deref(), Some("https://t.co/x"));
        assert_eq!(click.ip, None);
        let odd = EventRecord::now(7, 3, "redirect", serde_json::json!({"referrer": 7}));
        let click = odd.as_click(3, "abc123");
        assert_eq!((click.user_agent, click.referrer), (None, None));
    }
}
