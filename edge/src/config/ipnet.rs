//! `IpNet`: the client networks of `purge.allow_from`.

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let addr: std::net::IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?
        };
        Ok(IpNet { addr, prefix })
    }
}

impl IpNet {
    /// Whether `ip` is in the network. IPv4 clients and IPv4-mapped IPv6
    /// clients (`::ffff:a.b.c.d`, from a dual-stack listener) are the same
    /// client, whichever way the network is written.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match self.addr {
            IpAddr::V4(net) => {
                let ip = match ip {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(v6) => v6.to_ipv4_mapped(),
                };
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                ip.is_some_and(|ip| u32::from(net) & mask == u32::from(ip) & mask)
            }
            IpAddr::V6(net) => {
                let ip = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::ConfigError;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("edge.toml"))
    }

    #[test]
    fn networks_match_ipv4_clients_however_either_is_written() {
        // Found by fuzzing: a network written IPv4-mapped never matched.
        let v4: std::net::IpAddr = "10.1.0.1".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:10.1.0.1".parse().unwrap();
        let other: std::net::IpAddr = "10.1.0.2".parse().unwrap();
        for net in [
            "10.1.0.1",
            "10.1.0.0/24",
            "::ffff:10.1.0.1",
            "::ffff:10.1.0.0/120",
        ] {
            let net: IpNet = net.parse().unwrap();
            assert!(net.contains(v4), "{net:?}");
            assert!(net.contains(mapped), "{net:?}");
        }
        let exact: IpNet = "::ffff:10.1.0.1".parse().unwrap();
        assert!(!exact.contains(other));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(!v6.contains(v4));
        assert!(v6.contains("2001:db8::5".parse().unwrap()));
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.0.1".parse().unwrap()),
            "v4-mapped"
        );
        let one: IpNet = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        let c = parse("origins = [\"http://a\"]\n[purge]\nallow_from = [\"nope\"]\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "purge.allow_from");
        let c = parse("origins = [\"http://a\"]\n[purge]\ntoken = \"0123456789\"\n").unwrap();
        assert_eq!(format!("{:?}", c.purge.token), "Some(***)");
    }
}
