//! A link's rules, as a redirect decides them: expiry, a click limit, a
//! fallback, query forwarding, targeting rules and a password
//! ([`shortline_shared::link_rules`] has their wire form and meaning).
//!
//! A link without any of them (the common case) has no [`Policy`] at all:
//! its cached [`Target`](crate::resolve::Target) is answered as it is. A
//! link with some is compiled once, when its row is loaded: every URL in it
//! is checked against the target rule and turned into its `Location` text,
//! conditions become bit sets, so a request only compares. Which device and
//! OS a `User-Agent` is costs a parse; [`AgentMemo`] remembers the answer
//! per distinct agent (there are few), and only links whose rules ask for
//! them parse at all.

use std::hash::BuildHasher;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use shortline_shared::link_rules::{self, Device, Os, Rule};
use shortline_shared::target_url;

/// Why a stored link cannot be served as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A URL (`original_url`, `fallback_url` or a rule's target) fails the
    /// target rule.
    Target(&'static str, target_url::TargetUrlError),
    /// The rules are not the wire form.
    Rules(String),
    /// The redirect type is none of 301, 302, 307, 308.
    RedirectType(i16),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Target(field, e) => write!(f, "{field}: {e}"),
            Problem::Rules(e) => write!(f, "rules: {e}"),
            Problem::RedirectType(t) => write!(f, "redirect_type {t} is not a redirect"),
        }
    }
}

/// The `Location` text of a stored URL that passes the target rule.
pub fn location_of(field: &'static str, url: &str) -> Result<Arc<str>, Problem> {
    let parsed = target_url::parse(url).map_err(|e| Problem::Target(field, e))?;
    Ok(Arc::from(target_url::location(url, &parsed)))
}

/// One rule, compiled: the devices and OS families it accepts as bit sets
/// (empty: no condition), its language tags, its target's `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CompiledRule {
    devices: u8,
    oses: u8,
    languages: Box<[Box<str>]>,
    target: Arc<str>,
}

fn device_bit(d: Device) -> u8 {
    1 << (d as u8)
}

fn os_bit(o: Os) -> u8 {
    1 << (o as u8)
}

/// Which rule or URL a redirect went to (`details.outcome` of its click).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The link's `original_url`.
    Target,
    /// The target of the rule at this index (0-based, as in `rules[N]`).
    Rule(u8),
    /// The link's `fallback_url` (expired or out of clicks).
    Fallback,
}

impl Outcome {
    /// `target`, `rule:N` or `fallback`.
    pub fn label(self) -> String {
        match self {
            Outcome::Target => "target".into(),
            Outcome::Rule(n) => format!("rule:{n}"),
            Outcome::Fallback => "fallback".into(),
        }
    }
}

/// The rules of a link that has any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub expires_at: Option<DateTime<Utc>>,
    pub max_clicks: Option<u64>,
    /// `Location` of `fallback_url`.
    pub fallback: Option<Arc<str>>,
    pub forward_query: bool,
    rules: Box<[CompiledRule]>,
    /// argon2id PHC string.
    pub password_hash: Option<Arc<str>>,
    needs_agent: bool,
    needs_language: bool,
}

/// A link's rule columns as stored.
#[derive(Debug, Clone, Default)]
pub struct RuleColumns<'a> {
    pub expires_at: Option<DateTime<Utc>>,
    pub max_clicks: Option<i64>,
    pub fallback_url: Option<&'a str>,
    pub forward_query: bool,
    pub rules: Option<&'a serde_json::Value>,
    pub password_hash: Option<&'a str>,
}

