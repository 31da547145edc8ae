//! User records and the bodies that create or change them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::validate::{Fields, FromJson};

/// A user as the contract shows it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2025-09-19T22:25:05")]
    pub created_at: DateTime<Utc>,
}

/// `POST /users` body.
#[derive(Debug, Clone, JsonSchema)]
pub struct NewUser {
    /// Non-empty, unique among users.
    pub username: String,
    /// A valid address, unique among users (case-insensitive).
    pub email: String,
}

impl FromJson for NewUser {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let username = f.required_string("username");
        let email = f.required_string("email").and_then(|e| checked_email(f, e));
        Some(NewUser {
            username: username?,
            email: email?,
        })
    }
}

/// `PUT /users/{id}` body: any subset of the fields; `{}` changes nothing.
#[derive(Debug, Clone, Default, JsonSchema)]
pub struct UserPatch {
    pub username: Option<String>,
    pub email: Option<String>,
}

impl UserPatch {
    pub fn is_empty(&self) -> bool {
        self.username.is_none() && self.email.is_none()
    }
}

impl FromJson for UserPatch {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let username = nonnull_string(f, "username");
        let email = nonnull_string(f, "email").and_then(|e| checked_email(f, e));
        Some(UserPatch { username, email })
    }
}

/// An optional string field that, when present, must be a non-empty string.
fn nonnull_string(f: &mut Fields<'_>, field: &str) -> Option<String> {
    if f.has(field) {
        f.required_string(field)
    } else {
        None
    }
}

fn checked_email(f: &mut Fields<'_>, email: String) -> Option<String> {
    if is_valid_email(&email) {
        Some(email)
    } else {
        f.error("email", "must be a valid address");
        None
    }
}

/// RFC 5322 syntax (via `email_address`) with a top-level domain, no display
/// name and no domain literal: what a deliverable public address looks like.
pub fn is_valid_email(s: &str) -> bool {
    let options = email_address::Options::default()
        .with_required_tld()
        .without_display_text()
        .without_domain_literal();
    email_address::EmailAddress::parse_with_options(s, options).is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_valid_email;

    #[test]
    fn email_rules() {
        for ok in ["a@b.io", "first.last+tag@sub.example.com"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "a@b",
            "@x.io",
            "a@",
            "a b@x.io",
            "Name <a@b.io>",
            "a@.io",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }
}
