//! `origins` and `shields`: a peer written as a URL or as a table with its
//! weight, name and TLS settings.

use origin_shield::{Peer, Role, Scheme, Transport};
use serde::{Deserialize, Deserializer};

/// A shield peer and the name it goes by (to recognise this node).
#[derive(Debug, Clone, PartialEq)]
pub struct ShieldPeer {
    pub peer: Peer,
    pub name: Option<String>,
}

/// A peer in the config: a URL, or a table with a weight, a name and how
/// to connect.
enum PeerEntry {
    Url(String),
    Table(PeerTable),
}

/// By hand rather than `untagged`, so that a bad key in a table is named
/// instead of "did not match any variant".
impl<'de> Deserialize<'de> for PeerEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PeerEntry;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL or a table with `url`")
            }

            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<PeerEntry, E> {
                Ok(PeerEntry::Url(url.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<PeerEntry, A::Error> {
                PeerTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(PeerEntry::Table)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerTable {
    url: String,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    name: Option<String>,
    /// HTTP/2: ALPN over TLS, prior knowledge in cleartext.
    #[serde(default)]
    http2: bool,
    /// `false` accepts any certificate (self-signed labs only).
    #[serde(default = "yes")]
    tls_verify: bool,
    /// SNI and certificate name, when not the URL's host.
    #[serde(default)]
    tls_name: Option<String>,
}

fn yes() -> bool {
    true
}

impl PeerEntry {
    fn parse<E: serde::de::Error>(self, role: Role) -> Result<(Peer, Option<String>), E> {
        let table = match self {
            PeerEntry::Url(url) => PeerTable {
                url,
                weight: None,
                name: None,
                http2: false,
                tls_verify: true,
                tls_name: None,
            },
            PeerEntry::Table(table) => table,
        };
        let url = table.url;
        if table.weight.is_some_and(|w| w == 0 || w > 100) {
            return Err(E::custom(format!("{url}: weight must be 1 to 100")));
        }
        let peer = url
            .parse::<Peer>()
            .map_err(E::custom)?
            .with_weight(table.weight.unwrap_or(1))
            .with_role(role);
        if table.name.is_some() && role == Role::Origin {
            return Err(E::custom(format!(
                "{url}: `name` is for shields (to recognise this node); origins have none"
            )));
        }
        let tls_settings = !table.tls_verify || table.tls_name.is_some();
        if tls_settings && peer.scheme() != Scheme::Https {
            return Err(E::custom(format!(
                "{url}: tls_verify and tls_name apply to https:// peers only"
            )));
        }
        if let Some(name) = &table.tls_name
            && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            return Err(E::custom(format!(
                "{url}: tls_name {name:?} is not a DNS name or IP address"
            )));
        }
        let peer = peer.with_transport(Transport {
            http2: table.http2,
            insecure_skip_verify: !table.tls_verify,
            tls_name: table.tls_name.map(Into::into),
        });
        Ok((peer, table.name))
    }
}

pub(super) fn de_peers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Peer>, D::Error> {
    Vec::<PeerEntry>::deserialize(d)?
        .into_iter()
        .map(|e| e.parse(Role::Origin).map(|(peer, _)| peer))
        .collect()
}

pub(super) fn de_shields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ShieldPeer>, D::Error> {
    Vec::<PeerEntry>::deserialize(d)?
        .into_iter()
        .map(|e| {
            e.parse(Role::Shield)
                .map(|(peer, name)| ShieldPeer { peer, name })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use origin_shield::balance::Policy;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("edge.toml"))
    }

    #[test]
    fn peers_take_weights_names_and_a_policy() {
        let c = parse(
            r#"
origins = ["http://10.0.0.1:8000", { url = "http://10.0.0.2", weight = 3 }]
shields = [{ url = "http://10.1.0.1:8080", name = "shield-a" }, "http://10.1.0.2:8080"]
[upstream]
balance = "weighted"
max_fails = 5
[upstream.health]
path = "/healthz"
"#,
        )
        .unwrap();
        assert_eq!(c.origins[1].weight(), 3);
        assert_eq!(c.shields[0].name.as_deref(), Some("shield-a"));
        assert_eq!(c.shields[1].peer.role(), Role::Shield);
        assert_eq!(c.upstream.balance, Policy::Weighted);
        assert_eq!(c.upstream.health.path.as_deref(), Some("/healthz"));
        let err = parse("origins = [\"http://a\"]\n[upstream]\nbalance = \"random\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":3:") && err.contains("least_conn"), "{err}");
        let err = parse("origins = [{ url = \"http://a\", weight = 0 }]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("weight"), "{err}");
    }

    #[test]
    fn peer_tables_take_tls_settings_and_name_bad_keys() {
        let c = parse(
            "origins = [{ url = \"https://10.0.0.1\", tls_name = \"o.example\", http2 = true }]\n",
        )
        .unwrap();
        let peer = &c.origins[0];
        assert_eq!(peer.tls_name(), "o.example");
        assert!(peer.transport().http2 && !peer.transport().insecure_skip_verify);
        for (bad, says) in [
            (
                "{ url = \"http://a\", tls_verify = false }",
                "https:// peers only",
            ),
            (
                "{ url = \"https://a\", tls_name = \"not a name\" }",
                "not a DNS name",
            ),
            ("{ url = \"http://a\", name = \"x\" }", "for shields"),
            ("{ url = \"http://a\", wieght = 2 }", "wieght"),
        ] {
            let err = parse(&format!("origins = [{bad}]\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says) && err.contains("edge.toml:1"), "{err}");
        }
    }
}