impl Policy {
    /// The compiled rules of a link; `None` when it has none.
    pub fn compile(columns: &RuleColumns<'_>) -> Result<Option<Self>, Problem> {
        let rules: Vec<Rule> = match columns.rules {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| Problem::Rules(e.to_string()))?
            }
        };
        if rules.len() > link_rules::MAX_RULES {
            return Err(Problem::Rules(format!("{} rules", rules.len())));
        }
        let plain = columns.expires_at.is_none()
            && columns.max_clicks.is_none()
            && columns.fallback_url.is_none()
            && !columns.forward_query
            && rules.is_empty()
            && columns.password_hash.is_none();
        if plain {
            return Ok(None);
        }
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in &rules {
            if rule.when.is_empty() {
                return Err(Problem::Rules("a rule without conditions".into()));
            }
            compiled.push(CompiledRule {
                devices: rule.when.device.iter().fold(0, |b, d| b | device_bit(*d)),
                oses: rule.when.os.iter().fold(0, |b, o| b | os_bit(*o)),
                languages: rule
                    .when
                    .language
                    .iter()
                    .map(|l| l.as_str().into())
                    .collect(),
                target: location_of("rules.target", &rule.target)?,
            });
        }
        Ok(Some(Self {
            expires_at: columns.expires_at,
            max_clicks: columns.max_clicks.map(|n| u64::try_from(n).unwrap_or(0)),
            fallback: columns
                .fallback_url
                .map(|u| location_of("fallback_url", u))
                .transpose()?,
            forward_query: columns.forward_query,
            needs_agent: rules.iter().any(|r| r.when.needs_agent()),
            needs_language: rules.iter().any(|r| !r.when.language.is_empty()),
            rules: compiled.into(),
            password_hash: columns.password_hash.map(Arc::from),
        }))
    }

    /// Whether the link has expired at `now` (to the millisecond).
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Whether answering needs Valkey (a click limit or a password's
    /// attempt limit) or a form: such links are answered by the router.
    pub fn needs_router(&self) -> bool {
        self.max_clicks.is_some() || self.password_hash.is_some()
    }

    /// The target for a visitor: the first matching rule's, else
    /// `original`; with the visitor's query merged in when the link forwards
    /// queries.
    pub fn choose(&self, original: &str, visitor: &Visitor<'_>, agents: &AgentMemo) -> Chosen {
        let (url, outcome) = self.pick(original, visitor, agents);
        Chosen {
            location: self.with_query(url, visitor.query),
            outcome,
        }
    }

    /// `fallback_url` with the visitor's query merged in when the link
    /// forwards queries (`None`: no fallback).
    pub fn fallback_for(&self, visitor: &Visitor<'_>) -> Option<Chosen> {
        self.fallback.as_deref().map(|url| Chosen {
            location: self.with_query(url, visitor.query),
            outcome: Outcome::Fallback,
        })
    }

    fn pick<'a>(
        &'a self,
        original: &'a str,
        visitor: &Visitor<'_>,
        agents: &AgentMemo,
    ) -> (&'a str, Outcome) {
        if self.rules.is_empty() {
            return (original, Outcome::Target);
        }
        let agent = if self.needs_agent {
            agents.classify(visitor.user_agent)
        } else {
            (Device::Other, Os::Other)
        };
        let languages = if self.needs_language {
            visitor
                .accept_language
                .map(link_rules::preferred_languages)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        for (i, rule) in self.rules.iter().enumerate() {
            let device_ok = rule.devices == 0 || rule.devices & device_bit(agent.0) != 0;
            let os_ok = rule.oses == 0 || rule.oses & os_bit(agent.1) != 0;
            let language_ok = rule.languages.is_empty()
                || rule.languages.iter().any(|want| {
                    languages
                        .iter()
                        .any(|have| link_rules::language_matches(want, have))
                });
            if device_ok && os_ok && language_ok {
                return (
                    &rule.target,
                    Outcome::Rule(u8::try_from(i).unwrap_or(u8::MAX)),
                );
            }
        }
        (original, Outcome::Target)
    }

    fn with_query(&self, url: &str, query: Option<&str>) -> Box<str> {
        match query {
            Some(q) if self.forward_query && !q.is_empty() => merge_query(url, q).into(),
            _ => url.into(),
        }
    }
}

/// Where a redirect goes and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub location: Box<str>,
    pub outcome: Outcome,
}

/// What of a request the rules look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Visitor<'a> {
    pub user_agent: Option<&'a str>,
    pub accept_language: Option<&'a str>,
    /// The raw query string (without `?`).
    pub query: Option<&'a str>,
}

