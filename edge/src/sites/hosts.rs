//! The host table: a `Host` value → the index of the site that answers for
//! it. Exact names first, then the most specific wildcard (`*.shop.example`
//! matches `a.shop.example` and `b.a.shop.example`, never `shop.example`
//! itself, as nginx's `server_name`), then the default site.
//!
//! Paid by every request, so a lookup of an already lower-case host does not
//! allocate: the port and a trailing dot are cut off by slicing, and a host
//! with upper-case letters is lowered into a stack buffer.

use super::hash::FastMap;
use crate::config::HostPattern;

/// Hosts longer than this are lowered on the heap (a DNS name is at most
/// 253 bytes, so only nonsense pays for it).
const STACK_HOST: usize = 256;

/// Host → site index, compiled once.
#[derive(Debug, Default)]
pub(crate) struct HostTable {
    exact: FastMap<Box<str>, usize>,
    /// Keyed by the suffix after `*.`.
    wildcard: FastMap<Box<str>, usize>,
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
        let (host, upper) = strip_host(host);
        if !upper {
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
            let len = host.len();
            // The suffix after a dot at `i` is `len - i - 1` long: only dots
            // between these positions can start a configured suffix. Most
            // specific first (leftmost dot), and never the whole name.
            let first = len.saturating_sub(max + 1);
            let last = len.saturating_sub(min + 1);
            let bytes = host.as_bytes();
            for (i, &b) in bytes.iter().enumerate().take(last + 1).skip(first) {
                if b == b'.'
                    && let Some(suffix) = host.get(i + 1..)
                    && let Some(&site) = self.wildcard.get(suffix)
                {
                    return Some(site);
                }
            }
        }
        self.default
    }
}

/// `Host` without its port and trailing dot (`Shop.Example.:8080` →
/// `Shop.Example`, `[::1]:8080` → `[::1]`), and whether it has upper-case
/// letters. One pass, eight bytes at a time: this and the hash are most of
/// a lookup.
fn strip_host(host: &str) -> (&str, bool) {
    let bytes = host.as_bytes();
    let (end, upper) = if bytes.first() == Some(&b'[') {
        let end = bytes
            .iter()
            .position(|&b| b == b']')
            .map_or(bytes.len(), |close| close + 1);
        (end, bytes[..end].iter().any(u8::is_ascii_uppercase))
    } else {
        colon_and_upper(bytes)
    };
    // `end` is at an ASCII byte or the end: always a char boundary.
    let name = host.get(..end).unwrap_or(host);
    (name.strip_suffix('.').unwrap_or(name), upper)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = ONES * 0x80;
const LOW7: u64 = ONES * 0x7f;

/// The position of the first `:` (or the length) and whether an ASCII
/// upper-case letter comes before it.
fn colon_and_upper(bytes: &[u8]) -> (usize, bool) {
    let mut upper = false;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let colon = equal_bytes(w, b':');
        if colon != 0 {
            let before = colon.trailing_zeros() as usize / 8;
            let mask = (1u64 << (before * 8)).wrapping_sub(1);
            return (at + before, upper || upper_bytes(w) & mask != 0);
        }
        upper |= upper_bytes(w) != 0;
        at += 8;
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return (at, upper);
    }
    // The last eight bytes, overlapping what was scanned (no `:` there, and
    // seeing a letter twice changes nothing).
    if let Some(last) = bytes
        .len()
        .checked_sub(8)
        .and_then(|from| bytes.get(from..))
    {
        let mut word = [0u8; 8];
        word.copy_from_slice(last);
        let w = u64::from_le_bytes(word);
        let colon = equal_bytes(w, b':');
        if colon != 0 {
            let before = colon.trailing_zeros() as usize / 8;
            let mask = (1u64 << (before * 8)).wrapping_sub(1);
            return (
                bytes.len() - 8 + before,
                upper || upper_bytes(w) & mask != 0,
            );
        }
        return (bytes.len(), upper || upper_bytes(w) != 0);
    }
    for &b in rest {
        if b == b':' {
            return (at, upper);
        }
        upper |= b.is_ascii_uppercase();
        at += 1;
    }
    (at, upper)
}

/// The high bit of each byte of `w` that equals `byte`, and no other.
fn equal_bytes(w: u64, byte: u8) -> u64 {
    let t = w ^ (ONES * u64::from(byte));
    !(((t & LOW7) + LOW7) | t | LOW7)
}

/// The high bit of each byte of `w` in `A..=Z`, and no other (the sums
/// stay within each byte: non-ASCII bytes are cleared first, masked after).
fn upper_bytes(w: u64) -> u64 {
    let x = w & LOW7;
    let at_least_a = x + ONES * u64::from(0x80 - b'A');
    let past_z = x + ONES * u64::from(0x80 - b'Z' - 1);
    at_least_a & !past_z & !w & HIGH
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
            ("Blog.Example", 4),
            ("[::1]", 5),
            ("api.example", 6),
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
            (".shop.example", Some(2), Some(2)),
            ("é.shop.example", Some(2), Some(2)),
            ("É.SHOP.example", Some(2), Some(2)),
            (".", Some(0), None),
            (":8080", Some(0), None),
            ("[", Some(0), None),
            ("[::1", Some(0), None),
            ("x", Some(0), None),
        ];
        for &(host, want_with, want_without) in cases {
            assert_eq!(with.lookup(host), want_with, "{host:?} with a default");
            assert_eq!(without.lookup(host), want_without, "{host:?} without");
        }
    }

    #[test]
    fn the_word_scan_agrees_with_a_byte_scan() {
        let samples = [
            "",
            "a",
            "A",
            ":",
            "a:B",
            "shop.example",
            "Shop.example",
            "shop.examplE",
            "shop.example:80",
            "shop.exampl:80",
            "shop.exa:Z",
            "abcdefgH",
            "abcdefg:H",
            "ABCDEFGH:",
            "@[`{",
            "é.SHOP:1",
            "ÀÉ",
            "x\u{7f}Z",
            "12345678901234567:Q",
        ];
        for s in samples {
            let b = s.as_bytes();
            let end = b.iter().position(|&c| c == b':').unwrap_or(b.len());
            let upper = b[..end].iter().any(u8::is_ascii_uppercase);
            assert_eq!(colon_and_upper(b), (end, upper), "{s:?}");
        }
        for byte in 0..=255u8 {
            let w = u64::from_le_bytes([byte, b'a', 0xff, byte, 0, b'Z', 0x80, byte]);
            let want = |i: usize, c: u8| {
                if c.is_ascii_uppercase() {
                    0x80u64 << (i * 8)
                } else {
                    0
                }
            };
            let expect: u64 = w
                .to_le_bytes()
                .iter()
                .enumerate()
                .map(|(i, &c)| want(i, c))
                .sum();
            assert_eq!(upper_bytes(w), expect, "{byte:#x}");
            let colons: u64 = w
                .to_le_bytes()
                .iter()
                .enumerate()
                .map(|(i, &c)| if c == b':' { 0x80u64 << (i * 8) } else { 0 })
                .sum();
            assert_eq!(equal_bytes(w, b':'), colons, "{byte:#x}");
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
}
