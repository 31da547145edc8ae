//! Which targets a link may have beyond the URL rules
//! ([`shortline_shared::target_url`]): none on this service's own public
//! hosts (a link to ourselves redirects in a loop), and none on a domain of
//! the operator's blocklist.
//!
//! * `PUBLIC_HOSTS` lists `host` or `host:port` entries. A target whose host
//!   matches an entry, and whose port does too when the entry names one
//!   (a target without a port has its scheme's default), is refused.
//! * `TARGET_BLOCKLIST_FILE` holds one domain per line (`#` starts a
//!   comment). A domain blocks itself and its subdomains; an IP address
//!   blocks itself. The file is re-read when its modification time or size
//!   changes, checked at most once per second, so edits apply without a
//!   restart; an unreadable file keeps the last list that was read.
//!
//! Hosts are compared in lower-case punycode without a trailing dot, so a
//! Unicode, mixed-case or fully qualified spelling of a listed domain is
//! still that domain. Refusals are `422` (the URL is well formed, the policy
//! says no); malformed URLs stay `400`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use shortline_shared::target_url::{self, TargetUrlError, Url};

use crate::error::{ApiError, FieldErrors};

/// `PUBLIC_HOSTS` when not set: the local edge.
pub const DEFAULT_PUBLIC_HOSTS: &str = "127.0.0.1:8000,localhost:8000";
/// Least time between two looks at the blocklist file.
const BLOCKLIST_RECHECK: Duration = Duration::from_secs(1);

/// Why a target may not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetProblem {
    /// It breaks the URL rules (a `400`).
    Malformed(TargetUrlError),
    /// It is well formed, but the policy refuses it (a `422`); says why.
    Refused(String),
}

impl std::fmt::Display for TargetProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetProblem::Malformed(e) => e.fmt(f),
            TargetProblem::Refused(why) => f.write_str(why),
        }
    }
}

impl From<TargetProblem> for ApiError {
    fn from(p: TargetProblem) -> Self {
        match p {
            TargetProblem::Malformed(e) => ApiError::field("original_url", e.problem()),
            TargetProblem::Refused(why) => {
                let mut details = FieldErrors::new();
                details.insert("original_url".into(), why);
                ApiError::Unprocessable(details)
            }
        }
    }
}

/// The target rules of this deployment. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct TargetPolicy {
    own_hosts: Vec<OwnHost>,
    blocklist: Option<Blocklist>,
}

/// One `PUBLIC_HOSTS` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnHost {
    host: String,
    port: Option<u16>,
}

impl Default for TargetPolicy {
    /// The default public hosts, no blocklist.
    fn default() -> Self {
        let own_hosts = DEFAULT_PUBLIC_HOSTS
            .split(',')
            .filter_map(|e| parse_own_host(e).ok())
            .collect();
        Self {
            own_hosts,
            blocklist: None,
        }
    }
}

impl TargetPolicy {
    /// The policy from `PUBLIC_HOSTS` entries and an optional blocklist file
    /// (read now: a file that cannot be read is an error at start).
    pub fn new(public_hosts: &[String], blocklist: Option<&Path>) -> anyhow::Result<Self> {
        let own_hosts = public_hosts
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| parse_own_host(e).map_err(|why| anyhow::anyhow!("PUBLIC_HOSTS: {why}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let blocklist = match blocklist {
            Some(path) if !path.as_os_str().is_empty() => Some(Blocklist::open(path)?),
            _ => None,
        };
        Ok(Self {
            own_hosts,
            blocklist,
        })
    }

    /// Whether `url` may be a link's target.
    pub fn check(&self, url: &str) -> Result<(), TargetProblem> {
        let parsed = target_url::parse(url).map_err(TargetProblem::Malformed)?;
        let Some(host) = target_url::comparable_host(&parsed) else {
            return Err(TargetProblem::Malformed(TargetUrlError::NoHost));
        };
        let port = parsed.port_or_known_default();
        if self
            .own_hosts
            .iter()
            .any(|own| own.host == host && own.port.is_none_or(|p| Some(p) == port))
        {
            return Err(TargetProblem::Refused(
                "must not point at this service itself (the redirect would loop)".into(),
            ));
        }
        if let Some(blocked) = self
            .blocklist
            .as_ref()
            .and_then(|b| b.blocks(&parsed, host))
        {
            return Err(TargetProblem::Refused(format!(
                "the domain {blocked} is blocklisted"
            )));
        }
        Ok(())
    }
}

/// Parses `host` or `host:port` (`[v6]:port` for IPv6).
fn parse_own_host(entry: &str) -> Result<OwnHost, String> {
    let entry = entry.trim();
    let (host, port) = match entry.rsplit_once(':') {
        // An IPv6 address without brackets has colons but no port.
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("bad port in {entry:?}"))?;
            (host, Some(port))
        }
        _ => (entry, None),
    };
    let host = target_url::normalise_host(host).ok_or_else(|| format!("bad host in {entry:?}"))?;
    Ok(OwnHost { host, port })
}

/// The blocklist file and the domains last read from it.
#[derive(Debug)]
struct Blocklist {
    path: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    checked_at: Instant,
    stamp: Option<FileStamp>,
    entries: Arc<HashSet<String>>,
}

/// What tells that the file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

