//! What a short link may point at: the one rule, shared by the write side
//! (which refuses bad targets when links are created, edited or imported)
//! and the redirect (which checks what it serves, whichever cache it came
//! from, before it becomes a `Location`).
//!
//! A target is an absolute `http` or `https` URL that spells out
//! `scheme://host` itself, at most [`MAX_LEN`] bytes, with no whitespace, no
//! control characters (they cannot travel in a `Location` header) and no
//! userinfo (`https://trusted.com@evil.com/` reads as one host and goes to
//! another). It is parsed with the `url` crate, the WHATWG parser browsers
//! follow, so the host checked here is the host a browser would visit.
//!
//! [`location`] turns an accepted target into the `Location` value: the
//! stored text exactly when it is ASCII; otherwise its RFC 3986 form
//! (punycode host, the rest percent-encoded as UTF-8), since a header
//! cannot carry raw non-ASCII. The stored text itself never changes.

pub use url::Url;

/// Longest target accepted, in bytes.
pub const MAX_LEN: usize = 2048;

/// Why a target is refused. `Display` is the problem as the API reports it
/// for the field (`original_url: must use http or https`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetUrlError {
    #[error("must be at most 2048 characters")]
    TooLong,
    #[error("must not contain whitespace")]
    Whitespace,
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("must be an absolute http or https URL")]
    NotAbsolute,
    #[error("must use http or https")]
    Scheme,
    #[error("must have a host")]
    NoHost,
    #[error("must not contain a user name or password before the host")]
    UserInfo,
}

impl TargetUrlError {
    /// The problem as a static string (for field-error maps).
    pub fn problem(self) -> &'static str {
        match self {
            TargetUrlError::TooLong => "must be at most 2048 characters",
            TargetUrlError::Whitespace => "must not contain whitespace",
            TargetUrlError::ControlCharacter => "must not contain control characters",
            TargetUrlError::NotAbsolute => "must be an absolute http or https URL",
            TargetUrlError::Scheme => "must use http or https",
            TargetUrlError::NoHost => "must have a host",
            TargetUrlError::UserInfo => "must not contain a user name or password before the host",
        }
    }
}

/// Checks a target and returns it parsed (host in lower-case punycode,
/// IPv4 in dotted form), or why it is refused.
pub fn parse(s: &str) -> Result<Url, TargetUrlError> {
    if s.len() > MAX_LEN {
        return Err(TargetUrlError::TooLong);
    }
    if s.chars().any(char::is_whitespace) {
        return Err(TargetUrlError::Whitespace);
    }
    if s.chars().any(char::is_control) {
        return Err(TargetUrlError::ControlCharacter);
    }
    // `url` normalises `http:x.io` and `http:///x.io` into valid URLs; a
    // link target must spell out `scheme://host` itself.
    let rest =
        strip_prefix_ignore_case(s, "https://").or_else(|| strip_prefix_ignore_case(s, "http://"));
    let Some(rest) = rest else {
        return Err(match Url::parse(s) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => TargetUrlError::Scheme,
            _ => TargetUrlError::NotAbsolute,
        });
    };
    // The authority as written: up to the first character that ends it
    // (`\` does for http(s) in the WHATWG parser).
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(TargetUrlError::NoHost);
    }
    if authority.contains('@') {
        return Err(TargetUrlError::UserInfo);
    }
    let url = Url::parse(s).map_err(|_| TargetUrlError::NotAbsolute)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetUrlError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetUrlError::UserInfo);
    }
    match url.host_str() {
        Some(h) if !h.is_empty() => Ok(url),
        _ => Err(TargetUrlError::NoHost),
    }
}

/// The `Location` value of an accepted target: `stored` exactly when it is
/// ASCII, else the parsed URL's serialisation (always ASCII: punycode host,
/// percent-encoded UTF-8 elsewhere).
pub fn location<'a>(stored: &'a str, parsed: &'a Url) -> &'a str {
    if stored.is_ascii() {
        stored
    } else {
        parsed.as_str()
    }
}

/// The host of a parsed target as compared with host lists: lower-case
/// punycode without a trailing dot (`Example.COM.` and `example.com` are
/// one host), IPv6 in brackets.
pub fn comparable_host(url: &Url) -> Option<&str> {
    url.host_str().map(|h| h.strip_suffix('.').unwrap_or(h))
}

