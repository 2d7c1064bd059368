//! `ObjectMeta`: everything about a stored response except its body bytes,
//! and its versioned binary encoding.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::policy::{FreshnessSource, StoredPolicy};

/// Where a stored body lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyLayout {
    /// Small bodies sit in the meta entry itself: one lookup serves them.
    Inline(Bytes),
    /// Larger bodies are chunks stored under keys derived from the object
    /// key and `object_id`, so a replacement never mixes two versions.
    Chunked {
        object_id: u64,
        len: u64,
        chunk_size: u32,
    },
    /// A large object kept as independent slices of `slice_size` bytes
    /// (`CacheKey::slice`), each fetched from the origin with a Range
    /// request when first needed and stored as its own 206 object. The
    /// meta holds the whole representation's head; any slice may be
    /// missing.
    Sliced { len: u64, slice_size: u64 },
}

impl BodyLayout {
    pub fn len(&self) -> u64 {
        match self {
            BodyLayout::Inline(b) => b.len() as u64,
            BodyLayout::Chunked { len, .. } | BodyLayout::Sliced { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of chunks of a chunked body.
    pub fn chunk_count(&self) -> u64 {
        match self {
            BodyLayout::Inline(_) | BodyLayout::Sliced { .. } => 0,
            BodyLayout::Chunked {
                len, chunk_size, ..
            } => len.div_ceil(u64::from((*chunk_size).max(1))),
        }
    }
}

/// A stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMeta {
    pub status: StatusCode,
    /// End-to-end headers as received (hop-by-hop fields already removed).
    pub headers: HeaderMap,
    /// When the request that produced this response was sent.
    pub request_time: SystemTime,
    /// When its response head arrived (or when a 304 last refreshed it).
    pub response_time: SystemTime,
    pub policy: StoredPolicy,
    pub body: BodyLayout,
    /// Request header names the response varies on (lower case).
    pub vary: Vec<HeaderName>,
    /// Purge tags from `Surrogate-Key` / `Cache-Tag`.
    pub tags: Vec<String>,
    /// Names this version of the body: new for every fill, kept when a
    /// revalidation refreshes the head. Encodings made from the body are
    /// stored under it (`CacheKey::encoded`). 0: stored by a binary that
    /// did not record it (no encoding is stored for such an object).
    pub body_id: u64,
}

/// Version of the encoding below; bumped on any change that old readers
/// would misread. (Layout tag 2, `Sliced`, was added within version 1:
/// older binaries reject it as an invalid layout, never misread it.)
pub const META_VERSION: u8 = 1;

/// Why stored bytes could not be read back as an [`ObjectMeta`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("stored object ends early")]
    Truncated,
    #[error("unknown stored object version {0}")]
    Version(u8),
    #[error("stored object holds an invalid {0}")]
    Invalid(&'static str),
}

impl ObjectMeta {
    /// A 200 with `headers` and an inline `body`, received now and fresh
    /// for `lifetime`; no Vary, no tags.
    pub fn fresh(headers: HeaderMap, body: Bytes, lifetime: Duration) -> Self {
        // Tools, tests and benchmarks only (the request path builds metas
        // from exchanges timed on the injected clock): the system clock.
        let now = SystemTime::now();
        ObjectMeta {
            status: StatusCode::OK,
            headers,
            request_time: now,
            response_time: now,
            policy: StoredPolicy::fresh_for(lifetime),
            body: BodyLayout::Inline(body),
            vary: Vec::new(),
            tags: Vec::new(),
            body_id: 0,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(META_VERSION);
        put_u16(out, self.status.as_u16());
        put_u64(out, millis(self.request_time));
        put_u64(out, millis(self.response_time));
        encode_policy(&self.policy, out);
        match &self.body {
            BodyLayout::Inline(bytes) => {
                out.push(0);
                put_bytes(out, bytes);
            }
            BodyLayout::Chunked {
                object_id,
                len,
                chunk_size,
            } => {
                out.push(1);
                put_u64(out, *object_id);
                put_u64(out, *len);
                put_u32(out, *chunk_size);
            }
            BodyLayout::Sliced { len, slice_size } => {
                out.push(2);
                put_u64(out, *len);
                put_u64(out, *slice_size);
            }
        }
        put_u32(out, self.headers.len() as u32);
        for (name, value) in &self.headers {
            put_bytes(out, name.as_str().as_bytes());
            put_bytes(out, value.as_bytes());
        }
        put_u32(out, self.vary.len() as u32);
        for name in &self.vary {
            put_bytes(out, name.as_str().as_bytes());
        }
        put_u32(out, self.tags.len() as u32);
        for tag in &self.tags {
            put_bytes(out, tag.as_bytes());
        }
        // Added within version 1, last: older binaries stop reading
        // before it, and a meta they wrote decodes with body_id 0.
        put_u64(out, self.body_id);
    }

    pub fn decode(mut input: &[u8]) -> Result<ObjectMeta, DecodeError> {
        let r = &mut input;
        let version = get_u8(r)?;
        if version != META_VERSION {
            return Err(DecodeError::Version(version));
        }
        let status =
            StatusCode::from_u16(get_u16(r)?).map_err(|_| DecodeError::Invalid("status"))?;
        let request_time = from_millis(get_u64(r)?);
        let response_time = from_millis(get_u64(r)?);
        let policy = decode_policy(r)?;
        let body = match get_u8(r)? {
            0 => BodyLayout::Inline(Bytes::copy_from_slice(get_bytes(r)?)),
            1 => BodyLayout::Chunked {
                object_id: get_u64(r)?,
                len: get_u64(r)?,
                chunk_size: get_u32(r)?,
            },
            2 => {
                let len = get_u64(r)?;
                let slice_size = get_u64(r)?;
                if slice_size == 0 {
                    return Err(DecodeError::Invalid("slice size"));
                }
                BodyLayout::Sliced { len, slice_size }
            }
            _ => return Err(DecodeError::Invalid("body layout")),
        };
        let mut headers = HeaderMap::new();
        for _ in 0..get_u32(r)? {
            let name = HeaderName::from_bytes(get_bytes(r)?)
                .map_err(|_| DecodeError::Invalid("header name"))?;
            let value = HeaderValue::from_bytes(get_bytes(r)?)
                .map_err(|_| DecodeError::Invalid("header value"))?;
            // More distinct names than a HeaderMap holds (24 576) only
            // come from damaged bytes; `append` would panic on them.
            headers
                .try_append(name, value)
                .map_err(|_| DecodeError::Invalid("header count"))?;
        }
        let mut vary = Vec::new();
        for _ in 0..get_u32(r)? {
            vary.push(
                HeaderName::from_bytes(get_bytes(r)?)
                    .map_err(|_| DecodeError::Invalid("vary name"))?,
            );
        }
        let mut tags = Vec::new();
        for _ in 0..get_u32(r)? {
            tags.push(
                String::from_utf8(get_bytes(r)?.to_vec())
                    .map_err(|_| DecodeError::Invalid("tag"))?,
            );
        }
        let body_id = if r.is_empty() { 0 } else { get_u64(r)? };
        Ok(ObjectMeta {
            status,
            headers,
            request_time,
            response_time,
            policy,
            body,
            vary,
            tags,
            body_id,
        })
    }

    /// Rough bytes this meta occupies in memory, for the memory tier's
    /// budget: the struct, the header map's buckets and values, the inline
    /// body, and foyer's record around it.
    pub fn memory_size(&self) -> usize {
        const BASE: usize = 384;
        const PER_HEADER: usize = 80;
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| PER_HEADER + n.as_str().len() + v.len())
            .sum();
        let inline = match &self.body {
            BodyLayout::Inline(b) => b.len(),
            BodyLayout::Chunked { .. } | BodyLayout::Sliced { .. } => 0,
        };
        BASE + headers
            + inline
            + self.vary.len() * 48
            + self.tags.iter().map(|t| t.len() + 32).sum::<usize>()
    }

    /// Rough encoded size.
    pub fn estimated_size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 8)
            .sum();
        let inline = match &self.body {
            BodyLayout::Inline(b) => b.len(),
            BodyLayout::Chunked { .. } | BodyLayout::Sliced { .. } => 20,
        };
        96 + headers
            + inline
            + self.vary.len() * 24
            + self.tags.iter().map(|t| t.len() + 4).sum::<usize>()
    }
}