impl Blocklist {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let stamp = FileStamp::of(path)
            .with_context(|| format!("TARGET_BLOCKLIST_FILE {} cannot be read", path.display()))?;
        let entries = read_blocklist(path)
            .with_context(|| format!("TARGET_BLOCKLIST_FILE {} cannot be read", path.display()))?;
        tracing::info!(file = %path.display(), domains = entries.len(), "target blocklist loaded");
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new(Loaded {
                checked_at: Instant::now(),
                stamp: Some(stamp),
                entries: Arc::new(entries),
            }),
        })
    }

    /// The current entries, re-reading the file when it changed (looked at
    /// no more than once per [`BLOCKLIST_RECHECK`]).
    fn entries(&self) -> Arc<HashSet<String>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked_at.elapsed() >= BLOCKLIST_RECHECK {
            state.checked_at = Instant::now();
            match FileStamp::of(&self.path) {
                Ok(stamp) if Some(stamp) == state.stamp => {}
                Ok(stamp) => match read_blocklist(&self.path) {
                    Ok(entries) => {
                        tracing::info!(file = %self.path.display(), domains = entries.len(), "target blocklist reloaded");
                        state.entries = Arc::new(entries);
                        state.stamp = Some(stamp);
                    }
                    Err(e) => {
                        tracing::warn!(file = %self.path.display(), error = %e, "target blocklist unreadable; keeping the last one read");
                    }
                },
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), error = %e, "target blocklist unreadable; keeping the last one read");
                }
            }
        }
        state.entries.clone()
    }

    /// The blocklist entry that refuses `url` (whose comparable host is
    /// `host`), if any: for a domain, itself or any parent domain.
    fn blocks(&self, url: &Url, host: &str) -> Option<String> {
        let entries = self.entries();
        if !matches!(url.host(), Some(url::Host::Domain(_))) {
            return entries.contains(host).then(|| host.to_owned());
        }
        let mut candidate = host;
        loop {
            if entries.contains(candidate) {
                return Some(candidate.to_owned());
            }
            match candidate.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => candidate = parent,
                _ => return None,
            }
        }
    }
}

fn read_blocklist(path: &Path) -> std::io::Result<HashSet<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(parse_blocklist(&text, path))
}

/// One domain (or IP address) per line; `#` starts a comment; a leading
/// `*.` or `.` is allowed (a domain covers its subdomains anyway). Lines
/// that are not a host are skipped with a warning.
fn parse_blocklist(text: &str, path: &Path) -> HashSet<String> {
    let mut entries = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let domain = line
            .strip_prefix("*.")
            .or_else(|| line.strip_prefix('.'))
            .unwrap_or(line);
        match target_url::normalise_host(domain) {
            Some(host) => {
                entries.insert(host);
            }
            None => {
                tracing::warn!(file = %path.display(), line = i + 1, "blocklist line is not a domain; skipped");
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], blocklist: &str) -> TargetPolicy {
        let dir =
            std::env::temp_dir().join(format!("shortline-blocklist-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("blocklist.txt");
        std::fs::write(&file, blocklist).expect("write");
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let p = TargetPolicy::new(&hosts, Some(&file)).expect("policy");
        let _ = std::fs::remove_dir_all(&dir);
        p
    }

    fn refused(p: &TargetPolicy, url: &str) -> bool {
        matches!(p.check(url), Err(TargetProblem::Refused(_)))
    }

    #[test]
    fn own_hosts_match_host_and_port_with_default_ports() {
        let p = TargetPolicy::default();
        assert!(refused(&p, "http://127.0.0.1:8000/abc123"));
        assert!(refused(&p, "http://LOCALHOST:8000/x"));
        assert!(refused(&p, "http://localhost.:8000/x"));
        assert!(refused(&p, "http://2130706433:8000/x"));
        assert!(!refused(&p, "http://127.0.0.1:8001/x"));
        assert!(!refused(&p, "http://localhost/x"));

        let p = policy(&["sho.rt", "go.example:443", "[::1]:8000"], "");
        assert!(refused(&p, "https://sho.rt/x"));
        assert!(refused(&p, "http://SHO.RT:9999/x"));
        assert!(!refused(&p, "https://www.sho.rt/x"));
        assert!(refused(&p, "https://go.example/x"));
        assert!(refused(&p, "http://go.example:443/x"));
        assert!(!refused(&p, "http://go.example/x"));
        assert!(refused(&p, "http://[::1]:8000/x"));
        assert!(TargetPolicy::new(&["a:b".into()], None).is_err());
        assert!(TargetPolicy::new(&["".into()], None).is_ok());
    }

    #[test]
    fn blocklist_covers_subdomains_idn_and_ips() {
        let p = policy(
            &[],
            "# phishing\nevil.com\n  *.bad.example  # inline comment\nBücher.example\nxn--xample-2of.com\n10.0.0.1\nnot a domain\n",
        );
        for url in [
            "https://evil.com/",
            "https://EVIL.com./x",
            "https://a.b.evil.com/x",
            "https://x.bad.example/",
            "https://bad.example/",
            "https://bücher.example/",
            "https://xn--bcher-kva.example/",
            "https://BÜCHER.example/",
            "https://ЕXAMPLE.com/",
            "http://10.0.0.1/",
        ] {
            assert!(refused(&p, url), "{url}");
        }
        for url in [
            "https://notevil.com/",
            "https://evil.com.example.org/",
            "https://example.com/",
            "http://10.0.0.10/",
        ] {
            assert!(p.check(url).is_ok(), "{url}");
        }
        assert_eq!(
            p.check("hello"),
            Err(TargetProblem::Malformed(TargetUrlError::NotAbsolute))
        );
    }

    #[test]
    fn a_missing_blocklist_file_fails_at_start() {
        let missing = std::env::temp_dir().join(format!("absent-{}", ulid::Ulid::generate()));
        assert!(TargetPolicy::new(&[], Some(&missing)).is_err());
    }
}
