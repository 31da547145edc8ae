//! Field-by-field reading of JSON request bodies, collecting every problem
//! so one response names each bad field. No HTTP types here: domain models
//! implement [`FromJson`] and stay independent of the web framework.
//!
//! Every reader refuses a NUL character (`\u0000`) in what it returns,
//! nested keys and values of objects included: PostgreSQL cannot store one
//! in `text` or `jsonb`, so it is the client's `400`, not a failed insert.
//!
//! Problems come in two kinds: [`Fields::error`] (malformed, a `400`) and
//! [`Fields::refuse`] (well-formed JSON that breaks a structural rule, a
//! `422`, e.g. a link's `rules`, whose problems are named by their path,
//! `rules[1].when.device[0]`). [`Fields::finish`] answers the `400` when
//! there is any, else the `422`.

use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrors};

/// A type that can be read from a JSON object, validating every field.
pub trait FromJson: Sized {
    fn from_json(fields: &mut Fields<'_>) -> Option<Self>;
}

/// Parses bytes as a JSON object or explains, in one sentence, why not.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "request body must be a JSON object, got an empty body".into(),
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(other) => Err(ApiError::BadRequest(format!(
            "request body must be a JSON object, got {}",
            json_kind(&other)
        ))),
        Err(e) => Err(ApiError::BadRequest(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The problem reported for a value holding a NUL character.
pub const NUL_PROBLEM: &str = "must not contain a NUL character";

/// Whether a JSON value holds a NUL character anywhere (strings, object
/// keys, nested values).
pub fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// A `schemars` transform for bodies whose optional fields may be absent but
/// not `null` (declared `#[schemars(with = "String", default)]`): drops the
/// `"default": null` that would contradict the field's own type.
pub fn drop_null_defaults(schema: &mut schemars::Schema) {
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for prop in props.values_mut() {
            if let Some(prop) = prop.as_object_mut()
                && prop.get("default") == Some(&Value::Null)
            {
                prop.remove("default");
            }
        }
    }
}

/// Reads and checks the fields of one JSON object, collecting every problem.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    errors: FieldErrors,
    refused: FieldErrors,
}

impl<'a> Fields<'a> {
    pub fn new(obj: &'a Map<String, Value>) -> Self {
        Self {
            obj,
            errors: FieldErrors::new(),
            refused: FieldErrors::new(),
        }
    }

    /// The raw value of a field, for readers of shapes of their own.
    pub fn value(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field)
    }

    /// Records a problem with a field (the first one per field wins).
    pub fn error(&mut self, field: &str, problem: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_insert_with(|| problem.into());
    }

    /// Records a `422` problem at a path (the first one per path wins).
    pub fn refuse(&mut self, path: &str, problem: impl Into<String>) {
        self.refused
            .entry(path.to_owned())
            .or_insert_with(|| problem.into());
    }

    /// Whether any `400` problem was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Whether any problem at all (`400` or `422`) was recorded.
    pub fn has_problems(&self) -> bool {
        !self.errors.is_empty() || !self.refused.is_empty()
    }

    /// Whether the field is present at all (even as `null`).
    pub fn has(&self, field: &str) -> bool {
        self.obj.contains_key(field)
    }

    /// A required non-empty string (trimmed).
    pub fn required_string(&mut self, field: &str) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => {
                self.error(field, "is required");
                None
            }
            Some(_) => self.optional_string(field),
        }
    }

    /// An optional non-empty string (trimmed); `null` counts as absent.
    pub fn optional_string(&mut self, field: &str) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.contains('\0') => {
                self.error(field, NUL_PROBLEM);
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.error(field, "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            Some(_) => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    /// A required non-empty string taken exactly as sent (no trimming), for
    /// values where surrounding whitespace is itself an error (URLs, codes).
    pub fn required_exact_string(&mut self, field: &str) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => {
                self.error(field, "is required");
                None
            }
            Some(_) => self.optional_exact_string(field),
        }
    }

    /// The optional form of [`Fields::required_exact_string`].
    pub fn optional_exact_string(&mut self, field: &str) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.contains('\0') => {
                self.error(field, NUL_PROBLEM);
                None
            }
            Some(Value::String(s)) if s.is_empty() => {
                self.error(field, "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    /// An optional string that may be empty or `null` (e.g. a title).
    /// Outer `None`: absent; `Some(None)`: explicitly cleared.
    pub fn nullable_string(&mut self, field: &str) -> Option<Option<String>> {
        match self.obj.get(field) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) if s.contains('\0') => {
                self.error(field, NUL_PROBLEM);
                None
            }
            Some(Value::String(s)) => Some(Some(s.trim().to_owned())),
            Some(_) => {
                self.error(field, "must be a string or null");
                None
            }
        }
    }

    /// A required positive integer id (JSON number, not a string or float).
    pub fn required_id(&mut self, field: &str) -> Option<i64> {
        match self.obj.get(field) {
            None | Some(Value::Null) => {
                self.error(field, "is required");
                None
            }
            Some(Value::Number(n)) => match n.as_i64() {
                Some(id) if id > 0 => Some(id),
                _ => {
                    self.error(field, "must be a positive integer");
                    None
                }
            },
            Some(_) => {
                self.error(field, "must be a positive integer");
                None
            }
        }
    }

    /// An optional positive integer; `null` counts as absent.
    pub fn optional_id(&mut self, field: &str) -> Option<i64> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(_) => self.required_id(field),
        }
    }

    /// An optional strict boolean (`true`/`false`, never `"true"` or `1`).
    pub fn optional_bool(&mut self, field: &str) -> Option<bool> {
        match self.obj.get(field) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.error(field, "must be a boolean (true or false)");
                None
            }
        }
    }

    /// An optional JSON object; `null` counts as absent.
    pub fn optional_object(&mut self, field: &str) -> Option<Map<String, Value>> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) if holds_nul(v) => {
                self.error(
                    field,
                    "must not contain a NUL character in any key or value",
                );
                None
            }
            Some(Value::Object(o)) => Some(o.clone()),
            Some(_) => {
                self.error(field, "must be a JSON object");
                None
            }
        }
    }

    /// Fails with every collected problem, if any: the `400` ones
    /// ([`ApiError::Validation`]) when there are any, else the `422` ones
    /// ([`ApiError::Unprocessable`]).
    pub fn finish(self) -> Result<(), ApiError> {
        if !self.errors.is_empty() {
            Err(ApiError::Validation(self.errors))
        } else if !self.refused.is_empty() {
            Err(ApiError::Unprocessable(self.refused))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_reader_refuses_nul() {
        let body = json!({
            "a": "x\0", "b": "\0", "c": {"k": ["ok", {"deep": "\0"}]},
            "d": {"k\0": 1}, "e": "fine", "f": {"k": "v"}
        });
        let obj = body.as_object().expect("object").clone();
        let mut f = Fields::new(&obj);
        assert_eq!(f.required_string("a"), None);
        assert_eq!(f.optional_exact_string("b"), None);
        assert_eq!(f.optional_object("c"), None);
        assert_eq!(f.optional_object("d"), None);
        assert_eq!(f.required_string("e").as_deref(), Some("fine"));
        assert!(f.optional_object("f").is_some());
        let Err(ApiError::Validation(details)) = f.finish() else {
            panic!("validation error expected");
        };
        assert_eq!(
            details.keys().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(details["a"], NUL_PROBLEM);
        let obj = json!({"t": "a\0"}).as_object().expect("object").clone();
        let mut f = Fields::new(&obj);
        assert_eq!(f.nullable_string("t"), None);
        assert!(f.has_errors());
    }
}
