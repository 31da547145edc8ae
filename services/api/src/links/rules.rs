//! The write side of a link's rules (issue #15): reading and checking
//! `redirect_type`, `expires_at`, `max_clicks`, `fallback_url`,
//! `forward_query`, `rules` and `password` from JSON bodies and CSV cells,
//! and hashing passwords. What the settings mean on a redirect is the
//! redirect service's; the stored form is the contract between the two
//! ([`shortline_shared::link_rules`], the `urls` columns).
//!
//! Problems in `rules` are `422`s named by the path of the bad value
//! (`rules[1].when.device[0]`); every other field's problems are `400`s
//! named by the field.

use argon2::password_hash::PasswordHasher;
use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde_json::{Map, Value};
use shortline_shared::link_rules::{
    Conditions, Device, MAX_RULES, MAX_VALUES, Os, REDIRECT_TYPES, Rule, is_language_tag,
};

use super::model::check_url;
use crate::error::ApiError;
use crate::validate::{Fields, NUL_PROBLEM};

/// Longest accepted password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// What a `password` field says in the event log instead of the password.
pub const REDACTED: &str = "[redacted]";

/// A link's rule settings as stored (everything but the password).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSettings {
    pub redirect_type: i16,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_clicks: Option<i64>,
    pub fallback_url: Option<String>,
    pub forward_query: bool,
    pub rules: Vec<Rule>,
}

/// A password as sent, until it is hashed. Never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Hashes running at once: each takes ~19 MiB and a core for a while, so a
/// burst of password writes queues here instead of filling the blocking
/// pool (and memory).
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from))
});

impl Password {
    /// Its argon2id PHC string (default parameters, a random salt), computed
    /// on the blocking pool so a request does not stall the runtime, at most
    /// one per core at a time.
    pub async fn hash(self) -> Result<String, ApiError> {
        let _permit = HASHING
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(format!("password hashing closed: {e}")))?;
        tokio::task::spawn_blocking(move || {
            argon2::Argon2::default()
                .hash_password(self.0.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("password hashing task failed: {e}")))?
    }
}

/// The OpenAPI schema of a redirect type: one of [`REDIRECT_TYPES`].
pub struct RedirectTypeSchema;

impl schemars::JsonSchema for RedirectTypeSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RedirectType".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "integer", "enum": REDIRECT_TYPES})
    }
}

/// The problem of a `redirect_type` that is not one of [`REDIRECT_TYPES`].
pub fn redirect_type_problem() -> String {
    let all: Vec<String> = REDIRECT_TYPES.iter().map(u16::to_string).collect();
    format!("must be one of {}", all.join(", "))
}

/// A redirect type as a number, if it is one of [`REDIRECT_TYPES`].
pub fn redirect_type(n: u64) -> Option<i16> {
    REDIRECT_TYPES
        .iter()
        .find(|&&t| u64::from(t) == n)
        .and_then(|&t| i16::try_from(t).ok())
}

/// `redirect_type`: absent is `None`; `null` is absent when `nullable`
/// (a create), a problem otherwise (an edit).
pub fn read_redirect_type(f: &mut Fields<'_>, nullable: bool) -> Option<i16> {
    const FIELD: &str = "redirect_type";
    match f.value(FIELD) {
        None => None,
        Some(Value::Null) if nullable => None,
        Some(Value::Number(n)) if n.as_u64().and_then(redirect_type).is_some() => {
            n.as_u64().and_then(redirect_type)
        }
        Some(_) => {
            f.error(FIELD, redirect_type_problem());
            None
        }
    }
}

/// The problem of a bad `expires_at`.
pub const EXPIRES_AT_PROBLEM: &str =
    "must be an RFC 3339 timestamp with an offset, or YYYY-MM-DDTHH:MM:SS (UTC)";

/// An expiry time: RFC 3339 with an offset or the contract's format (UTC),
/// in years 1–9999, to the second (a fraction is dropped). A past time is
/// fine: the link then answers as expired.
pub fn parse_expires_at(s: &str) -> Option<DateTime<Utc>> {
    shortline_shared::wire::parse_timestamp(s)
        .filter(|t| (1..=9999).contains(&t.year()))
        .map(|t| t.trunc_subsecs(0))
}

/// `expires_at`: outer `None` absent, `Some(None)` `null`.
pub fn read_expires_at(f: &mut Fields<'_>) -> Option<Option<DateTime<Utc>>> {
    const FIELD: &str = "expires_at";
    match f.value(FIELD) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => match parse_expires_at(s) {
            Some(t) => Some(Some(t)),
            None => {
                f.error(FIELD, EXPIRES_AT_PROBLEM);
                None
            }
        },
        Some(_) => {
            f.error(FIELD, EXPIRES_AT_PROBLEM);
            None
        }
    }
}