/// Normalises a host written in configuration (a domain in any case, in
/// Unicode or punycode, or an IP address) the way [`comparable_host`] does.
pub fn normalise_host(host: &str) -> Option<String> {
    let host = host.trim();
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    let parsed = url::Host::parse(host).ok()?;
    let text = parsed.to_string();
    Some(text.strip_suffix('.').map(str::to_owned).unwrap_or(text))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_rules() {
        for ok in [
            "https://example.com",
            "http://a.b/c?d=e#f",
            "https://127.0.0.1:8080/x",
            "HTTPS://Example.com/Path",
            "https://bücher.example/straße?q=ü",
            "https://[::1]:8443/",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("hello", TargetUrlError::NotAbsolute),
            ("example.com", TargetUrlError::NotAbsolute),
            ("ftp://x", TargetUrlError::Scheme),
            ("javascript:alert(1)", TargetUrlError::Scheme),
            ("data:text/html,hi", TargetUrlError::Scheme),
            (" https://x.io", TargetUrlError::Whitespace),
            ("https://x.io/a b", TargetUrlError::Whitespace),
            ("https://x.io/\u{3000}", TargetUrlError::Whitespace),
            ("https://", TargetUrlError::NoHost),
            ("http:///path", TargetUrlError::NoHost),
            ("http:x.io", TargetUrlError::NotAbsolute),
            ("", TargetUrlError::NotAbsolute),
            ("https://:80/x", TargetUrlError::NotAbsolute),
            ("https://x.io/\u{7}", TargetUrlError::ControlCharacter),
            ("https://x.io/\u{1b}[31m", TargetUrlError::ControlCharacter),
            ("https://x.io/\u{7f}", TargetUrlError::ControlCharacter),
            ("https://x.io/\u{85}", TargetUrlError::Whitespace),
            ("https://x.io/\u{9b}", TargetUrlError::ControlCharacter),
            ("https://x.io/\0", TargetUrlError::ControlCharacter),
            ("https://trusted.com@evil.com/", TargetUrlError::UserInfo),
            ("https://user:pw@evil.com/", TargetUrlError::UserInfo),
            ("https://@evil.com/", TargetUrlError::UserInfo),
            ("https://:@evil.com/", TargetUrlError::UserInfo),
        ] {
            assert_eq!(parse(bad).err(), Some(why), "{bad:?}");
        }
        let long = format!("https://x.io/{}", "a".repeat(MAX_LEN));
        assert_eq!(parse(&long).err(), Some(TargetUrlError::TooLong));
        assert!(parse(&long[..MAX_LEN]).is_ok());
        // An `@` after the authority is only part of the path or query.
        assert!(parse("https://x.io/@me?u=a@b").is_ok());
        // `\` ends the authority as browsers read it: the host is x.io.
        let url = parse("https://x.io\\@evil.com/").expect("parses");
        assert_eq!(url.host_str(), Some("x.io"));
    }

    #[test]
    fn location_is_the_stored_text_or_its_ascii_form() {
        let stored = "https://example.com/a?b=%20c#d";
        let url = parse(stored).expect("ok");
        assert_eq!(location(stored, &url), stored);
        // Not normalised when ASCII: no trailing slash added, case kept.
        let bare = "https://Example.com";
        assert_eq!(location(bare, &parse(bare).expect("ok")), bare);

        let stored = "https://bücher.example/straße?q=ü#é";
        let url = parse(stored).expect("ok");
        assert_eq!(
            location(stored, &url),
            "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC#%C3%A9"
        );
        assert!(location(stored, &url).is_ascii());
    }

    #[test]
    fn hosts_compare_in_lower_case_punycode() {
        let url = parse("https://ЕXAMPLE.com./x").expect("ok");
        assert_eq!(
            comparable_host(&url),
            normalise_host("еxample.com").as_deref()
        );
        assert_eq!(
            normalise_host("Bücher.Example."),
            Some("xn--bcher-kva.example".to_owned())
        );
        assert_eq!(
            normalise_host("xn--bcher-kva.example"),
            Some("xn--bcher-kva.example".to_owned())
        );
        assert_eq!(normalise_host("127.0.0.1"), Some("127.0.0.1".to_owned()));
        assert_eq!(normalise_host("[::1]"), Some("[::1]".to_owned()));
        assert_eq!(normalise_host(""), None);
        assert_eq!(normalise_host("a b"), None);
        let ip = parse("http://2130706433:8000/").expect("ok");
        assert_eq!(comparable_host(&ip), Some("127.0.0.1"));
    }
}
