//! The variant index: which Vary variants of one URL have been stored, for
//! the cache inspector (`GET /cache/inspect`). A variant's key is a hash of
//! the request's values of the Vary'd fields, so the Vary record alone
//! cannot list them; the fill that stores a variant also records it here,
//! under [`CacheKey::variant_index`] of the primary key.
//!
//! The index is advisory: lookups never read it, an entry may name a
//! variant evicted since (the inspector checks each one), and it keeps
//! only the [`MAX_VARIANTS`] most recently stored. Values of credential
//! fields (`Cookie`, `Authorization`) are never written to it: the
//! inspector shows them as redacted, and the variant is found by its key.

use http::{HeaderMap, HeaderName};

use crate::CacheKey;

/// Variants remembered per URL (the most recently stored first).
pub const MAX_VARIANTS: usize = 64;

/// Shown instead of the value of a credential field.
pub const REDACTED: &str = "[redacted]";

/// Version of the encoding below.
const VERSION: u8 = 1;

/// One stored variant: its key and the request values that selected it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub key: CacheKey,
    /// Each Vary'd field and the request's value (lines joined with `, `);
    /// `None` when the request did not send it.
    pub selector: Vec<(HeaderName, Option<String>)>,
}

/// Fields whose values are credentials: never stored in the index.
fn is_credential(name: &HeaderName) -> bool {
    name == http::header::COOKIE
        || name == http::header::AUTHORIZATION
        || name == http::header::PROXY_AUTHORIZATION
}

/// The selector of a request for a response that varies on `names`.
pub fn selector(names: &[HeaderName], request: &HeaderMap) -> Vec<(HeaderName, Option<String>)> {
    names
        .iter()
        .map(|name| {
            let mut values = request.get_all(name).iter().peekable();
            if values.peek().is_none() {
                return (name.clone(), None);
            }
            if is_credential(name) {
                return (name.clone(), Some(REDACTED.to_owned()));
            }
            let joined: Vec<String> = values
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (name.clone(), Some(joined.join(", ")))
        })
        .collect()
}

/// `list` with `variant` first (replacing an entry of the same key),
/// keeping at most [`MAX_VARIANTS`].
pub fn merged(list: &[Variant], variant: Variant) -> Vec<Variant> {
    let mut out = Vec::with_capacity((list.len() + 1).min(MAX_VARIANTS));
    let key = variant.key;
    out.push(variant);
    out.extend(
        list.iter()
            .filter(|v| v.key != key)
            .take(MAX_VARIANTS - 1)
            .cloned(),
    );
    out
}

/// The stored form: a version byte, then each variant's key and fields.
pub(crate) fn encode(list: &[Variant], out: &mut Vec<u8>) {
    out.push(VERSION);
    put_u32(out, list.len() as u32);
    for variant in list {
        out.extend_from_slice(variant.key.as_bytes());
        put_u32(out, variant.selector.len() as u32);
        for (name, value) in &variant.selector {
            put_bytes(out, name.as_str().as_bytes());
            match value {
                None => out.push(0),
                Some(value) => {
                    out.push(1);
                    put_bytes(out, value.as_bytes());
                }
            }
        }
    }
}

/// Reads back what [`encode`] wrote; `None` for damaged or unknown bytes.
pub(crate) fn decode(mut input: &[u8]) -> Option<Vec<Variant>> {
    let r = &mut input;
    if take(r, 1)?[0] != VERSION {
        return None;
    }
    let count = get_u32(r)?;
    let mut list = Vec::new();
    for _ in 0..count.min(MAX_VARIANTS as u32) {
        let mut key = [0u8; 32];
        key.copy_from_slice(take(r, 32)?);
        let fields = get_u32(r)?;
        let mut selector = Vec::new();
        for _ in 0..fields.min(64) {
            let name = HeaderName::from_bytes(get_bytes(r)?).ok()?;
            let value = match take(r, 1)?[0] {
                0 => None,
                _ => Some(String::from_utf8(get_bytes(r)?.to_vec()).ok()?),
            };
            selector.push((name, value));
        }
        list.push(Variant {
            key: CacheKey::from_bytes(key),
            selector,
        });
    }
    Some(list)
}

/// Rough bytes in memory.
pub(crate) fn memory_size(list: &[Variant]) -> usize {
    list.iter()
        .map(|v| {
            64 + v
                .selector
                .iter()
                .map(|(n, v)| 48 + n.as_str().len() + v.as_ref().map_or(0, String::len))
                .sum::<usize>()
        })
        .sum()
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Some(head)
}

fn get_u32(r: &mut &[u8]) -> Option<u32> {
    let b = take(r, 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn get_bytes<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = get_u32(r)? as usize;
    take(r, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Method};

    fn key(path: &str) -> CacheKey {
        CacheKey::for_request(&Method::GET, "http", "x", path).unwrap()
    }

    #[test]
    fn selectors_name_values_and_hide_credentials() {
        let names = [
            HeaderName::from_static("accept-language"),
            HeaderName::from_static("cookie"),
            HeaderName::from_static("x-missing"),
        ];
        let mut req = HeaderMap::new();
        req.append("accept-language", HeaderValue::from_static("fr"));
        req.append("accept-language", HeaderValue::from_static("en;q=0.5"));
        req.insert("cookie", HeaderValue::from_static("session=secret"));
        let sel = selector(&names, &req);
        assert_eq!(sel[0].1.as_deref(), Some("fr, en;q=0.5"));
        assert_eq!(sel[1].1.as_deref(), Some(REDACTED));
        assert_eq!(sel[2].1, None);
        let mut bytes = Vec::new();
        encode(
            &[Variant {
                key: key("/"),
                selector: sel,
            }],
            &mut bytes,
        );
        assert!(!bytes.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn merging_puts_the_newest_first_once_and_bounds_the_list() {
        let v = |p: &str| Variant {
            key: key(p),
            selector: vec![],
        };
        let list = merged(&merged(&[], v("/a")), v("/b"));
        assert_eq!(list, vec![v("/b"), v("/a")]);
        let list = merged(&list, v("/a"));
        assert_eq!(list, vec![v("/a"), v("/b")]);
        let mut many = Vec::new();
        for i in 0..(MAX_VARIANTS + 10) {
            many = merged(&many, v(&format!("/{i}")));
        }
        assert_eq!(many.len(), MAX_VARIANTS);
        assert_eq!(many[0], v(&format!("/{}", MAX_VARIANTS + 9)));
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let list = vec![Variant {
            key: key("/"),
            selector: vec![
                (
                    HeaderName::from_static("accept-language"),
                    Some("fr".into()),
                ),
                (HeaderName::from_static("x-a"), None),
            ],
        }];
        let mut bytes = Vec::new();
        encode(&list, &mut bytes);
        assert_eq!(decode(&bytes), Some(list));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        bytes[0] = 9;
        assert_eq!(decode(&bytes), None);
    }
}
