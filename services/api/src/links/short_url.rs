//! The short URL of a link: `PUBLIC_BASE_URL` and the link's code, the
//! address a user pastes. Every link response carries it (`short_url`);
//! [`short_url`] is the one place it is composed.

use url::Url;

use super::model::Link;

/// `PUBLIC_BASE_URL` when not set: the local edge.
pub const DEFAULT_PUBLIC_BASE_URL: &str = "http://127.0.0.1:8000";

/// The public base URL short links live under: an absolute `http(s)` URL
/// with a host and neither path, query nor fragment, kept without its
/// trailing slash (`https://sho.rt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase(String);

impl PublicBase {
    /// Parses and checks a base URL (the config's value parser).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let url = Url::parse(raw).map_err(|e| format!("not an absolute URL ({e}): {raw:?}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("must be an http or https URL: {raw:?}"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("must have a host: {raw:?}"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "must not have a path, query or fragment (short links live at its root): {raw:?}"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("must not carry a user or password: {raw:?}"));
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    /// `scheme://host[:port]`, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for PublicBase {
    fn default() -> Self {
        Self(DEFAULT_PUBLIC_BASE_URL.to_owned())
    }
}

impl std::fmt::Display for PublicBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The URL that redirects to `link`: `<base>/<short_code>` on the default
/// domain, `<scheme of base>://<domain>/<short_code>` on a custom domain
/// (codes are `[A-Za-z0-9_-]`, nothing to escape). The one place a short
/// URL is made.
pub fn short_url(base: &PublicBase, link: &Link) -> String {
    match &link.domain {
        None => format!("{}/{}", base.as_str(), link.short_code),
        Some(domain) => {
            let scheme = base.as_str().split_once("://").map_or("https", |(s, _)| s);
            format!("{scheme}://{domain}/{}", link.short_code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_normalised() {
        for (raw, want) in [
            ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
            ("https://Sho.RT/", "https://sho.rt"),
            (
                " https://go.example.com:8443 ",
                "https://go.example.com:8443",
            ),
        ] {
            assert_eq!(PublicBase::parse(raw).map(|b| b.0), Ok(want.to_owned()));
        }
        for bad in [
            "",
            "sho.rt",
            "ftp://sho.rt",
            "https://sho.rt/s",
            "https://sho.rt/?x=1",
            "https://sho.rt/#f",
            "https://u:p@sho.rt",
            "mailto:a@b.c",
        ] {
            assert!(PublicBase::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(PublicBase::default().as_str(), DEFAULT_PUBLIC_BASE_URL);
    }
}
