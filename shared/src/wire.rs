//! The public contract's wire formats.
//!
//! Timestamps travel as `YYYY-MM-DDTHH:MM:SS` in UTC with no fraction and no
//! zone (`2025-09-19T22:25:05`); storage keeps full precision.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// The contract's timestamp format.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// Longest short code a link can have.
pub const MAX_SHORT_CODE_LEN: usize = 64;

/// Whether a byte may appear in a short code: ASCII letters, digits, `-`
/// and `_` (generated codes are base62; custom and imported ones are held to
/// the same rule, so no code ever needs percent-decoding).
pub fn is_short_code_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Whether `code` has the shape of a short code: 1 to
/// [`MAX_SHORT_CODE_LEN`] bytes, each [`is_short_code_byte`]. The write side
/// accepts nothing else and the redirect side looks nothing else up.
pub fn is_short_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= MAX_SHORT_CODE_LEN && code.bytes().all(is_short_code_byte)
}

/// Formats a timestamp the way the contract shows it.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.format(TIMESTAMP_FORMAT).to_string()
}

/// Parses the timestamps clients and CSV files send: the contract's own
/// format, the seed files' `YYYY-MM-DD HH:MM:SS`, either with a fraction, and
/// full RFC 3339 with an offset (converted to UTC).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

/// `#[serde(with = "shortline_shared::wire::timestamp")]` for `DateTime<Utc>`.
pub mod timestamp {
    use super::*;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&t.format(TIMESTAMP_FORMAT))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        parse_timestamp(&s).ok_or_else(|| serde::de::Error::custom("invalid timestamp"))
    }
}

/// The same as [`timestamp`] for `Option<DateTime<Utc>>`.
pub mod timestamp_opt {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&t.format(TIMESTAMP_FORMAT)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse_timestamp(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("invalid timestamp")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_without_fraction_or_zone() {
        let t = parse_timestamp("2025-09-19 22:25:05.123456").expect("parses");
        assert_eq!(format_timestamp(&t), "2025-09-19T22:25:05");
    }

    #[test]
    fn accepts_every_documented_input_shape() {
        for s in [
            "2025-09-19T22:25:05",
            "2025-09-19 22:25:05",
            "2025-09-19T22:25:05.5",
            "2025-09-19T22:25:05Z",
            "2025-09-20T00:25:05+02:00",
        ] {
            let t = parse_timestamp(s).unwrap_or_else(|| panic!("{s} should parse"));
            assert_eq!(format_timestamp(&t), "2025-09-19T22:25:05", "{s}");
        }
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("2025-13-01 00:00:00").is_none());
    }
}
