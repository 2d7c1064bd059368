//! `CacheKey`: the 32-byte name of a cached object.

use std::borrow::Cow;
use std::fmt;

use http::Method;

use crate::encoding::{Accepted, Encoding};

/// How the query string takes part in the key: parameters that never
/// change the response (tracking tags such as `utm_source`) can be
/// ignored, and the order of parameters can be made irrelevant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRules {
    /// Query parameter names left out of the key (exact, case-sensitive).
    pub ignore_query_params: Vec<String>,
    /// Sort query parameters so that `?a=1&b=2` and `?b=2&a=1` share a key.
    pub sort_query: bool,
    /// Leave the scheme out, so `http://` and `https://` share objects (for
    /// sites that serve the same bytes on both).
    pub ignore_scheme: bool,
}

impl KeyRules {
    /// The scheme as it enters the key.
    pub fn scheme<'a>(&self, scheme: &'a str) -> &'a str {
        if self.ignore_scheme { "http" } else { scheme }
    }

    /// `path?query` as it enters the key.
    pub fn normalize<'a>(&self, path_and_query: &'a str) -> Cow<'a, str> {
        let Some((path, query)) = path_and_query.split_once('?') else {
            return Cow::Borrowed(path_and_query);
        };
        if self.ignore_query_params.is_empty() && !self.sort_query {
            return Cow::Borrowed(path_and_query);
        }
        let mut params: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let name = p.split_once('=').map_or(*p, |(n, _)| n);
                !self.ignore_query_params.iter().any(|i| i == name)
            })
            .collect();
        if self.sort_query {
            params.sort_unstable();
        }
        if params.is_empty() {
            return Cow::Owned(path.to_owned());
        }
        Cow::Owned(format!("{path}?{}", params.join("&")))
    }
}

/// A blake3 digest over the parts of a request that select a response.
///
/// Each part is length-prefixed before hashing so that no two different
/// requests can produce the same byte stream (`host="a", path="b/c"` versus
/// `host="ab", path="/c"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

/// A map by cache key for the in-memory tables a request touches (fills
/// in flight, hit-for-pass marks, revalidations): foldhash, seeded per
/// process, where std's SipHash cost a pass request ~2k instructions. The
/// seed keeps clients from grinding URLs into one bucket.
pub type KeyMap<V> = std::collections::HashMap<CacheKey, V, foldhash::fast::RandomState>;

/// Bumped whenever the hashed layout changes, so old on-disk entries can
/// never be mistaken for new ones.
const KEY_VERSION: u8 = 1;

