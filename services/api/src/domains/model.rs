//! A domain record and the body that adds one.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::ids::DomainId;
use crate::validate::{Fields, FromJson};

/// A custom domain.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct Domain {
    pub id: DomainId,
    /// Lower-case; internationalised names in their punycode form.
    #[schemars(example = "go.example.com")]
    pub host: String,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2026-12-04T10:00:00")]
    pub created_at: DateTime<Utc>,
}

/// `POST /domains` body.
#[derive(Debug, Clone, JsonSchema)]
pub struct NewDomain {
    /// A DNS name (no scheme, port or path), e.g. `go.example.com`;
    /// stored lower-case, internationalised names as punycode.
    #[schemars(length(min = 1, max = 253), example = "go.example.com")]
    pub host: String,
}

impl FromJson for NewDomain {
    fn from_json(f: &mut Fields<'_>) -> Option<Self> {
        let host = f
            .required_string("host")
            .and_then(|h| match normalize_host(&h) {
                Ok(host) => Some(host),
                Err(problem) => {
                    f.error("host", problem);
                    None
                }
            });
        Some(NewDomain { host: host? })
    }
}

/// A host as stored and as the redirect service compares it: lower-case,
/// IDNs in punycode, no trailing dot; only DNS names with at least one dot
/// (no addresses, ports, paths or credentials).
pub fn normalize_host(host: &str) -> Result<String, &'static str> {
    const PROBLEM: &str =
        "must be a domain name such as go.example.com (no scheme, port, path or address)";
    let trimmed = host.trim().trim_end_matches('.');
    if trimmed.is_empty()
        || trimmed.len() > 253
        || trimmed.bytes().any(|b| {
            matches!(b, b'/' | b':' | b'@' | b'?' | b'#' | b'\\') || b.is_ascii_whitespace()
        })
    {
        return Err(PROBLEM);
    }
    match url::Host::parse(trimmed) {
        Ok(url::Host::Domain(d)) if d.contains('.') && !d.starts_with('.') && !d.contains("..") => {
            Ok(d.to_ascii_lowercase())
        }
        _ => Err(PROBLEM),
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_host;

    #[test]
    fn hosts_are_normalised_like_the_redirect_compares_them() {
        assert_eq!(
            normalize_host("Go.Example.COM").as_deref(),
            Ok("go.example.com")
        );
        assert_eq!(
            normalize_host("go.example.com.").as_deref(),
            Ok("go.example.com")
        );
        assert_eq!(
            normalize_host("bücher.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        for bad in [
            "",
            "localhost",
            "go.example.com:8080",
            "https://go.example.com",
            "go.example.com/x",
            "127.0.0.1",
            "[::1]",
            "user@go.example.com",
            "go..example.com",
            "go example.com",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad}");
        }
    }
}
