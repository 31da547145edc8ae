//! What a redirect adds to the per-link breakdowns (`link_stats_referrers`,
//! `link_stats_agents`): the browser, OS and device class of its user agent
//! (the one classification, [`shortline_shared::user_agent`], that link
//! rules use too), and the host of its referrer. The analytics service is
//! the only writer of the breakdowns, and every path into them classifies
//! with these (clicks from the redirect service, `redirect` events recorded
//! through the API, `rebuild-rollups` over the event rows), so they agree
//! however the event arrived.

pub use shortline_shared::user_agent::{Agent, classify};

/// The referrer's host, lower-cased (`""`: direct or unusable).
pub fn referrer_host(referrer: Option<&str>) -> String {
    referrer
        .and_then(|r| url::Url::parse(r.trim()).ok())
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .map(|h| h.chars().take(255).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrer_hosts() {
        assert_eq!(
            referrer_host(Some("https://News.Example.org/item?id=1")),
            "news.example.org"
        );
        assert_eq!(referrer_host(Some("not a url")), "");
        assert_eq!(referrer_host(None), "");
    }

    /// `rebuild-rollups` reads an absent or non-string `user_agent` or
    /// `referrer` as `""`: it must classify like an absent one.
    #[test]
    fn empty_is_absent() {
        assert_eq!(referrer_host(Some("")), referrer_host(None));
    }
}
