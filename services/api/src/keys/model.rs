//! API keys as the API shows them, the body that creates one, and the key
//! text itself (`sl_<public id>_<secret>`).

use chrono::{DateTime, Utc};
use rand::RngExt;
use schemars::JsonSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::validate::{Fields, FromJson};

/// Characters of the visible public id.
const PUBLIC_ID_LEN: usize = 12;
/// Characters of the secret: 32 base62 characters are ~190 bits.
const SECRET_LEN: usize = 32;
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Longest key name.
pub const MAX_NAME_LEN: usize = 200;
/// Largest per-key rate limit.
pub const MAX_RATE_LIMIT: i64 = 1_000_000;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Admin,
    /// Act as this one user: their links and events only, no user or key
    /// management.
    User(i64),
}

/// A key as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct ApiKey {
    pub id: i64,
    /// The visible part of the key (`sl_<public id>`), to find a leaked key.
    pub prefix: String,
    pub name: String,
    /// `admin` or `user`.
    pub kind: String,
    /// The user a `user` key acts as; `null` for admin keys.
    pub user_id: Option<i64>,
    /// Requests per minute; `null`: the server's default.
    pub rate_limit_per_minute: Option<i32>,
    /// `YYYY-MM-DDTHH:MM:SS` (UTC), or `null` (never expires).
    #[serde(with = "shortline_shared::wire::timestamp_opt")]
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used (kept to within about a minute), or `null`.
    #[serde(with = "shortline_shared::wire::timestamp_opt")]
    #[schemars(with = "Option<String>")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked, or `null`.
    #[serde(with = "shortline_shared::wire::timestamp_opt")]
    #[schemars(with = "Option<String>")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2026-12-04T10:00:00")]
    pub created_at: DateTime<Utc>,
}

impl ApiKey {
    pub fn scope(&self) -> Scope {
        match self.user_id {
            None => Scope::Admin,
            Some(user) => Scope::User(user),
        }
    }
}

/// `201` answer of `POST /keys`: the key and, this one time, its text.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The whole key. Shown only here: store it now.
    #[serde(rename = "key")]
    pub secret: String,
}

/// `POST /keys` body.
#[derive(Debug, Clone, JsonSchema)]
pub struct NewKey {
    /// The user the key acts as; `null` (or absent) for an admin key.
    #[schemars(range(min = 1))]
    pub user_id: Option<i64>,
    /// What the key is for (1–200 characters).
    #[schemars(length(min = 1, max = 200), regex(pattern = r"\S"))]
    pub name: String,
    /// RFC 3339 or `YYYY-MM-DDTHH:MM:SS` (UTC), in the future; `null`: never.
    #[schemars(with = "Option<String>", length(min = 1))]
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute for this key (1–1,000,000); `null`: the server's
    /// default.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub rate_limit_per_minute: Option<i32>,
}

impl FromJson for NewKey {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let user_id = f.optional_id("user_id");
        let name = f.required_string("name");
        if name
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NAME_LEN)
        {
            f.error("name", format!("must be at most {MAX_NAME_LEN} characters"));
        }
        let expires_at = f.optional_exact_string("expires_at").and_then(|s| {
            match parse_expiry(&s, Utc::now()) {
                Ok(t) => Some(t),
                Err(problem) => {
                    f.error("expires_at", problem);
                    None
                }
            }
        });
        let rate_limit = f.optional_id("rate_limit_per_minute");
        if rate_limit.is_some_and(|r| r > MAX_RATE_LIMIT) {
            f.error(
                "rate_limit_per_minute",
                format!("must be at most {MAX_RATE_LIMIT}"),
            );
        }
        if f.has_errors() {
            return None;
        }
        Some(NewKey {
            user_id,
            name: name?,
            expires_at,
            rate_limit_per_minute: rate_limit.and_then(|r| i32::try_from(r).ok()),
        })
    }
}

/// An expiry time: RFC 3339 or the contract's timestamp format, in the
/// future.
pub fn parse_expiry(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, &'static str> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| shortline_shared::wire::parse_timestamp(s))
        .ok_or("must be an RFC 3339 timestamp (or YYYY-MM-DDTHH:MM:SS, UTC)")?;
    if t <= now {
        return Err("must be in the future");
    }
    Ok(t)
}

/// A freshly made key: its text (shown once), public id and secret hash.
pub struct KeyMaterial {
    pub text: String,
    pub public_id: String,
    pub secret_hash: [u8; 32],
}

impl KeyMaterial {
    pub fn generate() -> Self {
        let public_id = random_base62(PUBLIC_ID_LEN);
        let secret = random_base62(SECRET_LEN);
        Self {
            text: format!("sl_{public_id}_{secret}"),
            secret_hash: hash_secret(&secret),
            public_id,
        }
    }
}

/// A presented key split into its public id and secret, if it has the
/// shape of one.
pub fn parse_key(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("sl_")?;
    let (public_id, secret) = rest.split_once('_')?;
    let base62 =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (base62(public_id, PUBLIC_ID_LEN) && base62(secret, SECRET_LEN)).then_some((public_id, secret))
}

/// SHA-256 of a key's secret (what the database keeps).
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn random_base62(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_to_their_parts() {
        let key = KeyMaterial::generate();
        let (public_id, secret) = parse_key(&key.text).expect("parses");
        assert_eq!(public_id, key.public_id);
        assert_eq!(hash_secret(secret), key.secret_hash);
        assert_ne!(KeyMaterial::generate().text, key.text);
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let good = KeyMaterial::generate().text;
        for bad in [
            "",
            "sl_",
            "sl_abc_def",
            &good[1..],
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replace("sl_", "sk_"),
            &format!("{}-{}", &good[..15], &good[16..]),
        ] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn expiry_must_be_a_future_time() {
        let now = Utc::now();
        assert!(parse_expiry("2999-01-01T00:00:00Z", now).is_ok());
        assert!(parse_expiry("2999-01-01T00:00:00", now).is_ok());
        assert!(parse_expiry("2000-01-01T00:00:00Z", now).is_err());
        assert!(parse_expiry("tomorrow", now).is_err());
    }
}
