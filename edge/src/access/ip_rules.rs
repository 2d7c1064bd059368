//! `allow` and `deny`: which client networks a site or rule answers.
//! `deny` is asked first; with `allow` set, every other address is
//! refused. IPv4 clients on a dual-stack listener (`::ffff:a.b.c.d`) match
//! IPv4 networks (`IpNet::contains`).

use std::net::IpAddr;

use crate::config::IpNet;

/// The compiled lists.
#[derive(Debug, Default)]
pub struct IpRules {
    pub(crate) allow: Option<Vec<IpNet>>,
    pub(crate) deny: Vec<IpNet>,
}

/// What the lists say about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVerdict {
    Allowed,
    /// In `deny`.
    Denied,
    /// Not in `allow`.
    NotAllowed,
}

impl IpRules {
    pub fn verdict(&self, ip: IpAddr) -> IpVerdict {
        if self.deny.iter().any(|n| n.contains(ip)) {
            return IpVerdict::Denied;
        }
        match &self.allow {
            Some(allow) if !allow.iter().any(|n| n.contains(ip)) => IpVerdict::NotAllowed,
            _ => IpVerdict::Allowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_first_then_allow_for_v4_v6_and_mapped() {
        let nets = |l: &[&str]| {
            l.iter()
                .map(|n| n.parse().expect("net"))
                .collect::<Vec<_>>()
        };
        let rules = IpRules {
            allow: Some(nets(&["203.0.113.0/24", "2001:db8::/32"])),
            deny: nets(&["203.0.113.66", "2001:db8:bad::/48"]),
        };
        let cases = [
            ("203.0.113.5", IpVerdict::Allowed),
            ("::ffff:203.0.113.5", IpVerdict::Allowed),
            ("203.0.113.66", IpVerdict::Denied),
            ("::ffff:203.0.113.66", IpVerdict::Denied),
            ("198.51.100.1", IpVerdict::NotAllowed),
            ("2001:db8::1", IpVerdict::Allowed),
            ("2001:db8:bad::1", IpVerdict::Denied),
            ("2001:db9::1", IpVerdict::NotAllowed),
        ];
        for (ip, want) in cases {
            assert_eq!(rules.verdict(ip.parse().expect("ip")), want, "{ip}");
        }
        let deny_only = IpRules {
            allow: None,
            deny: nets(&["10.0.0.0/8"]),
        };
        assert_eq!(
            deny_only.verdict("10.1.1.1".parse().expect("ip")),
            IpVerdict::Denied
        );
        assert_eq!(
            deny_only.verdict("11.1.1.1".parse().expect("ip")),
            IpVerdict::Allowed
        );
    }
}
