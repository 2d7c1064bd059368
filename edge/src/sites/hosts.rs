//! The host table: a `Host` value → the index of the site that answers for
//! it. Exact names first, then the most specific wildcard (`*.shop.example`
//! matches `a.shop.example` and `b.a.shop.example`, never `shop.example`
//! itself, as nginx's `server_name`), then the default site.
//!
//! Paid by every request, so a lookup of an already lower-case host does not
//! allocate: the port and a trailing dot are cut off by slicing, and a host
//! with upper-case letters is lowered into a stack buffer.

use std::collections::HashMap;

/// Hosts longer than this are lowered on the heap (a DNS name is at most
/// 253 bytes, so only nonsense pays for it).
const STACK_HOST: usize = 256;

/// A configured host name: an exact name or a `*.` wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    Exact(String),
    /// The suffix after `*.`, lower-case (`shop.example` for `*.shop.example`).
    Wildcard(String),
}

impl HostPattern {
    /// Parses a configured name; `None` for a `*` anywhere but a leading
    /// `*.` label, or a name that is empty once normalised.
    pub(crate) fn parse(raw: &str) -> Option<HostPattern> {
        let lower = strip_host(raw.trim()).to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, lower),
        };
        if name.is_empty() || name.contains('*') || name.starts_with('.') {
            return None;
        }
        Some(if wildcard {
            HostPattern::Wildcard(name)
        } else {
            HostPattern::Exact(name)
        })
    }
}

/// Host → site index, compiled once.
#[derive(Debug, Default)]
pub(crate) struct HostTable {
    exact: HashMap<Box<str>, usize>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<Box<str>, usize>,
    /// The longest and shortest wildcard suffixes, so that a host with many
    /// labels is not looked up once per label.
    wildcard_len: (usize, usize),
    default: Option<usize>,
}

impl HostTable {
    pub(crate) fn new(default: Option<usize>) -> HostTable {
        HostTable {
            default,
            wildcard_len: (usize::MAX, 0),
            ..HostTable::default()
        }
    }

    /// Adds a pattern for `site`; the first site to name a host keeps it
    /// (validation reports duplicates before this runs).
    pub(crate) fn insert(&mut self, pattern: HostPattern, site: usize) {
        match pattern {
            HostPattern::Exact(name) => {
                self.exact.entry(name.into_boxed_str()).or_insert(site);
            }
            HostPattern::Wildcard(suffix) => {
                let (min, max) = self.wildcard_len;
                self.wildcard_len = (min.min(suffix.len()), max.max(suffix.len()));
                self.wildcard.entry(suffix.into_boxed_str()).or_insert(site);
            }
        }
    }

    /// The site index for a `Host` value (port stripped, case-insensitive,
    /// trailing dot ignored), else the default site.
    pub(crate) fn lookup(&self, host: &str) -> Option<usize> {
        let host = strip_host(host);
        if !host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.lookup_lower(host);
        }
        if host.len() <= STACK_HOST {
            let mut buf = [0u8; STACK_HOST];
            let lowered = &mut buf[..host.len()];
            lowered.copy_from_slice(host.as_bytes());
            lowered.make_ascii_lowercase();
            // Lowering ASCII bytes keeps UTF-8 valid; the fallback is moot.
            match std::str::from_utf8(lowered) {
                Ok(lower) => self.lookup_lower(lower),
                Err(_) => self.default,
            }
        } else {
            self.lookup_lower(&host.to_ascii_lowercase())
        }
    }

    fn lookup_lower(&self, host: &str) -> Option<usize> {
        if let Some(&site) = self.exact.get(host) {
            return Some(site);
        }
        if !self.wildcard.is_empty() {
            let (min, max) = self.wildcard_len;
            // Most specific first: the suffix after the first dot, then the
            // next, and never the whole name.
            for (dot, _) in host.match_indices('.') {
                let suffix = &host[dot + 1..];
                if suffix.len() > max {
                    continue;
                }
                if suffix.len() < min {
                    break;
                }
                if let Some(&site) = self.wildcard.get(suffix) {
                    return Some(site);
                }
            }
        }
        self.default
    }
}

/// `Host` without its port and trailing dot: `Shop.Example.:8080` →
/// `Shop.Example`, `[::1]:8080` → `[::1]`.
fn strip_host(host: &str) -> &str {
    let name = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.find(':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    name.strip_suffix('.').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(default: Option<usize>) -> HostTable {
        let mut t = HostTable::new(default);
        for (raw, site) in [
            ("shop.example", 1),
            ("*.shop.example", 2),
            ("*.eu.shop.example", 3),
            ("Blog.Example.", 4),
            ("[::1]", 5),
            ("api.example:8443", 6),
            ("*.example", 7),
        ] {
            t.insert(HostPattern::parse(raw).expect(raw), site);
        }
        t
    }

    #[test]
    fn lookups() {
        let with = table(Some(0));
        let without = table(None);
        // host, with a default site, without one
        let cases: &[(&str, Option<usize>, Option<usize>)] = &[
            ("shop.example", Some(1), Some(1)),
            ("a.shop.example", Some(2), Some(2)),
            ("b.a.shop.example", Some(2), Some(2)),
            ("fr.eu.shop.example", Some(3), Some(3)),
            ("x.fr.eu.shop.example", Some(3), Some(3)),
            // the wildcard's own name is not matched by it: `*.example` is
            ("eu.shop.example", Some(2), Some(2)),
            ("other.example", Some(7), Some(7)),
            ("example", Some(0), None),
            ("unknown.test", Some(0), None),
            ("", Some(0), None),
            ("shop.example:8080", Some(1), Some(1)),
            ("SHOP.Example", Some(1), Some(1)),
            ("A.Shop.Example:80", Some(2), Some(2)),
            ("shop.example.", Some(1), Some(1)),
            ("shop.example.:8080", Some(1), Some(1)),
            ("blog.example", Some(4), Some(4)),
            ("[::1]:8080", Some(5), Some(5)),
            ("[::1]", Some(5), Some(5)),
            ("api.example", Some(6), Some(6)),
            ("api.example:1", Some(6), Some(6)),
            ("shopxexample", Some(0), None),
            ("ashop.example", Some(7), Some(7)),
        ];
        for &(host, want_with, want_without) in cases {
            assert_eq!(with.lookup(host), want_with, "{host:?} with a default");
            assert_eq!(without.lookup(host), want_without, "{host:?} without");
        }
    }

    #[test]
    fn long_hosts_lower_on_the_heap() {
        let t = table(None);
        let long = format!("{}.Shop.Example", "A".repeat(300));
        assert_eq!(t.lookup(&long), Some(2));
        let deep = format!("{}shop.example", "a.".repeat(500));
        assert_eq!(t.lookup(&deep), Some(2));
    }

    #[test]
    fn only_a_leading_wildcard_label_parses() {
        let cases: &[(&str, Option<HostPattern>)] = &[
            (
                "Shop.Example",
                Some(HostPattern::Exact("shop.example".into())),
            ),
            (
                "*.Shop.Example.",
                Some(HostPattern::Wildcard("shop.example".into())),
            ),
            (
                " shop.example:80 ",
                Some(HostPattern::Exact("shop.example".into())),
            ),
            ("*", None),
            ("*.", None),
            ("a.*.example", None),
            ("*shop.example", None),
            ("*.*.example", None),
            ("", None),
            (".example", None),
        ];
        for (raw, want) in cases {
            assert_eq!(&HostPattern::parse(raw), want, "{raw:?}");
        }
    }
}
