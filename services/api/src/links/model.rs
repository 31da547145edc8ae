//! Link records and the bodies that create or change them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use shortline_shared::events::LinkSnapshot;
use shortline_shared::link_rules::Rule;
use shortline_shared::target_url;

use super::rules::{self, Password, RuleSettings};
use super::{codes, tags};
use crate::ids::{LinkId, UserId};
use crate::validate::{Fields, FromJson};

/// A link (the contract calls it a url).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct Link {
    pub id: LinkId,
    pub user_id: UserId,
    pub short_code: String,
    /// The address that redirects: `PUBLIC_BASE_URL` and the code.
    #[sqlx(skip)]
    #[schemars(example = "http://127.0.0.1:8000/abc123")]
    pub short_url: String,
    pub original_url: String,
    pub title: Option<String>,
    /// Normalised tags (lower-case), sorted; `[]`: none.
    #[schemars(example = tags_example())]
    pub tags: Vec<String>,
    pub is_active: bool,
    /// The custom domain the link lives on (its host); `null`: the default
    /// domain (the host of `PUBLIC_BASE_URL`).
    #[schemars(example = "go.example.com")]
    pub domain: Option<String>,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2025-06-04T00:07:00")]
    pub created_at: DateTime<Utc>,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2025-11-19T03:17:29")]
    pub updated_at: DateTime<Utc>,
    /// The redirect's status: 301, 302, 307 or 308.
    #[schemars(with = "rules::RedirectTypeSchema", example = 302)]
    pub redirect_type: i16,
    /// From this time on the link is expired (410 Gone, or a redirect to
    /// `fallback_url`); `YYYY-MM-DDTHH:MM:SS`, UTC; `null`: never.
    #[serde(with = "shortline_shared::wire::timestamp_opt")]
    #[schemars(with = "Option<String>", example = "2026-12-31T23:59:59")]
    pub expires_at: Option<DateTime<Utc>>,
    /// After this many redirects the link is exhausted (answers as expired);
    /// `null`: no limit.
    #[schemars(range(min = 1), example = 1000)]
    pub max_clicks: Option<i64>,
    /// Where expired and exhausted requests go instead of a 410; `null`: none.
    #[schemars(example = "https://example.com/campaign-over")]
    pub fallback_url: Option<String>,
    /// Whether the request's query string is merged into the target's.
    pub forward_query: bool,
    /// Targeting rules, first match wins (else `original_url`); `[]`: none.
    #[sqlx(json)]
    #[schemars(example = rules_example())]
    pub rules: Vec<Rule>,
    /// Whether a password guards the link (the password is never shown).
    pub password_protected: bool,
    /// Visits counted by the shortener the link was imported from
    /// (`shortline-api import`); Shortline's own are in its statistics.
    pub imported_visits: i64,
}

/// The `tags` example of the OpenAPI document.
pub fn tags_example() -> serde_json::Value {
    serde_json::json!(["newsletter", "q4 launch"])
}

/// The `rules` example of the OpenAPI document: German-speaking phone
/// users to a German mobile page, other iPhones and iPads to an app store.
pub fn rules_example() -> serde_json::Value {
    serde_json::json!([
        {"when": {"device": ["mobile"], "language": ["de"]}, "target": "https://example.com/de/mobile"},
        {"when": {"device": ["mobile", "tablet"], "os": ["ios"]}, "target": "https://apps.example.com/app/shortline"}
    ])
}

impl Link {
    /// The state other services need to route and cache this link.
    pub fn snapshot(&self) -> LinkSnapshot {
        LinkSnapshot {
            id: self.id.get(),
            user_id: self.user_id.get(),
            short_code: self.short_code.clone(),
            domain: self.domain.clone(),
            original_url: self.original_url.clone(),
            is_active: self.is_active,
            updated_at: self.updated_at,
        }
    }

    /// Its rule settings (everything of issue #15 but the password).
    pub fn settings(&self) -> RuleSettings {
        RuleSettings {
            redirect_type: self.redirect_type,
            expires_at: self.expires_at,
            max_clicks: self.max_clicks,
            fallback_url: self.fallback_url.clone(),
            forward_query: self.forward_query,
            rules: self.rules.clone(),
        }
    }
}

/// `POST /urls` body.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(transform = crate::validate::drop_null_defaults)]
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
    /// Up to 20 tags, each 1–50 characters of letters, digits, `-`, `_`,
    /// `.` and spaces; stored trimmed, lower-cased, with inner spaces
    /// collapsed, sorted and without duplicates (400 naming `tags`
    /// otherwise).
    #[schemars(with = "Vec<String>", default, example = tags_example())]
    pub tags: Vec<String>,
    /// The redirect's status: 301, 302, 307 or 308. Default: the server's
    /// `DEFAULT_REDIRECT_TYPE` (302 unless configured).
    #[schemars(with = "rules::RedirectTypeSchema", default, example = 301)]
    pub redirect_type: Option<i16>,
    /// When the link expires: RFC 3339 with an offset, or
    /// `YYYY-MM-DDTHH:MM:SS` (UTC); to the second. A past time is accepted
    /// (the link is expired at once).
    #[schemars(with = "Option<String>", example = "2026-12-31T23:59:59Z")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Exhausted after this many redirects (a positive integer).
    #[schemars(range(min = 1), example = 1000)]
    pub max_clicks: Option<i64>,
    /// Where expired and exhausted requests go instead of a 410 (the rules
    /// of `original_url`).
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]"),
        example = "https://example.com/campaign-over"
    )]
    pub fallback_url: Option<String>,
    /// Merge the request's query string into the target's (strict boolean;
    /// default `false`).
    #[schemars(with = "bool", default)]
    pub forward_query: bool,
    /// Up to 20 rules `{when, target}`, first match wins: `when` has at
    /// least one of `device` (mobile, tablet, desktop, bot, other), `os`
    /// (ios, android, windows, macos, linux, chromeos, other), `language`
    /// (tags like `de`, `pt-BR`), each a list of 1–20 values; `target` has
    /// the rules of `original_url`. Problems are 422 with the path of the
    /// bad value in `details` (`rules[0].when.device[1]`).
    #[schemars(with = "Vec<Rule>", default, example = rules_example())]
    pub rules: Vec<Rule>,
    /// Guards the link with a password (1–256 characters, stored only as
    /// an argon2id hash, never returned).
    #[schemars(with = "Option<String>", length(min = 1, max = 256))]
    pub password: Option<Password>,
    /// A custom domain (`POST /domains`) to create the link on, by host;
    /// 404 when there is no such domain. Default: the default domain. The
    /// same `short_code` may exist once per domain.
    #[schemars(example = "go.example.com")]
    pub domain: Option<String>,
    /// When the caller (this `user_id`) already has an active link to this
    /// `original_url` (and this `short_code`, when given), answer that link
    /// with 200 instead of creating one (strict boolean; default `false`).
    #[schemars(with = "bool", default)]
    pub find_if_exists: bool,
}