impl CacheKey {
    /// The key of a request, or `None` when its method is never served from
    /// cache. GET and HEAD share a key (RFC 9110 §9.3.2: HEAD is GET without
    /// the body); the host is compared case-insensitively (RFC 3986 §6.2.2.1).
    pub fn for_request(
        method: &Method,
        scheme: &str,
        host: &str,
        path_and_query: &str,
    ) -> Option<CacheKey> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        // The same bytes `update_field` would feed, gathered first: one
        // hash call costs less than nine small updates (a hit computes
        // this key on every request).
        let mut bytes =
            Vec::with_capacity(1 + 4 * 8 + 3 + scheme.len() + host.len() + path_and_query.len());
        bytes.push(KEY_VERSION);
        for field in [b"GET".as_slice(), scheme.as_bytes()] {
            bytes.extend_from_slice(&(field.len() as u64).to_le_bytes());
            bytes.extend_from_slice(field);
        }
        bytes.extend_from_slice(&(host.len() as u64).to_le_bytes());
        bytes.extend(host.bytes().map(|b| b.to_ascii_lowercase()));
        bytes.extend_from_slice(&(path_and_query.len() as u64).to_le_bytes());
        bytes.extend_from_slice(path_and_query.as_bytes());
        Some(CacheKey(*blake3::hash(&bytes).as_bytes()))
    }

    /// The key of one variant of a response that varies on `names`
    /// (RFC 9111 §4.1): the primary key hashed with the request's values of
    /// those fields, normalised (lines joined, whitespace around commas
    /// trimmed). A missing field and an empty one are different variants.
    pub fn variant(&self, names: &[http::HeaderName], request: &http::HeaderMap) -> CacheKey {
        let mut h = blake3::Hasher::new();
        h.update(&[KEY_VERSION]);
        update_field(&mut h, b"VARIANT");
        h.update(&self.0);
        for name in names {
            update_field(&mut h, name.as_str().as_bytes());
            if *name == http::header::ACCEPT_ENCODING {
                // The codings accepted, whatever the spelling (issue 20):
                // `gzip, br` and `br;q=0.9, GZIP` select one variant.
                update_field(&mut h, &Accepted::parse(request).variant_form());
                continue;
            }
            let mut values = request.get_all(name).iter().peekable();
            if values.peek().is_none() {
                h.update(&u64::MAX.to_le_bytes());
                continue;
            }
            if *name == http::header::ACCEPT_LANGUAGE {
                update_field(&mut h, &language_variant_form(values));
                continue;
            }
            let mut normalised = Vec::new();
            for value in values {
                for item in value.as_bytes().split(|b| *b == b',') {
                    if !normalised.is_empty() {
                        normalised.push(b',');
                    }
                    normalised.extend_from_slice(item.trim_ascii());
                }
            }
            update_field(&mut h, &normalised);
        }
        CacheKey(*h.finalize().as_bytes())
    }

    /// The key of the body of the object under this key, body `body_id`
    /// (its [`ObjectMeta::body_id`](crate::meta::ObjectMeta::body_id)),
    /// in `encoding`: an object made by the edge from that body. A new
    /// body (a new fill, a purge) has a new id, so an encoding can never
    /// outlive the body it was made from.
    pub fn encoded(&self, encoding: Encoding, body_id: u64) -> CacheKey {
        // Every hit in an encoding derives this key, so it is not hashed
        // again (blake3 was ~2k instructions of such a hit): the object
        // key, itself a blake3 output, has the id, a tag for the encoding
        // and a domain constant mixed into its first 16 bytes. Another
        // key equal to it would take an object key agreeing with this one
        // on the other 16 bytes (2^-128 for any pair), which nobody can
        // choose a URL to get.
        let tag = match encoding {
            Encoding::Brotli => 1u8,
            Encoding::Zstd => 2,
            Encoding::Gzip => 3,
            Encoding::Deflate => 4,
        };
        let mut bytes = self.0;
        for (b, m) in bytes[..8].iter_mut().zip(body_id.to_le_bytes()) {
            *b ^= m;
        }
        for (b, m) in bytes[8..16].iter_mut().zip(*b"ENCODED\0") {
            *b ^= m;
        }
        bytes[15] ^= tag;
        CacheKey(bytes)
    }

    /// The key of slice `index` (of `slice_size` bytes) of the object under
    /// this key. Slices hang off the primary key and vary like the object
    /// does, so a slice is looked up through the same Vary record logic.
    /// The slice size is part of the name: changing it in the config never
    /// pairs an object with slices cut differently.
    pub fn slice(&self, slice_size: u64, index: u64) -> CacheKey {
        let mut h = blake3::Hasher::new();
        h.update(&[KEY_VERSION]);
        update_field(&mut h, b"SLICE");
        h.update(&self.0);
        h.update(&slice_size.to_le_bytes());
        h.update(&index.to_le_bytes());
        CacheKey(*h.finalize().as_bytes())
    }

    /// The key of the variant index of the object under this (primary)
    /// key: the list of Vary variants stored for it, read by the cache
    /// inspector (see [`variants`](crate::variants)). Never a lookup's key.
    pub fn variant_index(&self) -> CacheKey {
        let mut h = blake3::Hasher::new();
        h.update(&[KEY_VERSION]);
        update_field(&mut h, b"VARIANTS");
        h.update(&self.0);
        CacheKey(*h.finalize().as_bytes())
    }

    /// A key from raw bytes, as read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> CacheKey {
        CacheKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, for logs and admin output.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

fn update_field(h: &mut blake3::Hasher, field: &[u8]) {
    h.update(&(field.len() as u64).to_le_bytes());
    h.update(field);
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..16])
    }
}

