//! `real_ip`: the client address behind trusted proxies, as nginx's
//! `set_real_ip_from` with `real_ip_recursive on`: the right-most address
//! of the header that is not itself a trusted proxy, and only when the
//! connection comes from one.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

use crate::config::IpNet;

/// Trusted proxies and the header they write.
#[derive(Debug)]
pub struct RealIp {
    pub(crate) from: Vec<IpNet>,
    pub(crate) header: HeaderName,
}

impl RealIp {
    fn trusted(&self, ip: IpAddr) -> bool {
        self.from.iter().any(|net| net.contains(ip))
    }

    /// The client address of a request that came from `peer`: `peer`
    /// itself unless it is trusted; else, walking the header's hops right
    /// to left (the last value of the field first), the first one that is
    /// not trusted, or the left-most when all are. A hop that is not an
    /// address ends the walk at the last good one: whatever is left of it
    /// was written by someone we cannot vouch for.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let mut client = peer;
        for value in headers.get_all(&self.header).iter().rev() {
            let Ok(value) = value.to_str() else {
                return client;
            };
            for hop in value.rsplit(',') {
                let Some(ip) = parse_hop(hop) else {
                    return client;
                };
                client = ip;
                if !self.trusted(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:443` or `203.0.113.7:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_ip(from: &[&str]) -> RealIp {
        RealIp {
            from: from.iter().map(|n| n.parse().expect("net")).collect(),
            header: HeaderName::from_static("x-forwarded-for"),
        }
    }

    #[test]
    fn right_most_untrusted_hop_from_trusted_peers_only() {
        let r = real_ip(&["10.0.0.0/8", "::1"]);
        // (peer, header values, client)
        let cases: &[(&str, &[&str], &str)] = &[
            ("10.0.0.1", &["203.0.113.7"], "203.0.113.7"),
            ("192.0.2.1", &["203.0.113.7"], "192.0.2.1"),
            (
                "10.0.0.1",
                &["198.51.100.1, 203.0.113.7, 10.0.0.9"],
                "203.0.113.7",
            ),
            ("10.0.0.1", &["198.51.100.1", "203.0.113.7"], "203.0.113.7"),
            ("10.0.0.1", &["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
            ("10.0.0.1", &[], "10.0.0.1"),
            ("10.0.0.1", &["1.2.3.4, garbage, 10.0.0.2"], "10.0.0.2"),
            ("10.0.0.1", &["[2001:db8::5]:443"], "2001:db8::5"),
            ("::ffff:10.0.0.1", &["203.0.113.7:1234"], "203.0.113.7"),
            ("::1", &["2001:db8::7"], "2001:db8::7"),
        ];
        for (peer, values, want) in cases {
            let mut headers = HeaderMap::new();
            for v in *values {
                headers.append("x-forwarded-for", v.parse().expect("value"));
            }
            let got = r.client(peer.parse().expect("peer"), &headers);
            assert_eq!(
                got,
                want.parse::<IpAddr>().expect("want"),
                "{peer} {values:?}"
            );
        }
    }
}