/// `max_clicks`: a positive integer; outer `None` absent, `Some(None)` `null`.
pub fn read_max_clicks(f: &mut Fields<'_>) -> Option<Option<i64>> {
    const FIELD: &str = "max_clicks";
    match f.value(FIELD) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n > 0) => Some(n.as_i64()),
        Some(_) => {
            f.error(FIELD, "must be a positive integer (or null)");
            None
        }
    }
}

/// `fallback_url`: the rules of `original_url` (the policy is checked where
/// the link is written); outer `None` absent, `Some(None)` `null`.
pub fn read_fallback_url(f: &mut Fields<'_>) -> Option<Option<String>> {
    const FIELD: &str = "fallback_url";
    match f.value(FIELD) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => match check_url(s) {
            Ok(()) => Some(Some(s.clone())),
            Err(problem) => {
                f.error(FIELD, problem);
                None
            }
        },
        Some(_) => {
            f.error(FIELD, "must be a string (an absolute http(s) URL) or null");
            None
        }
    }
}

/// `rules`: `null` and `[]` both mean none (`Some(vec![])`); every problem
/// is refused (`422`) at its path.
pub fn read_rules(f: &mut Fields<'_>) -> Option<Vec<Rule>> {
    match f.value("rules") {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(value) => parse_rules(value, &mut |path, problem| f.refuse(&path, problem)),
    }
}

/// `password`: 1–256 characters, taken as sent; outer `None` absent,
/// `Some(None)` `null` (a create treats it as absent, an edit removes the
/// password).
pub fn read_password(f: &mut Fields<'_>) -> Option<Option<Password>> {
    const FIELD: &str = "password";
    match f.value(FIELD) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.contains('\0') => {
            f.error(FIELD, NUL_PROBLEM);
            None
        }
        Some(Value::String(s)) if (1..=MAX_PASSWORD_CHARS).contains(&s.chars().count()) => {
            Some(Some(Password(s.clone())))
        }
        Some(_) => {
            f.error(
                FIELD,
                format!("must be a string of 1 to {MAX_PASSWORD_CHARS} characters (or null)"),
            );
            None
        }
    }
}

/// Checks a `rules` value, reporting each problem with its path
/// (`rules`, `rules[0].target`, `rules[1].when.device[0]`, …); the rules
/// when there is none.
pub fn parse_rules(value: &Value, problem: &mut impl FnMut(String, String)) -> Option<Vec<Rule>> {
    let items = match value {
        Value::Array(items) if items.len() <= MAX_RULES => items,
        _ => {
            problem(
                "rules".into(),
                format!("must be an array of at most {MAX_RULES} rules"),
            );
            return None;
        }
    };
    let mut rules = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match parse_rule(item, &format!("rules[{i}]"), problem) {
            Some(rule) => rules.push(rule),
            None => ok = false,
        }
    }
    ok.then_some(rules)
}

fn parse_rule(item: &Value, at: &str, problem: &mut impl FnMut(String, String)) -> Option<Rule> {
    let Value::Object(obj) = item else {
        problem(
            at.to_owned(),
            r#"must be an object {"when": {…}, "target": "…"}"#.into(),
        );
        return None;
    };
    let mut ok = true;
    for key in obj
        .keys()
        .filter(|k| !matches!(k.as_str(), "when" | "target"))
    {
        problem(
            format!("{at}.{key}"),
            "unknown field (a rule has when and target)".into(),
        );
        ok = false;
    }
    let when = match obj.get("when") {
        Some(Value::Object(when)) => parse_conditions(when, &format!("{at}.when"), problem),
        None | Some(Value::Null) => {
            problem(format!("{at}.when"), "is required".into());
            None
        }
        Some(_) => {
            problem(
                format!("{at}.when"),
                "must be an object with device, os and/or language".into(),
            );
            None
        }
    };
    let target = match obj.get("target") {
        Some(Value::String(s)) => match check_url(s) {
            Ok(()) => Some(s.clone()),
            Err(why) => {
                problem(format!("{at}.target"), why.into());
                None
            }
        },
        None | Some(Value::Null) => {
            problem(format!("{at}.target"), "is required".into());
            None
        }
        Some(_) => {
            problem(
                format!("{at}.target"),
                "must be a string (an absolute http(s) URL)".into(),
            );
            None
        }
    };
    match (ok, when, target) {
        (true, Some(when), Some(target)) => Some(Rule { when, target }),
        _ => None,
    }
}

