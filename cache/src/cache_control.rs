//! Parsing `Cache-Control` (RFC 9111 §5.2); its CDN cousins, read more
//! strictly, are in `targeted.rs` and end up in the same [`CacheControl`].
//!
//! Directive names are case-insensitive; unknown directives are kept but
//! ignored by the policy; a malformed argument makes that directive invalid
//! (RFC 9111 §4.2.1: treat an invalid `max-age` as stale, never as fresh).

use http::HeaderMap;
use http::header::{AsHeaderName, HeaderName};

/// The directives of one or more `Cache-Control`-style field lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    directives: Vec<(String, Option<String>)>,
}

/// Value of a delta-seconds directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seconds {
    /// Absent.
    Absent,
    /// Present with a valid value (saturated at 2^31, §1.2.2).
    Valid(u64),
    /// Present but unparsable (or without a value).
    Invalid,
}

/// RFC 9111 §1.2.2: delta-seconds larger than 2^31 are treated as 2^31.
const MAX_DELTA_SECONDS: u64 = 1 << 31;

impl CacheControl {
    /// Parses every line of `name`; `None` when the field is absent.
    pub fn from_headers<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Option<CacheControl> {
        let mut lines = headers.get_all(name).iter().peekable();
        lines.peek()?;
        let mut cc = CacheControl::default();
        for line in lines {
            if let Ok(text) = std::str::from_utf8(line.as_bytes()) {
                cc.parse_into(text);
            }
        }
        Some(cc)
    }

    /// Directives already split and typed (`targeted.rs` reads
    /// `CDN-Cache-Control` as a Structured Field); names are lower-case.
    pub(crate) fn from_directives(directives: Vec<(String, Option<String>)>) -> CacheControl {
        CacheControl { directives }
    }

    /// Parses one field value.
    pub fn parse(text: &str) -> CacheControl {
        let mut cc = CacheControl::default();
        cc.parse_into(text);
        cc
    }

    fn parse_into(&mut self, text: &str) {
        for item in split_list(text) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (item.trim(), None),
            };
            if name.is_empty() {
                continue;
            }
            self.directives.push((name.to_ascii_lowercase(), value));
        }
    }

    /// Whether a directive is present (with or without an argument).
    pub fn has(&self, name: &str) -> bool {
        self.directives.iter().any(|(n, _)| n == name)
    }

    /// A delta-seconds directive. When a directive appears more than once
    /// with different values the field is ambiguous: the smallest wins, the
    /// safer reading for a shared cache (§4.2.1 allows treating it as stale).
    pub fn seconds(&self, name: &str) -> Seconds {
        let mut result = Seconds::Absent;
        for (n, v) in &self.directives {
            if n != name {
                continue;
            }
            let parsed = v
                .as_deref()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .map(|v| {
                    v.parse::<u64>()
                        .unwrap_or(MAX_DELTA_SECONDS)
                        .min(MAX_DELTA_SECONDS)
                });
            result = match (result, parsed) {
                (Seconds::Invalid, _) | (_, None) => Seconds::Invalid,
                (Seconds::Valid(a), Some(b)) => Seconds::Valid(a.min(b)),
                (Seconds::Absent, Some(b)) => Seconds::Valid(b),
            };
        }
        result
    }

    /// The field names listed in a qualified directive such as
    /// `no-cache="Set-Cookie"`. `Some(empty)` means the unqualified form.
    pub fn field_names(&self, name: &str) -> Option<Vec<HeaderName>> {
        let (_, value) = self.directives.iter().find(|(n, _)| n == name)?;
        Some(
            value
                .as_deref()
                .map(|v| {
                    v.split(',')
                        .filter_map(|f| HeaderName::from_bytes(f.trim().as_bytes()).ok())
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.directives.is_empty()
    }
}

/// Splits a comma-separated list, keeping commas inside quoted strings.
pub(crate) fn split_list(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directives_case_insensitively() {
        let cc = CacheControl::parse("Public, MAX-AGE=60, s-maxage=\"30\"");
        assert!(cc.has("public"));
        assert_eq!(cc.seconds("max-age"), Seconds::Valid(60));
        assert_eq!(cc.seconds("s-maxage"), Seconds::Valid(30));
        assert_eq!(cc.seconds("stale-if-error"), Seconds::Absent);
    }

    #[test]
    fn invalid_and_duplicate_seconds() {
        assert_eq!(
            CacheControl::parse("max-age=abc").seconds("max-age"),
            Seconds::Invalid
        );
        assert_eq!(
            CacheControl::parse("max-age").seconds("max-age"),
            Seconds::Invalid
        );
        assert_eq!(
            CacheControl::parse("max-age=-1").seconds("max-age"),
            Seconds::Invalid
        );
        assert_eq!(
            CacheControl::parse("max-age=60, max-age=10").seconds("max-age"),
            Seconds::Valid(10)
        );
        assert_eq!(
            CacheControl::parse("max-age=99999999999999999999").seconds("max-age"),
            Seconds::Valid(1 << 31)
        );
    }

    #[test]
    fn quoted_field_lists() {
        let cc = CacheControl::parse("no-cache=\"Set-Cookie, X-Foo\", private");
        let names = cc.field_names("no-cache").unwrap();
        assert_eq!(names, ["set-cookie", "x-foo"]);
        assert_eq!(cc.field_names("private").unwrap(), Vec::<HeaderName>::new());
        assert!(cc.field_names("no-store").is_none());
    }

    #[test]
    fn reads_all_lines() {
        let mut h = HeaderMap::new();
        h.append("cache-control", "max-age=5".parse().unwrap());
        h.append("cache-control", "no-transform, public".parse().unwrap());
        let cc = CacheControl::from_headers(&h, "cache-control").unwrap();
        assert!(cc.has("public") && cc.has("no-transform"));
        assert!(CacheControl::from_headers(&h, "cdn-cache-control").is_none());
    }
}
