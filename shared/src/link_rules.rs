//! The wire form of a link's rules: the contract between the write API, which
//! validates and stores them (`urls.rules`, a JSON array, and the link's
//! other rule columns), and the redirect service, which decides each request
//! with them.
//!
//! A link's `rules` are an ordered list; the first rule whose `when` matches
//! the request picks its `target`, else the link's `original_url` is used.
//! Within `when`, every condition given must match (AND); a condition's list
//! matches when any of its values does (OR):
//!
//! * `device`: the class of the request's `User-Agent`
//!   ([`crate::user_agent`]: `mobile`, `tablet`, `desktop`, `bot`, `other`);
//! * `os`: its operating-system family ([`Os`]);
//! * `language`: a language tag (`de`, `pt-BR`) matching the client's most
//!   preferred language in `Accept-Language` (highest q-value above 0; ties
//!   all count): `de` matches `de` and `de-AT`, `pt-BR` only `pt-BR`
//!   (case-insensitively).

use serde::{Deserialize, Serialize};

/// The redirect statuses a link may answer with.
pub const REDIRECT_TYPES: [u16; 4] = [301, 302, 307, 308];

/// The redirect status of links that do not choose one.
pub const DEFAULT_REDIRECT_TYPE: u16 = 302;

/// Most rules per link.
pub const MAX_RULES: usize = 20;

/// Most values in one condition list.
pub const MAX_VALUES: usize = 20;

/// One rule: where requests matching `when` go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub when: Conditions,
    /// Absolute http(s) URL (the rules of `original_url`).
    pub target: String,
}

/// What a request must match (each list given must match; an empty or
/// absent list is no condition). At least one condition per rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device: Vec<Device>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os: Vec<Os>,
    /// Language tags, e.g. `de`, `pt-BR`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub language: Vec<String>,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        self.device.is_empty() && self.os.is_empty() && self.language.is_empty()
    }

    /// Whether matching needs the `User-Agent` classified.
    pub fn needs_agent(&self) -> bool {
        !self.device.is_empty() || !self.os.is_empty()
    }
}

/// A user agent's device class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Mobile,
    Tablet,
    Desktop,
    Bot,
    Other,
}

impl Device {
    pub const ALL: [Device; 5] = [
        Device::Mobile,
        Device::Tablet,
        Device::Desktop,
        Device::Bot,
        Device::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Desktop => "desktop",
            Device::Bot => "bot",
            Device::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// A user agent's operating-system family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Ios,
    Android,
    Windows,
    Macos,
    Linux,
    Chromeos,
    Other,
}

impl Os {
    pub const ALL: [Os; 7] = [
        Os::Ios,
        Os::Android,
        Os::Windows,
        Os::Macos,
        Os::Linux,
        Os::Chromeos,
        Os::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Os::Ios => "ios",
            Os::Android => "android",
            Os::Windows => "windows",
            Os::Macos => "macos",
            Os::Linux => "linux",
            Os::Chromeos => "chromeos",
            Os::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Whether `tag` is a usable language tag: a 2–3 letter language, then
/// `-`-separated subtags of 1–8 letters or digits (`de`, `pt-BR`,
/// `zh-Hant-TW`), at most 35 characters.
pub fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    tag.len() <= 35
        && (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether a rule's language tag matches a client's: equal, or the rule's
/// is a prefix ending at a subtag boundary (`de` matches `de-AT`);
/// case-insensitive.
pub fn language_matches(rule: &str, client: &str) -> bool {
    client.len() >= rule.len()
        && client.as_bytes()[..rule.len()].eq_ignore_ascii_case(rule.as_bytes())
        && (client.len() == rule.len() || client.as_bytes()[rule.len()] == b'-')
}

/// The client's most preferred languages from an `Accept-Language` value:
/// the tags with the highest q-value above 0 (several when they tie), `*`
/// and malformed entries skipped.
pub fn preferred_languages(accept_language: &str) -> Vec<&str> {
    let mut best: Vec<&str> = Vec::new();
    let mut best_q = 0.0_f32;
    for item in accept_language.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        if !is_language_tag(tag) {
            continue;
        }
        let mut q = 1.0_f32;
        for param in parts {
            if let Some(v) = param
                .trim()
                .strip_prefix("q=")
                .or_else(|| param.trim().strip_prefix("Q="))
            {
                q = v.trim().parse().unwrap_or(-1.0);
            }
        }
        if !(q > 0.0 && q <= 1.0) {
            continue;
        }
        if q > best_q {
            best_q = q;
            best.clear();
        }
        if (q - best_q).abs() < f32::EPSILON {
            best.push(tag);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_and_write_their_wire_form() {
        let json = r#"[{"when":{"device":["mobile","tablet"],"os":["ios"],"language":["pt-BR"]},"target":"https://a.example/x"}]"#;
        let rules: Vec<Rule> = serde_json::from_str(json).expect("rules");
        assert_eq!(rules[0].when.device, [Device::Mobile, Device::Tablet]);
        assert_eq!(serde_json::to_string(&rules).expect("json"), json);
        for bad in [
            r#"[{"when":{"device":["fridge"]},"target":"https://a"}]"#,
            r#"[{"when":{"colour":["red"]},"target":"https://a"}]"#,
            r#"[{"when":{},"target":"https://a","extra":1}]"#,
        ] {
            assert!(serde_json::from_str::<Vec<Rule>>(bad).is_err(), "{bad}");
        }
        for d in Device::ALL {
            assert_eq!(Device::parse(d.as_str()), Some(d));
        }
        for o in Os::ALL {
            assert_eq!(Os::parse(o.as_str()), Some(o));
        }
    }

    #[test]
    fn language_tags_and_matching() {
        for ok in ["de", "pt-BR", "zh-Hant-TW", "gsw"] {
            assert!(is_language_tag(ok), "{ok}");
        }
        for bad in [
            "",
            "d",
            "deutsch",
            "de_DE",
            "de-",
            "*",
            "1a",
            "de-toolongsubtag",
        ] {
            assert!(!is_language_tag(bad), "{bad}");
        }
        assert!(language_matches("de", "de-AT"));
        assert!(language_matches("DE", "de"));
        assert!(language_matches("pt-BR", "pt-br"));
        assert!(!language_matches("pt-BR", "pt"));
        assert!(!language_matches("pt-BR", "pt-PT"));
        assert!(!language_matches("de", "dea"));
    }

    #[test]
    fn the_most_preferred_languages_win() {
        assert_eq!(preferred_languages("de-DE,de;q=0.9,en;q=0.8"), ["de-DE"]);
        assert_eq!(
            preferred_languages("en;q=0.5, fr;q=0.7 ,de;q=0.7"),
            ["fr", "de"]
        );
        assert_eq!(preferred_languages("*;q=1, es"), ["es"]);
        assert_eq!(preferred_languages("de;q=0, en;q=0.1"), ["en"]);
        assert!(preferred_languages("de;q=0").is_empty());
        assert!(preferred_languages("").is_empty());
        assert!(preferred_languages("garbage;;q=x").is_empty());
    }
}