/// `Accept-Language` as it keys a variant (issue 25): language ranges
/// and their weights are case-insensitive (RFC 9110 §12.4.2, §12.5.4,
/// RFC 4647 §2.1) and whitespace around them is not significant, and
/// ranges of equal weight come in no meaningful order, so the members
/// (all lines together) are lower-cased, stripped of whitespace and
/// sorted: `en-US, fr;q=0.8` and `FR; q=0.8,en-us` are one variant.
fn language_variant_form<'a>(values: impl Iterator<Item = &'a http::HeaderValue>) -> Vec<u8> {
    let mut members: Vec<Vec<u8>> = values
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(|member| {
            member
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .map(u8::to_ascii_lowercase)
                .collect::<Vec<u8>>()
        })
        .filter(|member| !member.is_empty())
        .collect();
    members.sort_unstable();
    members.join(&b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_hashed_layout() {
        // Objects on disk were stored under keys hashed field by field;
        // the one-shot hash must give the same digest.
        let mut h = blake3::Hasher::new();
        h.update(&[KEY_VERSION]);
        update_field(&mut h, b"GET");
        update_field(&mut h, b"https");
        update_field(&mut h, b"example.com");
        update_field(&mut h, b"/a?b=1");
        let key = CacheKey::for_request(&Method::GET, "https", "Example.COM", "/a?b=1").unwrap();
        assert_eq!(key.0, *h.finalize().as_bytes());
    }

    fn key(host: &str, pq: &str) -> CacheKey {
        CacheKey::for_request(&Method::GET, "http", host, pq).unwrap()
    }

    #[test]
    fn parts_are_not_ambiguous() {
        assert_ne!(key("a", "b/c"), key("ab", "/c"));
        assert_ne!(key("example.com", "/a?b"), key("example.com", "/a%3Fb"));
        assert_ne!(
            CacheKey::for_request(&Method::GET, "https", "x", "/").unwrap(),
            key("x", "/")
        );
    }

    #[test]
    fn only_get_and_head_have_keys() {
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert!(CacheKey::for_request(&m, "http", "x", "/").is_none());
        }
    }

    #[test]
    fn encoded_keys_are_apart_per_encoding_and_body() {
        let a = key("x", "/a");
        let keys = [
            a,
            a.encoded(Encoding::Brotli, 1),
            a.encoded(Encoding::Gzip, 1),
            a.encoded(Encoding::Brotli, 2),
            key("x", "/b").encoded(Encoding::Brotli, 1),
        ];
        for (i, k) in keys.iter().enumerate() {
            for other in &keys[i + 1..] {
                assert_ne!(k, other);
            }
        }
        assert_eq!(a.encoded(Encoding::Zstd, 7), a.encoded(Encoding::Zstd, 7));
    }

    #[test]
    fn variants_follow_normalised_request_values() {
        use http::{HeaderMap, HeaderName, HeaderValue};
        let primary = key("x", "/");
        let names = [HeaderName::from_static("accept-encoding")];
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("accept-encoding", HeaderValue::from_static(v));
            primary.variant(&names, &h)
        };
        assert_eq!(with("gzip, br"), with("gzip,br"));
        assert_eq!(with("gzip, br"), with("br;q=0.9, GZIP"));
        assert_ne!(with("gzip"), with("br"));
        assert_ne!(with(""), primary.variant(&names, &HeaderMap::new()));
        assert_ne!(with("gzip"), primary);
        let mut two_lines = HeaderMap::new();
        two_lines.append("accept-encoding", HeaderValue::from_static("gzip"));
        two_lines.append("accept-encoding", HeaderValue::from_static("br"));
        assert_eq!(primary.variant(&names, &two_lines), with("gzip, br"));
    }

    #[test]
    fn accept_language_variants_ignore_order_case_and_spaces() {
        use http::{HeaderMap, HeaderName, HeaderValue};
        let primary = key("x", "/");
        let names = [HeaderName::from_static("accept-language")];
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("accept-language", HeaderValue::from_static(v));
            primary.variant(&names, &h)
        };
        let base = with("en-US, fr;q=0.8");
        assert_eq!(base, with("fr;q=0.8, en-US"));
        assert_eq!(base, with("EN-us,FR;Q=0.8"));
        assert_eq!(base, with("  en-us ,  fr ; q=0.8 "));
        let mut two_lines = HeaderMap::new();
        two_lines.append("accept-language", HeaderValue::from_static("fr;q=0.8"));
        two_lines.append("accept-language", HeaderValue::from_static("en-US"));
        assert_eq!(primary.variant(&names, &two_lines), base);
        assert_ne!(base, with("en-US, fr;q=0.5"));
        assert_ne!(base, with("de"));
        assert_ne!(with(""), primary.variant(&names, &HeaderMap::new()));
    }

    #[test]
    fn query_rules() {
        let none = KeyRules::default();
        assert_eq!(none.normalize("/a?b=1&a=2"), "/a?b=1&a=2");
        let rules = KeyRules {
            ignore_query_params: vec!["utm_source".into(), "fbclid".into()],
            sort_query: true,
            ..KeyRules::default()
        };
        assert_eq!(rules.normalize("/a?b=1&utm_source=x&a=2"), "/a?a=2&b=1");
        assert_eq!(rules.normalize("/a?utm_source=x&fbclid"), "/a");
        assert_eq!(rules.normalize("/a"), "/a");
        assert_eq!(rules.normalize("/a?b&&a"), "/a?a&b");
    }

    #[test]
    fn hex_round_trips() {
        let k = key("x", "/y");
        assert_eq!(k.to_hex().len(), 64);
        assert_eq!(CacheKey::from_bytes(*k.as_bytes()), k);
    }
}