impl<'a> Visitor<'a> {
    /// The visitor of a request with these headers and query string.
    pub fn of(headers: &'a axum::http::HeaderMap, query: Option<&'a str>) -> Self {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            user_agent: header(axum::http::header::USER_AGENT),
            accept_language: header(axum::http::header::ACCEPT_LANGUAGE),
            query,
        }
    }
}

/// Merges an incoming query string into a target URL: the target's own
/// parameters stay as they are, each incoming `key=value` whose key the
/// target does not have is appended (in order, repeated keys included);
/// the target's fragment stays last. Parameters are copied as sent
/// (percent-encoding untouched); keys are compared decoded.
pub fn merge_query(target: &str, incoming: &str) -> String {
    let (before_fragment, fragment) = match target.find('#') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    let (base, own) = match before_fragment.find('?') {
        Some(i) => (&before_fragment[..i], Some(&before_fragment[i + 1..])),
        None => (before_fragment, None),
    };
    let own_keys: Vec<String> = own
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(decoded_key)
        .collect();
    let mut out = String::with_capacity(target.len() + incoming.len() + 1);
    out.push_str(base);
    let mut first = true;
    let mut push = |pair: &str, out: &mut String| {
        out.push(if first { '?' } else { '&' });
        first = false;
        out.push_str(pair);
    };
    for pair in own.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        push(pair, &mut out);
    }
    for pair in incoming.split('&').filter(|p| !p.is_empty()) {
        if !own_keys.contains(&decoded_key(pair)) {
            push(pair, &mut out);
        }
    }
    if first && own.is_some() {
        // The target ended in a bare `?`: keep it as it was.
        out.push('?');
    }
    out.push_str(fragment);
    out
}

fn decoded_key(pair: &str) -> String {
    let key = pair.split('=').next().unwrap_or_default().replace('+', " ");
    percent_encoding::percent_decode_str(&key)
        .decode_utf8_lossy()
        .into_owned()
}

/// Device class and OS family per distinct `User-Agent`, remembered (few
/// distinct agents make most requests; a parse costs microseconds).
#[derive(Clone)]
pub struct AgentMemo {
    seen: moka::sync::Cache<u64, (Device, Os), foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
}

