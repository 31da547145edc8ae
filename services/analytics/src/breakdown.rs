//! What a redirect adds to the per-link breakdowns (`link_stats_referrers`,
//! `link_stats_agents`): the browser, OS and device class of its user agent
//! (woothee), whether it is a bot (woothee's crawler list plus isbot's
//! patterns), and the host of its referrer. The analytics service is the
//! only writer of the breakdowns, and every path into them classifies with
//! these (clicks from the redirect service, `redirect` events recorded
//! through the API, `rebuild-rollups` over the event rows), so they agree
//! however the event arrived.

use std::sync::LazyLock;

static BOTS: LazyLock<isbot::Bots> = LazyLock::new(isbot::Bots::default);
static PARSER: LazyLock<woothee::parser::Parser> = LazyLock::new(woothee::parser::Parser::new);

/// Longest family name kept (a rollup key).
const MAX_NAME: usize = 64;

/// A user agent, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub browser: String,
    pub os: String,
    /// `desktop`, `mobile`, `tablet`, `bot` or `other`.
    pub device: &'static str,
    pub is_bot: bool,
}

/// Classifies a `User-Agent` (absent: all `unknown`, device `other`).
pub fn classify(user_agent: Option<&str>) -> Agent {
    let Some(ua) = user_agent.map(str::trim).filter(|u| !u.is_empty()) else {
        return Agent {
            browser: "unknown".into(),
            os: "unknown".into(),
            device: "other",
            is_bot: false,
        };
    };
    let parsed = PARSER.parse(ua);
    let (name, category, os) = parsed
        .as_ref()
        .map_or(("UNKNOWN", "UNKNOWN", "UNKNOWN"), |r| {
            (r.name, r.category, r.os)
        });
    let is_bot = category == "crawler" || BOTS.is_bot(ua);
    let lower = ua.to_ascii_lowercase();
    let device = if is_bot {
        "bot"
    } else {
        match category {
            "pc" => "desktop",
            "smartphone" | "mobilephone" => {
                if os == "iPad" || (lower.contains("android") && !lower.contains("mobile")) {
                    "tablet"
                } else {
                    "mobile"
                }
            }
            _ => "other",
        }
    };
    Agent {
        browser: family(name),
        os: family(os),
        device,
        is_bot,
    }
}

fn family(name: &str) -> String {
    if name.is_empty() || name == "UNKNOWN" {
        "unknown".into()
    } else {
        name.chars().take(MAX_NAME).collect()
    }
}

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
    fn browsers_os_and_devices() {
        let firefox = classify(Some(
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
        ));
        assert_eq!(
            (
                firefox.browser.as_str(),
                firefox.os.as_str(),
                firefox.device,
                firefox.is_bot
            ),
            ("Firefox", "Linux", "desktop", false)
        );
        let iphone = classify(Some(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        ));
        assert_eq!((iphone.os.as_str(), iphone.device), ("iPhone", "mobile"));
        let ipad = classify(Some(
            "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        ));
        assert_eq!(ipad.device, "tablet");
        let android_tablet = classify(Some(
            "Mozilla/5.0 (Linux; Android 14; SM-X910) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        ));
        assert_eq!(android_tablet.device, "tablet");
    }

    #[test]
    fn bots_are_flagged() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "curl/8.5.0",
            "python-requests/2.32.3",
        ] {
            let a = classify(Some(ua));
            assert!(a.is_bot, "{ua}");
            assert_eq!(a.device, "bot");
        }
        let none = classify(None);
        assert_eq!(
            (none.browser.as_str(), none.device, none.is_bot),
            ("unknown", "other", false)
        );
    }

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
        assert_eq!(classify(Some("")), classify(None));
        assert_eq!(classify(Some("  ")), classify(None));
        assert_eq!(referrer_host(Some("")), referrer_host(None));
    }
}
