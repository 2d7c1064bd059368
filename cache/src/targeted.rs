//! The targeted cache-control fields, read strictly: `CDN-Cache-Control`
//! as the RFC 9651 Dictionary that RFC 9213 §2.1 makes it, and
//! `Surrogate-Control` (Edge Architecture 1.0) with its directives' own
//! syntax. A targeted field that does not parse, or whose known directive
//! has the wrong type (`max-age="10000"`, `max-age=1.5`), is ignored as a
//! whole (RFC 9213 §2.1): [`Cache-Control`](crate::CacheControl) applies,
//! never a half-read targeted field.
//!
//! ```
//! use cache::targeted;
//! use http::HeaderMap;
//!
//! let mut h = HeaderMap::new();
//! h.insert("cdn-cache-control", "max-age=600, public".parse().unwrap());
//! let cc = targeted::cdn_cache_control(&h).unwrap();
//! assert!(cc.has("public"));
//! h.insert("cdn-cache-control", "max-age=\"600\"".parse().unwrap());
//! assert!(targeted::cdn_cache_control(&h).is_none());
//! ```

use http::HeaderMap;
use sfv::{BareItem, Dictionary, ListEntry, Parser};

use crate::cache_control::CacheControl;

pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";
pub const SURROGATE_CONTROL: &str = "surrogate-control";

/// Directives whose argument is delta-seconds (RFC 9111 §5.2.2, RFC 5861):
/// an Integer ≥ 0 in a Structured Field, bare digits in Surrogate-Control.
const SECONDS: [&str; 4] = [
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
];

/// Directives that take no argument: Booleans in a Structured Field (`?0`
/// means absent).
const FLAGS: [&str; 7] = [
    "no-store",
    "public",
    "must-revalidate",
    "proxy-revalidate",
    "must-understand",
    "no-transform",
    "immutable",
];

/// Directives that are a flag or list field names (a String).
const FLAG_OR_FIELDS: [&str; 2] = ["no-cache", "private"];

/// `CDN-Cache-Control`'s directives, or `None` when the field is absent,
/// is not a Dictionary, or gives a known directive the wrong type. Lines
/// are combined as RFC 9651 §4.2 says (joined with commas).
pub fn cdn_cache_control(headers: &HeaderMap) -> Option<CacheControl> {
    let mut lines = headers.get_all(CDN_CACHE_CONTROL).iter().peekable();
    lines.peek()?;
    let mut joined = Vec::new();
    for line in lines {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    let dict: Dictionary = Parser::new(&joined).parse().ok()?;
    let mut directives = Vec::with_capacity(dict.len());
    for (key, entry) in &dict {
        let name = key.as_str();
        let item = match entry {
            ListEntry::Item(item) => Some(&item.bare_item),
            ListEntry::InnerList(_) => None,
        };
        let known =
            SECONDS.contains(&name) || FLAGS.contains(&name) || FLAG_OR_FIELDS.contains(&name);
        let value = match item {
            Some(BareItem::Integer(n)) if SECONDS.contains(&name) => {
                Some(u64::try_from(*n).ok()?.to_string())
            }
            Some(BareItem::Boolean(false)) if !SECONDS.contains(&name) => continue,
            Some(BareItem::Boolean(true)) if !SECONDS.contains(&name) => None,
            Some(BareItem::String(s)) if FLAG_OR_FIELDS.contains(&name) => {
                Some(s.as_str().to_owned())
            }
            _ if known => return None,
            // An extension directive: kept (and ignored by the policy)
            // whatever its type.
            Some(BareItem::Token(t)) => Some(t.as_str().to_owned()),
            Some(BareItem::String(s)) => Some(s.as_str().to_owned()),
            _ => None,
        };
        directives.push((name.to_owned(), value));
    }
    Some(CacheControl::from_directives(directives))
}

/// `Surrogate-Control`'s directives, or `None` when the field is absent or
/// malformed: an item that is not `token[=token|quoted-string]`, or a
/// delta-seconds directive whose argument is not bare digits.
pub fn surrogate_control(headers: &HeaderMap) -> Option<CacheControl> {
    let cc = CacheControl::from_headers(headers, SURROGATE_CONTROL)?;
    let well_formed = headers
        .get_all(SURROGATE_CONTROL)
        .iter()
        .all(|line| std::str::from_utf8(line.as_bytes()).is_ok_and(well_formed_line));
    well_formed.then_some(cc)
}

fn well_formed_line(text: &str) -> bool {
    crate::cache_control::split_list(text)
        .into_iter()
        .map(str::trim)
        // Empty list members are allowed (RFC 9110 §5.6.1).
        .filter(|item| !item.is_empty())
        .all(|item| {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (item, None),
            };
            if !is_token(name) {
                return false;
            }
            let seconds = SECONDS.iter().any(|s| name.eq_ignore_ascii_case(s));
            match value {
                None => !seconds,
                Some(v) if seconds => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
                Some(v) => is_token(v) || is_quoted_string(v),
            }
        })
}

/// RFC 9110 §5.6.2 `token`.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 9110 §5.6.4 `quoted-string`.
fn is_quoted_string(text: &str) -> bool {
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return false;
    };
    let mut escaped = false;
    for b in inner.bytes() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return false,
            _ => {}
        }
    }
    !escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_control::Seconds;

    fn cdn(lines: &[&'static str]) -> Option<CacheControl> {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(CDN_CACHE_CONTROL, line.parse().unwrap());
        }
        cdn_cache_control(&h)
    }

    fn surrogate(line: &'static str) -> Option<CacheControl> {
        let mut h = HeaderMap::new();
        h.insert(SURROGATE_CONTROL, line.parse().unwrap());
        surrogate_control(&h)
    }

    #[test]
    fn a_dictionary_with_typed_directives() {
        let cc = cdn(&[
            "max-age=600, no-cache=\"set-cookie\"",
            "public, x-ext=(1 2)",
        ])
        .unwrap();
        assert_eq!(cc.seconds("max-age"), Seconds::Valid(600));
        assert_eq!(cc.field_names("no-cache").unwrap(), ["set-cookie"]);
        assert!(cc.has("public") && cc.has("x-ext"));
        let cc = cdn(&["no-store=?0, private=?1"]).unwrap();
        assert!(!cc.has("no-store") && cc.has("private"));
        assert!(cdn(&[]).is_none());
        for bad in [
            "max-age=10000, &&&&&",
            "max-age=\"10000\"",
            "max-age=1.5",
            "max-age=-1",
            "max-age=?1",
            "Max-Age=10",
            "no-store=1",
            "public=\"yes\"",
            "no-cache=(a b)",
        ] {
            assert!(cdn(&[bad]).is_none(), "{bad}");
        }
    }

    #[test]
    fn surrogate_control_is_strict_too() {
        assert_eq!(
            surrogate("max-age=300, content=\"ESI/1.0\"")
                .unwrap()
                .seconds("max-age"),
            Seconds::Valid(300)
        );
        assert!(surrogate("no-store").unwrap().has("no-store"));
        for bad in [
            "max-age=\"300\"",
            "max-age=300, @@@ (not a token)",
            "max-age",
            "max-age=soon",
            "content=\"unterminated",
        ] {
            assert!(surrogate(bad).is_none(), "{bad}");
        }
    }
}
