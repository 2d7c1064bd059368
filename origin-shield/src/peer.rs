//! A peer: somewhere a miss can be fetched from.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Uri};

use crate::error::{Error, Result};

/// How a peer is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// What a peer is to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The operator's own server: the source of truth.
    Origin,
    /// Another edge node that fetches from origin on this node's behalf.
    Shield,
}

/// How the connection to a peer is made, beyond its scheme.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Transport {
    /// Speak HTTP/2: offered in ALPN over TLS (HTTP/1.1 if the peer
    /// declines), by prior knowledge in cleartext.
    pub http2: bool,
    /// Accept any certificate. Only for labs with self-signed certificates:
    /// it gives up knowing who the peer is.
    pub insecure_skip_verify: bool,
    /// The name sent in SNI and checked against the certificate, when it is
    /// not the host in the URL (nginx's `proxy_ssl_name`).
    pub tls_name: Option<Arc<str>>,
}

/// One upstream server, named by `scheme://host[:port]`.
///
/// The authority always carries an explicit port so that connection pools and
/// logs see one spelling per peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    scheme: Scheme,
    authority: Authority,
    weight: u32,
    role: Role,
    transport: Transport,
}

impl Peer {
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `host:port`, as dialled and as logged.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The name TLS verifies: `tls_name` if set, else the host (for a peer
    /// resolved from a name, the name it was resolved from).
    pub fn tls_name(&self) -> &str {
        match &self.transport.tls_name {
            Some(name) => name,
            None => self.host(),
        }
    }

    /// The host without IPv6 brackets.
    fn host(&self) -> &str {
        let host = self.authority.host();
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// Returns this peer with other connection settings.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Returns this peer with a different weight (at least 1).
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }

    /// Returns this peer with a different role.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// Whether the host is a name to resolve rather than an IP address.
    pub fn host_is_name(&self) -> bool {
        self.host().parse::<std::net::IpAddr>().is_err()
    }

    /// This peer at one of its resolved addresses (same scheme, port,
    /// weight, role and transport). TLS keeps verifying the name.
    pub fn at_address(&self, addr: std::net::SocketAddr) -> Option<Peer> {
        let authority: Authority = addr.to_string().parse().ok()?;
        let mut transport = self.transport.clone();
        if transport.tls_name.is_none() && self.host_is_name() {
            transport.tls_name = Some(self.host().into());
        }
        Some(Peer {
            authority,
            transport,
            ..self.clone()
        })
    }

    /// The absolute URI of `path_and_query` on this peer.
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Uri {
        let pq = path_and_query
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Uri::builder()
            .scheme(self.scheme.as_str())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            // Scheme, authority and path each parsed on their own already.
            .unwrap_or_else(|_| Uri::from_static("/"))
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority)
    }
}

impl FromStr for Peer {
    type Err = Error;

    /// Parses `http://host[:port]` (a trailing `/` is allowed; any other path,
    /// a query or user info is refused rather than silently ignored).
    fn from_str(url: &str) -> Result<Self> {
        let unsupported = |reason| Error::Unsupported {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|source| Error::InvalidUri {
            url: url.to_owned(),
            source,
        })?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(_) => return Err(unsupported("scheme must be http or https")),
            None => return Err(unsupported("missing scheme, expected http://host:port")),
        };
        let authority = uri.authority().ok_or_else(|| unsupported("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(unsupported("user info is not allowed"));
        }
        if authority.host().is_empty() {
            return Err(unsupported("missing host"));
        }
        if let Some(pq) = uri.path_and_query()
            && (pq.path() != "/" || pq.query().is_some())
        {
            return Err(unsupported("a path or query is not allowed"));
        }
        // `http` accepts any text after the colon; a port that is not a
        // number in range must be refused, not replaced by the default.
        let host = authority.host();
        let after_host = authority.as_str().get(host.len()..).unwrap_or("");
        let port = match after_host.strip_prefix(':') {
            Some(text) => text
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| unsupported("the port must be a number from 1 to 65535"))?,
            None => scheme.default_port(),
        };
        let authority: Authority =
            format!("{}:{port}", authority.host())
                .parse()
                .map_err(|source| Error::InvalidUri {
                    url: url.to_owned(),
                    source,
                })?;
        Ok(Peer {
            scheme,
            authority,
            weight: 1,
            role: Role::Origin,
            transport: Transport::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_into_peers_at_addresses() {
        let named: Peer = "http://origin.example:8080".parse().unwrap();
        assert!(named.host_is_name());
        let ip: Peer = "http://[::1]:8080".parse().unwrap();
        assert!(!ip.host_is_name());
        let at = named
            .clone()
            .with_weight(3)
            .at_address("10.0.0.7:8080".parse().unwrap())
            .unwrap();
        assert_eq!(at.to_string(), "http://10.0.0.7:8080");
        assert_eq!(at.weight(), 3);
        assert_eq!(at.tls_name(), "origin.example", "TLS still checks the name");
        let v6 = named
            .at_address("[2001:db8::1]:8080".parse().unwrap())
            .unwrap();
        assert_eq!(v6.authority().as_str(), "[2001:db8::1]:8080");
    }

    #[test]
    fn parses_with_and_without_port() {
        let p: Peer = "http://127.0.0.1:8000".parse().unwrap();
        assert_eq!(p.authority().as_str(), "127.0.0.1:8000");
        assert_eq!(p.scheme(), Scheme::Http);
        let p: Peer = "http://origin.example/".parse().unwrap();
        assert_eq!(p.authority().as_str(), "origin.example:80");
        let p: Peer = "https://[::1]".parse().unwrap();
        assert_eq!(p.authority().as_str(), "[::1]:443");
        assert_eq!(p.to_string(), "https://[::1]:443");
    }

    #[test]
    fn refuses_what_it_would_ignore() {
        for bad in [
            "127.0.0.1:8000",
            "ftp://x",
            "http://x/path",
            "http://x/?q",
            "http://u@x",
            "not a url",
            "http://o:99999",
            "http://o:8o80",
            "http://o:0",
        ] {
            assert!(bad.parse::<Peer>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn builds_upstream_uris() {
        let p: Peer = "http://127.0.0.1:8000".parse().unwrap();
        let pq = PathAndQuery::from_static("/a/b?c=d");
        assert_eq!(
            p.uri_for(Some(&pq)).to_string(),
            "http://127.0.0.1:8000/a/b?c=d"
        );
        assert_eq!(p.uri_for(None).to_string(), "http://127.0.0.1:8000/");
    }
}
