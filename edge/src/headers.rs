//! Header rules of an intermediary (RFC 9110 §7.6): hop-by-hop fields,
//! `Via`, and the `X-Forwarded-*` family.

use std::net::IpAddr;

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Fields that describe one connection and must not be forwarded
/// (RFC 9110 §7.6.1, plus the legacy `Proxy-Connection` and the proxy auth
/// pair that only make sense between neighbours).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop fields, including every field named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the fields is cheaper than a
    // lookup for each of the eight names (this runs on every exchange).
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// [`strip_hop_by_hop`] for a `101 Switching Protocols`, whose `Upgrade`
/// and `Connection: upgrade` are the switch and go on to the client (the
/// other fields `Connection` names still go).
pub fn strip_hop_by_hop_but_upgrade(headers: &mut HeaderMap) {
    let upgrade: Vec<HeaderValue> = headers.get_all(header::UPGRADE).iter().cloned().collect();
    strip_hop_by_hop(headers);
    if upgrade.is_empty() {
        return;
    }
    for value in upgrade {
        headers.append(header::UPGRADE, value);
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// Whether `TE` lists `trailers` (RFC 9110 §10.1.4): the client reads
/// trailer fields, which gRPC's status travels in.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            item.split(';')
                .next()
                .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// A message's version as `Via` names it (RFC 9110 §7.6.3), which is also
/// OpenTelemetry's `network.protocol.version`.
pub fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// This node's `Via` entry, made once: every response carries it, and a
/// hit's response usually has no `Via` of its own to append to.
#[derive(Debug, Clone)]
pub struct Via {
    node_name: String,
    /// `1.1 <node>`, the entry for HTTP/1.1 messages.
    one_one: Option<HeaderValue>,
}

impl Via {
    pub fn new(node_name: &str) -> Self {
        Via {
            node_name: node_name.to_owned(),
            one_one: HeaderValue::from_str(&format!("1.1 {node_name}")).ok(),
        }
    }

    /// Appends `<version> <node>` to `Via`, keeping what earlier hops wrote.
    pub fn append(&self, headers: &mut HeaderMap, received: Version) {
        match &self.one_one {
            Some(entry) if received == Version::HTTP_11 && !headers.contains_key(header::VIA) => {
                headers.insert(header::VIA, entry.clone());
            }
            _ => append_via(headers, received, &self.node_name),
        }
    }
}

/// Appends `<version> <node>` to `Via`, keeping what earlier hops wrote.
pub fn append_via(headers: &mut HeaderMap, received: Version, node_name: &str) {
    let protocol = protocol_version(received);
    let mut entry = String::with_capacity(protocol.len() + 1 + node_name.len());
    entry.push_str(protocol);
    entry.push(' ');
    entry.push_str(node_name);
    append_list(headers, header::VIA, &entry);
}

/// Fields some origin frameworks read in place of the request line or
/// `Host` (Symfony, IIS rewrite, Werkzeug). They are not in the cache key,
/// so a client could make the origin answer for another URL or host and
/// have that cached for everyone: the edge drops them or sets them itself.
const URL_OVERRIDES: [&str; 3] = ["x-original-url", "x-rewrite-url", "x-forwarded-server"];

/// Records the client's address in `X-Forwarded-For` and in `Forwarded`
/// (RFC 7239, with the scheme), each appended to any list the client or a
/// previous proxy sent; our scheme in `X-Forwarded-Proto` and the host the
/// client asked for in `X-Forwarded-Host` (both replacing the client's
/// claims, which the cache key does not cover); and drops the URL override
/// fields.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    scheme: &'static str,
    host: Option<&HeaderValue>,
) {
    for name in URL_OVERRIDES {
        headers.remove(name);
    }
    match host {
        Some(host) => {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
    use std::fmt::Write as _;
    let mut address = String::with_capacity(48);
    let _ = write!(address, "{client}");
    append_list(
        headers,
        HeaderName::from_static("x-forwarded-for"),
        &address,
    );
    // RFC 7239 §6: an IPv6 address is bracketed and quoted.
    let mut element = String::with_capacity(address.len() + 24);
    match client {
        IpAddr::V4(_) => {
            element.push_str("for=");
            element.push_str(&address);
        }
        IpAddr::V6(_) => {
            element.push_str("for=\"[");
            element.push_str(&address);
            element.push_str("]\"");
        }
    }
    element.push_str(";proto=");
    element.push_str(scheme);
    append_list(headers, header::FORWARDED, &element);
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(scheme),
    );
}

/// Appends `item` to a comma-separated list field, folding existing lines
/// into one so that every hop sees a single field.
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &str) {
    if !headers.contains_key(&name) {
        if let Ok(v) = HeaderValue::from_str(item) {
            headers.insert(name, v);
        }
        return;
    }
    let mut joined = String::new();
    for v in headers.get_all(&name) {
        if let Ok(v) = v.to_str() {
            joined.push_str(v);
            joined.push_str(", ");
        }
    }
    joined.push_str(item);
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_connection_named_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn a_switch_keeps_its_upgrade_fields_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, X-Secret"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("sec-websocket-accept", HeaderValue::from_static("abc"));
        strip_hop_by_hop_but_upgrade(&mut h);
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert!(h.contains_key("sec-websocket-accept"));
    }

    #[test]
    fn te_trailers_is_read_from_the_list() {
        let te = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::TE, HeaderValue::from_static(v));
            accepts_trailers(&h)
        };
        assert!(te("trailers"));
        assert!(te("gzip;q=0.5, Trailers"));
        assert!(!te("gzip"));
        assert!(!te("trailersx"));
        assert!(!accepts_trailers(&HeaderMap::new()));
    }

    #[test]
    fn via_and_forwarded_append() {
        let mut h = HeaderMap::new();
        h.append(header::VIA, HeaderValue::from_static("1.0 fred"));
        h.append(header::VIA, HeaderValue::from_static("1.1 p.example.net"));
        append_via(&mut h, Version::HTTP_2, "edge-1");
        assert_eq!(h[header::VIA], "1.0 fred, 1.1 p.example.net, 2 edge-1");
        let via = Via::new("edge-2");
        via.append(&mut h, Version::HTTP_11);
        assert_eq!(
            h[header::VIA],
            "1.0 fred, 1.1 p.example.net, 2 edge-1, 1.1 edge-2"
        );
        let mut fresh = HeaderMap::new();
        via.append(&mut fresh, Version::HTTP_11);
        via.append(&mut fresh, Version::HTTP_10);
        assert_eq!(fresh[header::VIA], "1.1 edge-2, 1.0 edge-2");

        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("x-original-url", HeaderValue::from_static("/admin"));
        let site = HeaderValue::from_static("www.example.com");
        set_forwarded(&mut h, "127.0.0.1".parse().unwrap(), "http", Some(&site));
        assert_eq!(h["x-forwarded-host"], "www.example.com");
        assert!(!h.contains_key("x-original-url"));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h[header::FORWARDED], "for=127.0.0.1;proto=http");
        set_forwarded(&mut h, "::1".parse().unwrap(), "https", None);
        assert_eq!(
            h[header::FORWARDED],
            "for=127.0.0.1;proto=http, for=\"[::1]\";proto=https"
        );
    }
}
