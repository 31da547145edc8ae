//! Link records and the bodies that create or change them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use shortline_shared::events::LinkSnapshot;
use shortline_shared::target_url;

use super::codes;
use crate::ids::{LinkId, UserId};
use crate::validate::{Fields, FromJson};

/// A link (the contract calls it a url).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct Link {
    pub id: LinkId,
    pub user_id: UserId,
    pub short_code: String,
    pub original_url: String,
    pub title: Option<String>,
    pub is_active: bool,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2025-06-04T00:07:00")]
    pub created_at: DateTime<Utc>,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2025-11-19T03:17:29")]
    pub updated_at: DateTime<Utc>,
}

impl Link {
    /// The state other services need to route and cache this link.
    pub fn snapshot(&self) -> LinkSnapshot {
        LinkSnapshot {
            id: self.id.get(),
            user_id: self.user_id.get(),
            short_code: self.short_code.clone(),
            original_url: self.original_url.clone(),
            is_active: self.is_active,
            updated_at: self.updated_at,
        }
    }
}

/// `POST /urls` body.
#[derive(Debug, Clone, JsonSchema)]
pub struct NewLink {
    /// An existing user.
    #[schemars(range(min = 1))]
    pub user_id: UserId,
    /// Absolute `http` or `https` URL with a host, no whitespace.
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]")
    )]
    pub original_url: String,
    pub title: Option<String>,
    /// Optional custom code: 1–64 of `[A-Za-z0-9_-]`; 409 when taken.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub short_code: Option<String>,
}

impl FromJson for NewLink {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let user_id = f.required_id("user_id").map(UserId::new);
        let original_url = f
            .required_exact_string("original_url")
            .and_then(|u| checked_url(f, u));
        let title = f.nullable_string("title").flatten();
        let short_code =
            f.optional_exact_string("short_code")
                .and_then(|c| match codes::check_custom(&c) {
                    Ok(()) => Some(Some(c)),
                    Err(problem) => {
                        f.error("short_code", problem);
                        None
                    }
                });
        if f.has_errors() {
            return None;
        }
        Some(NewLink {
            user_id: user_id?,
            original_url: original_url?,
            title,
            short_code: short_code.flatten(),
        })
    }
}

/// `PUT /urls/{id}` body: any of the fields; `{}` changes nothing.
#[derive(Debug, Clone, Default, JsonSchema)]
#[schemars(transform = crate::validate::drop_null_defaults)]
pub struct LinkPatch {
    /// A string, or `null` to clear it.
    pub title: Option<Option<String>>,
    /// Strict boolean (not `null`).
    #[schemars(with = "bool", default)]
    pub is_active: Option<bool>,
    /// Absolute `http` or `https` URL with a host (not `null`).
    #[schemars(with = "String", default)]
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]")
    )]
    pub original_url: Option<String>,
}

impl LinkPatch {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.is_active.is_none() && self.original_url.is_none()
    }
}

impl FromJson for LinkPatch {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let title = f.nullable_string("title");
        let is_active = f.optional_bool("is_active");
        let original_url = if f.has("original_url") {
            f.required_exact_string("original_url")
                .and_then(|u| checked_url(f, u))
        } else {
            None
        };
        Some(LinkPatch {
            title,
            is_active,
            original_url,
        })
    }
}

fn checked_url(f: &mut Fields<'_>, url: String) -> Option<String> {
    match check_url(&url) {
        Ok(()) => Some(url),
        Err(problem) => {
            f.error("original_url", problem);
            None
        }
    }
}

/// Why a target URL is unusable, if it is: it must be an absolute `http` or
/// `https` URL with a host, without whitespace, control characters or
/// userinfo, at most 2048 bytes (the shared rule,
/// [`shortline_shared::target_url`], that the redirect applies too).
pub fn check_url(s: &str) -> Result<(), &'static str> {
    target_url::parse(s).map(drop).map_err(|e| e.problem())
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn url_rules() {
        for ok in [
            "https://example.com",
            "http://a.b/c?d=e#f",
            "https://127.0.0.1:8080/x",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "hello",
            "example.com",
            "ftp://x",
            " https://x.io",
            "https://x.io/a b",
            "https://",
            "http:///path",
            "http:x.io",
            "javascript:alert(1)",
            "",
            "https://:80/x",
            "https://x.io/\u{7}",
            "https://x.io/\u{1b}",
            "https://x.io/\u{7f}",
            "https://trusted.com@evil.com/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
