//! What a `User-Agent` is: browser, OS, device class and whether it is a bot
//! (woothee, plus isbot's patterns). One classification for everything that
//! reads one: the analytics breakdowns (`browsers`, `operating_systems`,
//! `devices`, `bots`) and the redirect service's link rules (`device`, `os`
//! conditions, [`crate::link_rules`]), so that a rule for `mobile` matches
//! exactly the clicks the statistics count as mobile.

use std::sync::LazyLock;

use crate::link_rules::{Device, Os};

static BOTS: LazyLock<isbot::Bots> = LazyLock::new(isbot::Bots::default);
static PARSER: LazyLock<woothee::parser::Parser> = LazyLock::new(woothee::parser::Parser::new);

/// Longest family name kept (a rollup key).
const MAX_NAME: usize = 64;

/// A user agent, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub browser: String,
    /// The OS as woothee names it (`iPhone`, `Windows 10`, `Mac OSX`...).
    pub os: String,
    /// `desktop`, `mobile`, `tablet`, `bot` or `other`.
    pub device: Device,
    pub is_bot: bool,
}

impl Agent {
    /// The OS family of a link rule's `os` condition.
    pub fn os_family(&self) -> Os {
        os_family(&self.os)
    }
}

/// The family of a woothee OS name.
pub fn os_family(os: &str) -> Os {
    match os {
        "iPhone" | "iPad" | "iPod" | "iOS" => Os::Ios,
        "Android" => Os::Android,
        "Mac OSX" | "Mac OS" | "Mac OS Classic" => Os::Macos,
        "Linux" => Os::Linux,
        "ChromeOS" => Os::Chromeos,
        _ if os.starts_with("Windows") => Os::Windows,
        _ => Os::Other,
    }
}

/// Classifies a `User-Agent` (absent: all `unknown`, device `other`).
pub fn classify(user_agent: Option<&str>) -> Agent {
    let Some(ua) = user_agent.map(str::trim).filter(|u| !u.is_empty()) else {
        return Agent {
            browser: "unknown".into(),
            os: "unknown".into(),
            device: Device::Other,
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
        Device::Bot
    } else {
        match category {
            "pc" => Device::Desktop,
            "smartphone" | "mobilephone" => {
                if os == "iPad" || (lower.contains("android") && !lower.contains("mobile")) {
                    Device::Tablet
                } else {
                    Device::Mobile
                }
            }
            _ => Device::Other,
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
            ("Firefox", "Linux", Device::Desktop, false)
        );
        let iphone = classify(Some(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        ));
        assert_eq!(
            (iphone.os.as_str(), iphone.device, iphone.os_family()),
            ("iPhone", Device::Mobile, Os::Ios)
        );
        let ipad = classify(Some(
            "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        ));
        assert_eq!((ipad.device, ipad.os_family()), (Device::Tablet, Os::Ios));
        let android_tablet = classify(Some(
            "Mozilla/5.0 (Linux; Android 14; SM-X910) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        ));
        assert_eq!(
            (android_tablet.device, android_tablet.os_family()),
            (Device::Tablet, Os::Android)
        );
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
            assert_eq!(a.device, Device::Bot);
        }
        let none = classify(None);
        assert_eq!(
            (none.browser.as_str(), none.device, none.is_bot),
            ("unknown", Device::Other, false)
        );
    }

    #[test]
    fn os_families() {
        for (ua, family) in [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
                Os::Windows,
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                Os::Macos,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
                Os::Android,
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 15917.71.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
                Os::Chromeos,
            ),
            ("curl/8.5.0", Os::Other),
        ] {
            assert_eq!(classify(Some(ua)).os_family(), family, "{ua}");
        }
    }

    /// An absent or blank agent is classified like none.
    #[test]
    fn empty_is_absent() {
        assert_eq!(classify(Some("")), classify(None));
        assert_eq!(classify(Some("  ")), classify(None));
    }
}
