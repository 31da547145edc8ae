//! Who the client is behind a reverse proxy: `X-Forwarded-For` is believed
//! only from the networks configured as trusted proxies (`TRUSTED_PROXIES`).

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Whether the address is one of the trusted networks.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client's address: the peer itself, unless the peer is a trusted
    /// proxy, in which case the right-most `X-Forwarded-For` entry that is
    /// not a trusted proxy (entries further left are the client's own
    /// claims and are ignored).
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.contains(&peer) {
            return Some(peer);
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                // Garbage in the chain: stop trusting what is left of it.
                break;
            };
            client = ip;
            if !self.contains(&ip) {
                break;
            }
        }
        Some(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec![
            "127.0.0.1/32".parse().expect("valid"),
            "10.0.0.0/8".parse().expect("valid"),
        ])
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().expect("valid"));
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let p = proxies();
        let ip = |s: &str| s.parse::<IpAddr>().expect("valid");
        // Untrusted peer: its own address, whatever it claims.
        assert_eq!(
            p.client_ip(Some(ip("203.0.113.9")), &xff("1.2.3.4")),
            Some(ip("203.0.113.9"))
        );
        // Trusted peer: the right-most untrusted hop.
        assert_eq!(
            p.client_ip(
                Some(ip("127.0.0.1")),
                &xff("6.6.6.6, 198.51.100.7, 10.1.2.3")
            ),
            Some(ip("198.51.100.7"))
        );
        // Trusted peer, no header: the peer.
        assert_eq!(
            p.client_ip(Some(ip("10.0.0.5")), &HeaderMap::new()),
            Some(ip("10.0.0.5"))
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            p.client_ip(Some(ip("127.0.0.1")), &xff("1.1.1.1, junk, 10.0.0.9")),
            Some(ip("10.0.0.9"))
        );
        assert_eq!(p.client_ip(None, &xff("1.1.1.1")), None);
    }
}
