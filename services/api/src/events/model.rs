//! Event-log records (`created`, `updated`, `deleted`, `redirect`, or any
//! type a client records) and the body of `POST /events`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

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

/// Filters of `GET /events`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub url_id: Option<i64>,
    pub user_id: Option<i64>,
    pub event_type: Option<String>,
}
