//! What a request leaves in the click buffer: a compact [`ClickRecord`].
//!
//! The request path only copies what it must (ids, the code, the two
//! headers cut to their bounded length, the anonymized address as an
//! `IpAddr`, the time); the publisher task turns records into
//! [`Click`] events (making each event's ULID from the click's own time,
//! formatting the address) right before it encodes a batch. So no random
//! numbers, no address formatting and no JSON on the request path.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use shortline_shared::events::Click;

use crate::code::CodeKey;
use crate::policy::Outcome;

/// One redirect, as buffered for publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickRecord {
    pub url_id: i64,
    pub user_id: i64,
    pub short_code: CodeKey,
    pub occurred_at: DateTime<Utc>,
    pub user_agent: Option<Box<str>>,
    pub referrer: Option<Box<str>>,
    /// Already anonymized (see [`crate::clicks::anonymize`]).
    pub ip: Option<IpAddr>,
    /// Which URL of a link with rules it went to (`None`: a plain link).
    pub outcome: Option<Outcome>,
}

impl ClickRecord {
    /// The click event: its id is a ULID whose time part is the click's.
    pub fn into_click(self) -> Click {
        Click {
            event_id: ulid::Ulid::from_datetime(self.occurred_at.into()),
            url_id: self.url_id,
            user_id: self.user_id,
            short_code: self.short_code.as_str().to_owned(),
            occurred_at: self.occurred_at,
            user_agent: self.user_agent.map(Into::into),
            referrer: self.referrer.map(Into::into),
            ip: self.ip.map(|ip| ip.to_string()),
            outcome: self.outcome.map(Outcome::label),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_becomes_the_click_the_handler_used_to_make() {
        let at = Utc::now();
        let click = ClickRecord {
            url_id: 3,
            user_id: 4,
            short_code: CodeKey::new("abc"),
            occurred_at: at,
            user_agent: Some("curl/8".into()),
            referrer: None,
            ip: Some("198.51.100.0".parse().expect("ip")),
            outcome: None,
        }
        .into_click();
        assert_eq!(
            (click.url_id, click.user_id, click.short_code.as_str()),
            (3, 4, "abc")
        );
        assert_eq!(click.occurred_at, at);
        assert_eq!(click.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(click.referrer, None);
        assert_eq!(click.ip.as_deref(), Some("198.51.100.0"));
        assert_eq!(click.outcome, None);
        assert_eq!(
            click.event_id.timestamp_ms(),
            u64::try_from(at.timestamp_millis()).expect("after 1970")
        );
    }
}