/// A copy of `headers` that owns its values. Header values parsed by hyper
/// are slices of the connection's read buffer; storing them as they are
/// would pin whole buffers in the memory tier for as long as the object
/// lives there.
pub fn owned_headers(headers: &HeaderMap) -> HeaderMap {
    let mut owned = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let Ok(copy) = HeaderValue::from_bytes(value.as_bytes()) {
            owned.append(name.clone(), copy);
        }
    }
    owned
}

const NONE_SECS: u64 = u64::MAX;

fn encode_policy(p: &StoredPolicy, out: &mut Vec<u8>) {
    put_u64(out, p.lifetime.as_millis() as u64);
    out.push(match p.source {
        FreshnessSource::SMaxAge => 0,
        FreshnessSource::MaxAge => 1,
        FreshnessSource::Expires => 2,
        FreshnessSource::Heuristic => 3,
        FreshnessSource::DefaultTtl => 4,
        // Added within version 1: older binaries reject it as an invalid
        // source (a miss), never misread it.
        FreshnessSource::Rule => 5,
    });
    put_u64(out, p.corrected_initial_age.as_millis() as u64);
    out.push(u8::from(p.no_cache) | (u8::from(p.must_revalidate) << 1));
    let window = |d: Option<Duration>| d.map_or(NONE_SECS, |d| d.as_secs());
    put_u64(out, window(p.stale_while_revalidate));
    put_u64(out, window(p.stale_if_error));
}