fn parse_conditions(
    when: &Map<String, Value>,
    at: &str,
    problem: &mut impl FnMut(String, String),
) -> Option<Conditions> {
    let mut ok = true;
    for key in when
        .keys()
        .filter(|k| !matches!(k.as_str(), "device" | "os" | "language"))
    {
        problem(
            format!("{at}.{key}"),
            "unknown condition (must be one of device, os, language)".into(),
        );
        ok = false;
    }
    if !["device", "os", "language"]
        .iter()
        .any(|k| when.contains_key(*k))
    {
        problem(
            at.to_owned(),
            "needs at least one of device, os, language".into(),
        );
        return None;
    }
    let devices = format!("one of {}", Device::ALL.map(Device::as_str).join(", "));
    let systems = format!("one of {}", Os::ALL.map(Os::as_str).join(", "));
    let device = values(when, at, "device", Device::parse, &devices, problem);
    let os = values(when, at, "os", Os::parse, &systems, problem);
    let language = values(
        when,
        at,
        "language",
        |s| is_language_tag(s).then(|| s.to_owned()),
        "a language tag like de or pt-BR",
        problem,
    );
    match (ok, device, os, language) {
        (true, Some(device), Some(os), Some(language)) => Some(Conditions {
            device,
            os,
            language,
        }),
        _ => None,
    }
}

/// One condition's list: absent is empty; present, a non-empty list of at
/// most [`MAX_VALUES`] values that `parse` accepts.
fn values<T>(
    when: &Map<String, Value>,
    at: &str,
    key: &str,
    parse: impl Fn(&str) -> Option<T>,
    allowed: &str,
    problem: &mut impl FnMut(String, String),
) -> Option<Vec<T>> {
    let items = match when.get(key) {
        None => return Some(Vec::new()),
        Some(Value::Array(items)) if (1..=MAX_VALUES).contains(&items.len()) => items,
        Some(_) => {
            problem(
                format!("{at}.{key}"),
                format!("must be a non-empty list of at most {MAX_VALUES} values"),
            );
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        match item.as_str().and_then(&parse) {
            Some(v) => out.push(v),
            None => problem(format!("{at}.{key}[{j}]"), format!("must be {allowed}")),
        }
    }
    (out.len() == items.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(value: Value) -> (Option<Vec<Rule>>, Vec<(String, String)>) {
        let mut seen = Vec::new();
        let rules = parse_rules(&value, &mut |path, problem| seen.push((path, problem)));
        (rules, seen)
    }

    #[test]
    fn rules_read_into_their_wire_form() {
        let value = json!([
            {"when": {"device": ["mobile", "bot"], "os": ["android"], "language": ["pt-BR"]},
             "target": "https://example.com/x"}
        ]);
        let (rules, seen) = problems(value.clone());
        assert!(seen.is_empty(), "{seen:?}");
        let rules = rules.expect("rules");
        assert_eq!(rules[0].when.device, [Device::Mobile, Device::Bot]);
        assert_eq!(serde_json::to_value(&rules).expect("json"), value);
        assert_eq!(problems(json!([])).0, Some(Vec::new()));
    }

    #[test]
    fn every_problem_is_named_by_its_path() {
        let (rules, seen) = problems(json!([
            {"when": {"device": ["fridge", "mobile", 3]}, "target": "https://example.com/"},
            {"when": {"language": ["de", "x"], "colour": []}, "target": "https://a@b.io/", "x": 1}
        ]));
        assert_eq!(rules, None);
        let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "rules[0].when.device[0]",
                "rules[0].when.device[2]",
                "rules[1].x",
                "rules[1].when.colour",
                "rules[1].when.language[1]",
                "rules[1].target"
            ]
        );
        assert_eq!(
            seen[0].1,
            "must be one of mobile, tablet, desktop, bot, other"
        );
        let (_, seen) = problems(json!([{"when": {}, "target": "https://example.com/"}]));
        assert_eq!(
            seen,
            [(
                "rules[0].when".to_owned(),
                "needs at least one of device, os, language".to_owned()
            )]
        );
    }

    #[test]
    fn redirect_types_and_expiry() {
        assert_eq!(redirect_type(301), Some(301));
        assert_eq!(redirect_type(308), Some(308));
        assert_eq!(redirect_type(303), None);
        assert_eq!(redirect_type(0), None);
        assert_eq!(redirect_type_problem(), "must be one of 301, 302, 307, 308");
        let t = parse_expires_at("2030-01-02T03:04:05.999+01:00").expect("rfc 3339");
        assert_eq!(
            shortline_shared::wire::format_timestamp(&t),
            "2030-01-02T02:04:05"
        );
        assert_eq!(t.timestamp_subsec_nanos(), 0);
        assert!(parse_expires_at("2030-01-02T03:04:05").is_some());
        assert!(parse_expires_at("soon").is_none());
        assert_eq!(
            format!("{:?}", Password("secret".into())),
            "Password([redacted])"
        );
    }
}