impl FromJson for NewLink {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let user_id = f.required_id("user_id").map(UserId::new);
        let original_url = f
            .required_exact_string("original_url")
            .and_then(|u| checked_url(f, u));
        let title = f.nullable_string("title").flatten();
        let tags = tags::read(f).unwrap_or_default();
        let short_code =
            f.optional_exact_string("short_code")
                .and_then(|c| match codes::check_custom(&c) {
                    Ok(()) => Some(Some(c)),
                    Err(problem) => {
                        f.error("short_code", problem);
                        None
                    }
                });
        let redirect_type = rules::read_redirect_type(f, true);
        let expires_at = rules::read_expires_at(f).flatten();
        let max_clicks = rules::read_max_clicks(f).flatten();
        let fallback_url = rules::read_fallback_url(f).flatten();
        let forward_query = f.optional_bool("forward_query").unwrap_or(false);
        let rules = rules::read_rules(f).unwrap_or_default();
        let password = rules::read_password(f).flatten();
        let domain = f.optional_string("domain");
        let find_if_exists = f.optional_bool("find_if_exists").unwrap_or(false);
        if f.has_problems() {
            return None;
        }
        Some(NewLink {
            domain,
            user_id: user_id?,
            original_url: original_url?,
            title,
            short_code: short_code.flatten(),
            tags,
            redirect_type,
            expires_at,
            max_clicks,
            fallback_url,
            forward_query,
            rules,
            password,
            find_if_exists,
        })
    }
}

/// `PUT /urls/{id}` body: any of the fields; `{}` changes nothing.
#[derive(Debug, Clone, Default, JsonSchema)]
#[schemars(transform = crate::validate::drop_null_defaults)]
pub struct LinkPatch {
    /// A string, or `null` to clear it.
    pub title: Option<Option<String>>,
    /// The link's new tags (the rules of `POST /urls`), replacing its own;
    /// `null` or `[]` removes them.
    #[schemars(with = "Option<Vec<String>>", example = tags_example())]
    pub tags: Option<Vec<String>>,
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
    /// 301, 302, 307 or 308 (not `null`).
    #[schemars(with = "rules::RedirectTypeSchema", default, example = 308)]
    pub redirect_type: Option<i16>,
    /// RFC 3339 with an offset, or `YYYY-MM-DDTHH:MM:SS` (UTC); `null`
    /// clears it.
    #[schemars(with = "Option<String>", example = "2026-12-31T23:59:59Z")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A positive integer; `null` clears it.
    #[schemars(with = "Option<i64>", range(min = 1), example = 1000)]
    pub max_clicks: Option<Option<i64>>,
    /// The rules of `original_url`; `null` clears it.
    #[schemars(with = "Option<String>", example = "https://example.com/campaign-over")]
    pub fallback_url: Option<Option<String>>,
    /// Strict boolean (not `null`).
    #[schemars(with = "bool", default)]
    pub forward_query: Option<bool>,
    /// The rules of `POST /urls`, replacing the link's; `null` or `[]`
    /// removes them.
    #[schemars(with = "Option<Vec<Rule>>", example = rules_example())]
    pub rules: Option<Vec<Rule>>,
    /// A new password (1–256 characters); `null` removes the protection.
    #[schemars(with = "Option<String>", length(min = 1, max = 256))]
    pub password: Option<Option<Password>>,
}

impl LinkPatch {
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.tags.is_none()
            && self.is_active.is_none()
            && self.original_url.is_none()
            && self.redirect_type.is_none()
            && self.expires_at.is_none()
            && self.max_clicks.is_none()
            && self.fallback_url.is_none()
            && self.forward_query.is_none()
            && self.rules.is_none()
            && self.password.is_none()
    }
}

impl FromJson for LinkPatch {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let title = f.nullable_string("title");
        let tags = tags::read(f);
        let is_active = f.optional_bool("is_active");
        let original_url = if f.has("original_url") {
            f.required_exact_string("original_url")
                .and_then(|u| checked_url(f, u))
        } else {
            None
        };
        let redirect_type = rules::read_redirect_type(f, false);
        let expires_at = rules::read_expires_at(f);
        let max_clicks = rules::read_max_clicks(f);
        let fallback_url = rules::read_fallback_url(f);
        let forward_query = f.optional_bool("forward_query");
        let rules = rules::read_rules(f);
        let password = rules::read_password(f);
        Some(LinkPatch {
            title,
            tags,
            is_active,
            original_url,
            redirect_type,
            expires_at,
            max_clicks,
            fallback_url,
            forward_query,
            rules,
            password,
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
