//! Parsing one CSV field: text (UTF-8, no NUL), required and optional
//! cells, ids up to [`MAX_IMPORTED_ID`], timestamps, booleans and event
//! `details`. Every problem is a message naming the column.

use chrono::{DateTime, Datelike, Utc};
use csv::ByteRecord;
use serde_json::Value;

use crate::validate::holds_nul;

/// Longest value accepted in a column with a B-tree index (PostgreSQL
/// rejects index entries above ~2.7 kB, which would fail a whole batch).
pub(super) const MAX_INDEXED_BYTES: usize = 1_024;
/// Largest id an import accepts: 2^53 − 1 (see the module docs of `import`).
pub const MAX_IMPORTED_ID: i64 = (1 << 53) - 1;

/// A field as text (`Ok("")` when empty); PostgreSQL text cannot hold NUL.
pub(super) fn text<'r>(
    record: &'r ByteRecord,
    idx: usize,
    column: &str,
) -> Result<&'r str, String> {
    let raw = record.get(idx).unwrap_or_default();
    let s = std::str::from_utf8(raw).map_err(|_| format!("{column}: not valid UTF-8"))?;
    if s.contains('\0') {
        return Err(format!("{column}: contains a NUL character"));
    }
    Ok(s)
}

/// An optional column's field: `None` when the column is absent or the cell empty.
pub(super) fn optional<'r>(
    record: &'r ByteRecord,
    idx: Option<usize>,
    column: &str,
) -> Result<Option<&'r str>, String> {
    match idx {
        None => Ok(None),
        Some(i) => text(record, i, column).map(|s| (!s.is_empty()).then_some(s)),
    }
}

/// A required, non-empty field.
pub(super) fn required<'r>(
    record: &'r ByteRecord,
    idx: usize,
    column: &str,
) -> Result<&'r str, String> {
    match text(record, idx, column)? {
        "" => Err(format!("{column}: must not be empty")),
        s => Ok(s),
    }
}

/// A value for a column with a B-tree index.
pub(super) fn indexed<'s>(s: &'s str, column: &str) -> Result<&'s str, String> {
    if s.len() > MAX_INDEXED_BYTES {
        return Err(format!("{column}: longer than {MAX_INDEXED_BYTES} bytes"));
    }
    Ok(s)
}

/// A positive integer id up to [`MAX_IMPORTED_ID`] (a spreadsheet's `12.0`
/// is accepted as 12).
pub(super) fn parse_id(s: &str, column: &str) -> Result<i64, String> {
    let digits = s.strip_suffix(".0").unwrap_or(s);
    match digits.parse::<i64>() {
        Ok(id) if id > MAX_IMPORTED_ID => Err(format!(
            "{column}: must be at most {MAX_IMPORTED_ID}, got {:?}",
            clip(s)
        )),
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "{column}: must be a positive integer, got {:?}",
            clip(s)
        )),
    }
}

pub(super) fn parse_optional_id(s: Option<&str>, column: &str) -> Result<Option<i64>, String> {
    s.map(|s| parse_id(s, column)).transpose()
}

/// A timestamp the contract accepts, within years 1–9999 (PostgreSQL's
/// range is narrower than chrono's).
pub(super) fn parse_time(s: &str, column: &str) -> Result<DateTime<Utc>, String> {
    match shortline_shared::wire::parse_timestamp(s) {
        Some(t) if (1..=9999).contains(&t.year()) => Ok(t),
        _ => Err(format!(
            "{column}: must be a timestamp like 2025-09-19 22:25:05, got {:?}",
            clip(s)
        )),
    }
}

pub(super) fn parse_optional_time(
    s: Option<&str>,
    column: &str,
) -> Result<Option<DateTime<Utc>>, String> {
    s.map(|s| parse_time(s, column)).transpose()
}

/// `True`/`False` as the seed files write them, and the usual spellings.
pub(super) fn parse_bool(s: &str, column: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" => Ok(true),
        "false" | "f" | "0" | "no" => Ok(false),
        _ => Err(format!(
            "{column}: must be True or False, got {:?}",
            clip(s)
        )),
    }
}

/// `details` as a JSON object: objects as given, other JSON values and
/// non-JSON text wrapped as `{"value": …}`, empty as `{}`. `Err` when the
/// JSON holds a NUL (`\u0000`), which `jsonb` rejects.
pub(super) fn details_object(raw: &str) -> Result<Value, String> {
    if raw.is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    let value = match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => serde_json::json!({ "value": other }),
        Err(_) => serde_json::json!({ "value": raw }),
    };
    if holds_nul(&value) {
        return Err("details: contains a NUL character".into());
    }
    Ok(value)
}

/// The start of a value, for error messages.
pub(super) fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_rules() {
        assert_eq!(parse_id("12", "id"), Ok(12));
        assert_eq!(parse_id("12.0", "id"), Ok(12));
        for bad in [
            "0",
            "-3",
            "1.5",
            "x",
            "99999999999999999999",
            "9223372036854775807",
            "9007199254740992",
        ] {
            assert!(parse_id(bad, "id").is_err(), "{bad}");
        }
        assert_eq!(parse_id("9007199254740991", "id"), Ok(MAX_IMPORTED_ID));
        for (s, v) in [
            ("True", true),
            ("False", false),
            ("true", true),
            ("0", false),
            ("1", true),
        ] {
            assert_eq!(parse_bool(s, "b"), Ok(v), "{s}");
        }
        assert!(parse_bool("maybe", "b").is_err());
        assert!(parse_time("+20000-01-01T00:00:00", "t").is_err());
        assert_eq!(
            details_object("").map(|v| v.to_string()),
            Ok("{}".to_owned())
        );
        assert_eq!(
            details_object("3").map(|v| v.to_string()),
            Ok(r#"{"value":3}"#.to_owned())
        );
        assert!(details_object(r#"{"a":"\u0000"}"#).is_err());
        assert!(indexed(&"x".repeat(MAX_INDEXED_BYTES + 1), "event_type").is_err());
    }
}