fn decode_policy(r: &mut &[u8]) -> Result<StoredPolicy, DecodeError> {
    let lifetime = Duration::from_millis(get_u64(r)?);
    let source = match get_u8(r)? {
        0 => FreshnessSource::SMaxAge,
        1 => FreshnessSource::MaxAge,
        2 => FreshnessSource::Expires,
        3 => FreshnessSource::Heuristic,
        4 => FreshnessSource::DefaultTtl,
        5 => FreshnessSource::Rule,
        _ => return Err(DecodeError::Invalid("freshness source")),
    };
    let corrected_initial_age = Duration::from_millis(get_u64(r)?);
    let flags = get_u8(r)?;
    let window = |s: u64| (s != NONE_SECS).then(|| Duration::from_secs(s));
    Ok(StoredPolicy {
        lifetime,
        source,
        corrected_initial_age,
        no_cache: flags & 1 != 0,
        must_revalidate: flags & 2 != 0,
        stale_while_revalidate: window(get_u64(r)?),
        stale_if_error: window(get_u64(r)?),
    })
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if r.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Ok(head)
}
fn get_u8(r: &mut &[u8]) -> Result<u8, DecodeError> {
    Ok(take(r, 1)?[0])
}
fn get_u16(r: &mut &[u8]) -> Result<u16, DecodeError> {
    let b = take(r, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}
fn get_u32(r: &mut &[u8]) -> Result<u32, DecodeError> {
    let b = take(r, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
fn get_u64(r: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut a = [0u8; 8];
    a.copy_from_slice(take(r, 8)?);
    Ok(u64::from_le_bytes(a))
}
fn get_bytes<'a>(r: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let n = get_u32(r)? as usize;
    take(r, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: BodyLayout) -> ObjectMeta {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        ObjectMeta {
            status: StatusCode::OK,
            headers,
            request_time: from_millis(1_700_000_000_123),
            response_time: from_millis(1_700_000_000_456),
            policy: StoredPolicy {
                lifetime: Duration::from_secs(60),
                source: FreshnessSource::MaxAge,
                corrected_initial_age: Duration::from_millis(1500),
                no_cache: false,
                must_revalidate: true,
                stale_while_revalidate: Some(Duration::from_secs(30)),
                stale_if_error: None,
            },
            body,
            vary: vec![HeaderName::from_static("accept-encoding")],
            tags: vec!["product-7".into()],
            body_id: 7,
        }
    }

    #[test]
    fn every_freshness_source_round_trips() {
        use FreshnessSource::*;
        for source in [SMaxAge, MaxAge, Expires, Heuristic, DefaultTtl, Rule] {
            let mut meta = sample(BodyLayout::Inline(Bytes::from_static(b"x")));
            meta.policy.source = source;
            let mut bytes = Vec::new();
            meta.encode(&mut bytes);
            let back = ObjectMeta::decode(&bytes).expect("decodes");
            assert_eq!(back.policy.source, source);
        }
    }

    #[test]
    fn more_header_names_than_a_header_map_holds_are_an_error_not_a_panic() {
        // Found by fuzzing: HeaderMap::append panics past 24 576 names.
        let mut meta = sample(BodyLayout::Inline(Bytes::from_static(b"x")));
        meta.headers.clear();
        meta.vary.clear();
        meta.tags.clear();
        let mut bytes = Vec::new();
        meta.encode(&mut bytes);
        // The encoding ends with three empty lists (headers, vary, tags)
        // and the body id.
        bytes.truncate(bytes.len() - 20);
        let names = 24_577u32;
        put_u32(&mut bytes, names);
        for i in 0..names {
            put_bytes(&mut bytes, format!("h{i}").as_bytes());
            put_bytes(&mut bytes, b"");
        }
        put_u32(&mut bytes, 0);
        put_u32(&mut bytes, 0);
        assert!(matches!(
            ObjectMeta::decode(&bytes),
            Err(DecodeError::Invalid("header count"))
        ));
    }

    #[test]
    fn round_trips_every_layout() {
        for body in [
            BodyLayout::Inline(Bytes::from_static(b"hello")),
            BodyLayout::Chunked {
                object_id: 42,
                len: 3 << 20,
                chunk_size: 1 << 20,
            },
            BodyLayout::Sliced {
                len: 10 << 30,
                slice_size: 4 << 20,
            },
        ] {
            let meta = sample(body);
            let mut buf = Vec::new();
            meta.encode(&mut buf);
            assert_eq!(ObjectMeta::decode(&buf).unwrap(), meta);
        }
    }

    #[test]
    fn a_meta_written_before_body_ids_decodes_with_none() {
        let meta = sample(BodyLayout::Inline(Bytes::from_static(b"x")));
        let mut buf = Vec::new();
        meta.encode(&mut buf);
        buf.truncate(buf.len() - 8);
        let back = ObjectMeta::decode(&buf).unwrap();
        assert_eq!(back.body_id, 0);
        assert_eq!(ObjectMeta { body_id: 7, ..back }, meta);
    }

    #[test]
    fn refuses_other_versions_and_truncation() {
        let mut buf = Vec::new();
        sample(BodyLayout::Inline(Bytes::new())).encode(&mut buf);
        for cut in [0, 1, 10, buf.len() - 1] {
            assert_eq!(
                ObjectMeta::decode(&buf[..cut]),
                Err(DecodeError::Truncated),
                "cut {cut}"
            );
        }
        buf[0] = 0;
        assert_eq!(ObjectMeta::decode(&buf), Err(DecodeError::Version(0)));
    }

    #[test]
    fn chunk_counts() {
        let layout = |len| BodyLayout::Chunked {
            object_id: 1,
            len,
            chunk_size: 10,
        };
        assert_eq!(layout(0).chunk_count(), 0);
        assert_eq!(layout(10).chunk_count(), 1);
        assert_eq!(layout(11).chunk_count(), 2);
    }
}
