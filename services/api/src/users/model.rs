//! User records and the bodies that create or change them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::ids::UserId;
use crate::validate::{Fields, FromJson};

/// Longest `username` or `email`, in bytes, wherever it comes from (JSON or
/// CSV): both columns carry a B-tree index, which refuses entries above
/// ~2.7 kB.
pub const MAX_USER_FIELD_BYTES: usize = 1_024;

/// A user as the contract shows it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
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
    /// Non-empty, unique among users, at most 1024 bytes.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"\S"))]
    pub username: String,
    /// A valid address, unique among users (case-insensitive), at most 1024
    /// bytes.
    #[schemars(email, length(max = 1024))]
    pub email: String,
}

impl FromJson for NewUser {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let username = f
            .required_string("username")
            .and_then(|u| checked_len(f, "username", u));
        let email = f
            .required_string("email")
            .and_then(|e| checked_len(f, "email", e))
            .and_then(|e| checked_email(f, e));
        Some(NewUser {
            username: username?,
            email: email?,
        })
    }
}

/// `PUT /users/{id}` body: any subset of the fields; `{}` changes nothing.
#[derive(Debug, Clone, Default, JsonSchema)]
#[schemars(transform = crate::validate::drop_null_defaults)]
pub struct UserPatch {
    /// When present: as in `POST /users` (not `null`).
    #[schemars(with = "String", default)]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"\S"))]
    pub username: Option<String>,
    /// When present: as in `POST /users` (not `null`).
    #[schemars(with = "String", default)]
    #[schemars(email, length(max = 1024))]
    pub email: Option<String>,
}

impl UserPatch {
    pub fn is_empty(&self) -> bool {
        self.username.is_none() && self.email.is_none()
    }
}

impl FromJson for UserPatch {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let username = nonnull_string(f, "username").and_then(|u| checked_len(f, "username", u));
        let email = nonnull_string(f, "email")
            .and_then(|e| checked_len(f, "email", e))
            .and_then(|e| checked_email(f, e));
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

/// `Err` when a username or email is longer than [`MAX_USER_FIELD_BYTES`].
pub fn check_user_field_len(value: &str) -> Result<(), &'static str> {
    if value.len() > MAX_USER_FIELD_BYTES {
        Err("must be at most 1024 bytes")
    } else {
        Ok(())
    }
}

fn checked_len(f: &mut Fields<'_>, field: &str, value: String) -> Option<String> {
    match check_user_field_len(&value) {
        Ok(()) => Some(value),
        Err(problem) => {
            f.error(field, problem);
            None
        }
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
    use super::{MAX_USER_FIELD_BYTES, check_user_field_len, is_valid_email};

    #[test]
    fn length_limit_is_in_bytes() {
        assert!(check_user_field_len(&"a".repeat(MAX_USER_FIELD_BYTES)).is_ok());
        assert!(check_user_field_len(&"a".repeat(MAX_USER_FIELD_BYTES + 1)).is_err());
        assert!(check_user_field_len(&"é".repeat(MAX_USER_FIELD_BYTES / 2 + 1)).is_err());
    }

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
