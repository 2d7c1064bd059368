//! The host names of a `[[sites]]` entry: what may be written in `hosts`,
//! and how one name covers another (nginx's `server_name` semantics).
//!
//! `shop.example` is an exact name; `*.shop.example` is a wildcard for any
//! name under `shop.example`, at any depth, but not `shop.example` itself.
//! Names are compared case-insensitively and without a port: a port in
//! `hosts` is refused rather than ignored, so that nobody believes a site
//! is chosen by port.

use std::fmt;
use std::net::Ipv6Addr;

/// One entry of a site's `hosts`, lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `shop.example` (or an IP address; IPv6 in brackets, `[::1]`).
    Exact(String),
    /// `*.shop.example`, held as its suffix `shop.example`.
    Wildcard(String),
}

impl HostPattern {
    /// Parses an entry of `hosts`; the error says what is wrong with it.
    pub fn parse(name: &str) -> Result<HostPattern, String> {
        let lower = name.to_ascii_lowercase();
        if let Some(inner) = lower.strip_prefix('[') {
            return match inner.split_once(']') {
                Some((addr, "")) if addr.parse::<Ipv6Addr>().is_ok() => {
                    Ok(HostPattern::Exact(lower))
                }
                Some((_, rest)) if rest.starts_with(':') => Err(port_error(name)),
                _ => Err(format!("{name:?} is not a valid IPv6 address in brackets")),
            };
        }
        if lower.contains(':') {
            return Err(port_error(name));
        }
        let (pattern, suffix) = match lower.strip_prefix("*.") {
            Some(suffix) => (HostPattern::Wildcard(suffix.to_owned()), suffix),
            None => (HostPattern::Exact(lower.clone()), lower.as_str()),
        };
        if suffix.contains('*') || lower == "*" {
            return Err(format!(
                "{name:?}: a wildcard is `*.` at the start of a name only (`*.example.com`); \
                 the top-level `origins` serve every other host"
            ));
        }
        valid_dns_name(suffix)
            .map_err(|why| format!("{name:?} is not a valid host name: {why}"))?;
        Ok(pattern)
    }

    /// Whether a request for `host` (lowercase, without port) is for this
    /// name.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Wildcard(suffix) => under(host, suffix),
        }
    }

    /// Whether every name of `other` is also a name of `self`, and so two
    /// sites with these names would both claim a host.
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => a == b || under(b, a),
            (HostPattern::Wildcard(a), HostPattern::Exact(b)) => under(b, a),
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(_), HostPattern::Wildcard(_)) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// `name` is a strict subdomain of `suffix`.
fn under(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix)
        .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
}

fn port_error(name: &str) -> String {
    format!(
        "{name:?}: write host names without a port (a request's port is ignored when its site is chosen)"
    )
}

/// Letters, digits, `-` and `_` in labels of 1 to 63 characters, 253 in all
/// (RFC 1123, with the underscore that internal names use).
fn valid_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    if name.ends_with('.') {
        return Err("write it without the trailing dot");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, `-`, `_` and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with `-`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> HostPattern {
        HostPattern::parse(name).unwrap()
    }

    #[test]
    fn parses_exact_names_and_leading_wildcards() {
        assert_eq!(p("Shop.Example"), HostPattern::Exact("shop.example".into()));
        assert_eq!(
            p("*.shop.example"),
            HostPattern::Wildcard("shop.example".into())
        );
        assert_eq!(p("*.example"), HostPattern::Wildcard("example".into()));
        assert_eq!(p("localhost"), HostPattern::Exact("localhost".into()));
        assert_eq!(p("10.0.0.1"), HostPattern::Exact("10.0.0.1".into()));
        assert_eq!(p("[::1]"), HostPattern::Exact("[::1]".into()));
        assert_eq!(
            p("_acme.internal"),
            HostPattern::Exact("_acme.internal".into())
        );
        assert_eq!(p("*.Shop.example").to_string(), "*.shop.example");
    }

    #[test]
    fn refuses_what_is_not_a_host_name() {
        for (name, why) in [
            ("", "empty"),
            ("shop.example:8080", "without a port"),
            ("[::1]:443", "without a port"),
            ("[::g]", "IPv6"),
            ("*", "`*.` at the start"),
            ("*.", "empty"),
            ("a.*.example", "`*.` at the start"),
            ("*shop.example", "`*.` at the start"),
            ("*.*.example", "`*.` at the start"),
            ("shop.example.", "trailing dot"),
            ("shop..example", "empty label"),
            ("shop example", "only letters"),
            ("shop/example", "only letters"),
            ("-shop.example", "starts or ends"),
            ("héllo.example", "only letters"),
        ] {
            let err = HostPattern::parse(name).unwrap_err();
            assert!(err.contains(why), "{name:?}: {err}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(HostPattern::parse(&long).unwrap_err().contains("63"));
        let longer = vec!["abcdefghi"; 26].join(".");
        assert!(HostPattern::parse(&longer).unwrap_err().contains("253"));
    }

    #[test]
    fn a_wildcard_is_any_depth_below_its_name_but_not_the_name() {
        let w = p("*.example");
        assert!(w.matches("a.example"));
        assert!(w.matches("a.b.example"));
        assert!(!w.matches("example"));
        assert!(!w.matches("aexample"));
        assert!(!w.matches(".example"));
        assert!(p("a.example").matches("a.example"));
        assert!(!p("a.example").matches("b.a.example"));
    }

    #[test]
    fn coverage_between_names() {
        let w = p("*.example");
        assert!(w.covers(&p("a.example")));
        assert!(w.covers(&p("*.a.example")));
        assert!(w.covers(&p("*.example")));
        assert!(!w.covers(&p("example")));
        assert!(!w.covers(&p("*.other")));
        assert!(!w.covers(&p("*.xexample")));
        assert!(!p("*.a.example").covers(&w));
        assert!(!p("a.example").covers(&p("*.a.example")));
        assert!(p("a.example").covers(&p("A.example")));
        assert!(!p("a.example").covers(&p("b.example")));
    }
}