impl AgentMemo {
    pub fn new(capacity: u64) -> Self {
        Self {
            seen: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub fn classify(&self, user_agent: Option<&str>) -> (Device, Os) {
        let key = self.hasher.hash_one(user_agent.unwrap_or_default());
        if let Some(known) = self.seen.get(&key) {
            return known;
        }
        let agent = shortline_shared::user_agent::classify(user_agent);
        let known = (agent.device, agent.os_family());
        self.seen.insert(key, known);
        known
    }
}

impl Default for AgentMemo {
    fn default() -> Self {
        Self::new(10_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
    const PIXEL: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36";
    const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";

    fn policy(rules: serde_json::Value, forward_query: bool) -> Policy {
        Policy::compile(&RuleColumns {
            rules: Some(&rules),
            forward_query,
            ..Default::default()
        })
        .expect("valid")
        .expect("has rules")
    }

    fn visitor<'a>(ua: &'a str, lang: Option<&'a str>, query: Option<&'a str>) -> Visitor<'a> {
        Visitor {
            user_agent: Some(ua),
            accept_language: lang,
            query,
        }
    }

    #[test]
    fn plain_links_have_no_policy() {
        assert_eq!(Policy::compile(&RuleColumns::default()), Ok(None));
        let empty = json!([]);
        assert_eq!(
            Policy::compile(&RuleColumns {
                rules: Some(&empty),
                ..Default::default()
            }),
            Ok(None)
        );
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let p = policy(
            json!([
                {"when": {"os": ["ios"]}, "target": "https://apps.apple.com/x"},
                {"when": {"device": ["mobile", "tablet"]}, "target": "https://m.example/x"},
                {"when": {"language": ["de"]}, "target": "https://example.de/x"},
                {"when": {"device": ["desktop"], "language": ["pt-BR"]}, "target": "https://example.com.br/x"}
            ]),
            false,
        );
        let memo = AgentMemo::default();
        let go = |ua, lang| p.choose("https://example.com/x", &visitor(ua, lang, None), &memo);
        assert_eq!(go(IPHONE, Some("de")).outcome, Outcome::Rule(0));
        assert_eq!(&*go(PIXEL, None).location, "https://m.example/x");
        assert_eq!(
            go(DESKTOP, Some("de-AT,en;q=0.5")).outcome,
            Outcome::Rule(2)
        );
        assert_eq!(go(DESKTOP, Some("en,de;q=0.9")).outcome, Outcome::Target);
        assert_eq!(go(DESKTOP, Some("pt-BR")).outcome, Outcome::Rule(3));
        assert_eq!(go(DESKTOP, Some("pt-PT")).outcome, Outcome::Target);
        let target = go(DESKTOP, None);
        assert_eq!(
            (&*target.location, target.outcome),
            ("https://example.com/x", Outcome::Target)
        );
        // Remembered agents answer the same.
        assert_eq!(go(PIXEL, None).outcome, Outcome::Rule(1));
    }

    #[test]
    fn bad_stored_rules_are_problems() {
        for rules in [
            json!([{"when": {}, "target": "https://a.example"}]),
            json!([{"when": {"device": ["fridge"]}, "target": "https://a.example"}]),
            json!([{"when": {"os": ["ios"]}, "target": "javascript:alert(1)"}]),
            json!({"not": "a list"}),
        ] {
            assert!(
                Policy::compile(&RuleColumns {
                    rules: Some(&rules),
                    ..Default::default()
                })
                .is_err(),
                "{rules}"
            );
        }
        assert!(matches!(
            Policy::compile(&RuleColumns {
                fallback_url: Some("ftp://x"),
                ..Default::default()
            }),
            Err(Problem::Target("fallback_url", _))
        ));
    }

    #[test]
    fn queries_merge_into_the_target() {
        for (target, incoming, merged) in [
            (
                "https://a.example/p",
                "utm_source=x",
                "https://a.example/p?utm_source=x",
            ),
            (
                "https://a.example/p?a=1",
                "b=2&c=3",
                "https://a.example/p?a=1&b=2&c=3",
            ),
            // The target's own keys are kept; incoming duplicates of them dropped.
            (
                "https://a.example/p?a=1",
                "a=2&b=3",
                "https://a.example/p?a=1&b=3",
            ),
            // Repeated incoming keys are all appended.
            (
                "https://a.example/p",
                "t=1&t=2",
                "https://a.example/p?t=1&t=2",
            ),
            // Encoded characters travel as sent; keys compare decoded.
            (
                "https://a.example/p?q%20x=1",
                "q+x=2&r=%E2%82%AC%26",
                "https://a.example/p?q%20x=1&r=%E2%82%AC%26",
            ),
            // The fragment stays last.
            (
                "https://a.example/p?a=1#top",
                "b=2",
                "https://a.example/p?a=1&b=2#top",
            ),
            (
                "https://a.example/p#top",
                "b=2",
                "https://a.example/p?b=2#top",
            ),
            ("https://a.example/p?", "&&", "https://a.example/p?"),
            ("https://a.example/p", "flag", "https://a.example/p?flag"),
        ] {
            assert_eq!(
                merge_query(target, incoming),
                merged,
                "{target} + {incoming}"
            );
        }
        let p = policy(json!([]), true);
        let v = visitor(DESKTOP, None, Some("utm_source=x"));
        assert_eq!(
            &*p.choose("https://a.example/?a=1", &v, &AgentMemo::default())
                .location,
            "https://a.example/?a=1&utm_source=x"
        );
        // Without forward_query the query is not copied.
        let p = policy(
            json!([{"when": {"os": ["ios"]}, "target": "https://i.example/"}]),
            false,
        );
        assert_eq!(
            &*p.choose("https://a.example/", &v, &AgentMemo::default())
                .location,
            "https://a.example/"
        );
    }

    #[test]
    fn expiry_is_to_the_millisecond() {
        let at = Utc::now();
        let p = Policy::compile(&RuleColumns {
            expires_at: Some(at),
            ..Default::default()
        })
        .expect("valid")
        .expect("policy");
        assert!(!p.expired(at - chrono::Duration::milliseconds(1)));
        assert!(p.expired(at));
        assert!(!p.needs_router());
    }
}
