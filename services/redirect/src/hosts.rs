//! Which domain a request is for, by its `Host` (issue #16: custom domains).
//!
//! The default domain (links without a custom domain) answers on the host
//! of `PUBLIC_BASE_URL`, on any host in `REDIRECT_DEFAULT_HOSTS`, and on
//! whatever reaches the service by address (no `Host`, an IP literal,
//! `localhost`: health checks, tests, clients of the contract talking to
//! an address). Any other host names a custom domain: its links are cached
//! under `<host>/<code>` and looked up by that host, so a host that is no
//! domain finds nothing and answers 404 like an unknown code. The default
//! domain keeps the plain code as its key, and the check costs a few
//! comparisons and no allocation.

use std::borrow::Cow;
use std::net::IpAddr;

use shortline_shared::cache::domain_code;

/// The hosts of the default domain.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    defaults: Vec<String>,
}

impl Hosts {
    /// `public_base_url`'s host and `extra` hosts (lower-case, no port).
    pub fn new(public_base_url: &str, extra: &[String]) -> anyhow::Result<Self> {
        let base = url::Url::parse(public_base_url)
            .map_err(|e| anyhow::anyhow!("PUBLIC_BASE_URL {public_base_url:?}: {e}"))?;
        let mut defaults: Vec<String> = base.host_str().map(str::to_owned).into_iter().collect();
        defaults.extend(
            extra
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
        );
        Ok(Self { defaults })
    }

    /// The custom domain a request with this `Host` is for (normalised:
    /// lower-case, no port, no trailing dot), `None` for the default domain.
    pub fn domain<'a>(&self, host: Option<&'a str>) -> Option<Cow<'a, str>> {
        let name = strip_port(host?).trim_end_matches('.');
        if name.is_empty()
            || name.starts_with('[')
            || name.eq_ignore_ascii_case("localhost")
            || self.defaults.iter().any(|d| d.eq_ignore_ascii_case(name))
            || name.parse::<IpAddr>().is_ok()
        {
            return None;
        }
        Some(if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        })
    }

    /// The cache key of `code` on the request's domain.
    pub fn key<'a>(&self, host: Option<&str>, code: &'a str) -> Cow<'a, str> {
        match self.domain(host) {
            None => Cow::Borrowed(code),
            Some(domain) => Cow::Owned(domain_code(Some(&domain), code)),
        }
    }
}

/// `host[:port]` → `host` (`[v6]:port` → `[v6]`).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_addresses_and_custom_domains() {
        let hosts = Hosts::new("https://sho.rt", &["Alias.Example".into()]).expect("hosts");
        for default in [
            None,
            Some("sho.rt"),
            Some("SHO.RT:443"),
            Some("alias.example"),
            Some("127.0.0.1:8000"),
            Some("[::1]:8080"),
            Some("localhost:18081"),
            Some("10.0.0.7"),
            Some(""),
        ] {
            assert_eq!(hosts.domain(default), None, "{default:?}");
            assert_eq!(hosts.key(default, "abc"), "abc");
        }
        assert_eq!(
            hosts.domain(Some("Go.Example.com:8443")).as_deref(),
            Some("go.example.com")
        );
        assert_eq!(
            hosts.domain(Some("go.example.com.")).as_deref(),
            Some("go.example.com")
        );
        assert_eq!(
            hosts.key(Some("go.example.com"), "abc"),
            "go.example.com/abc"
        );
    }
}
