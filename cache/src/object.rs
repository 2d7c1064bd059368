//! Objects as the request pipeline sees them: looking one up through its
//! Vary record, and writing one chunk by chunk as its body streams in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName};

use crate::CacheKey;
use crate::meta::{BodyLayout, ObjectMeta};
use crate::store::{Entry, Store, StoreError, Tier};

/// A stored response found for a request.
#[derive(Debug, Clone)]
pub struct Found {
    pub meta: Arc<ObjectMeta>,
    pub tier: Tier,
    /// The key the object itself is stored under (the variant key when the
    /// response varies).
    pub object_key: CacheKey,
}

/// Finds the stored response for `primary` that matches the request's
/// headers (RFC 9111 §4.1), following a Vary record if there is one.
pub async fn lookup(
    store: &Store,
    primary: &CacheKey,
    request: &HeaderMap,
) -> Result<Option<Found>, StoreError> {
    let Some((entry, tier)) = store.get(primary).await? else {
        return Ok(None);
    };
    match entry {
        Entry::Object(meta) => Ok(Some(Found {
            meta,
            tier,
            object_key: *primary,
        })),
        Entry::Vary(names) => {
            let object_key = primary.variant(&names, request);
            Ok(match store.get(&object_key).await? {
                Some((Entry::Object(meta), tier)) => Some(Found {
                    meta,
                    tier,
                    object_key,
                }),
                _ => None,
            })
        }
    }
}

/// The request header names a response varies on, lower-cased, or `None`
/// for `Vary: *`.
pub fn vary_names(response: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for value in response.get_all(http::header::VARY) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let item = item.trim();
            if item == "*" {
                return None;
            }
            if let Ok(name) = HeaderName::from_bytes(item.to_ascii_lowercase().as_bytes())
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    Some(names)
}

/// Unique per process run and per write: chunks of two versions of one
/// object can never be confused.
fn new_object_id(key: &CacheKey) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(key.as_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    // Uniqueness, not cache semantics: the system clock.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.update(&nanos.to_le_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(id)
}

/// Writes one response into the store as its body arrives. Nothing is
/// visible to readers until [`finish`](ObjectWriter::finish) stores the
/// meta entry; dropping the writer earlier (the origin failed, the object
/// grew too large) leaves no object behind, only unreachable chunks that
/// age out.
#[derive(Debug)]
pub struct ObjectWriter {
    store: Store,
    primary: CacheKey,
    object_key: CacheKey,
    meta: ObjectMeta,
    object_id: u64,
    buf: BytesMut,
    chunks: u64,
    len: u64,
    max_size: u64,
    abandoned: bool,
    /// The tiers its chunks and meta go to, decided when the fill starts.
    placement: crate::store::Placement,
    /// The request values of the Vary'd fields, for the variant index
    /// (empty when the response does not vary).
    selector: Vec<(HeaderName, Option<String>)>,
}

impl ObjectWriter {
    /// Prepares to store `meta` (whose `body` is replaced at the end) as
    /// the response to a request with headers `request` under `primary`.
    pub fn new(
        store: Store,
        primary: CacheKey,
        request: &HeaderMap,
        meta: ObjectMeta,
        max_size: u64,
    ) -> Self {
        let object_key = if meta.vary.is_empty() {
            primary
        } else {
            primary.variant(&meta.vary, request)
        };
        let selector = crate::variants::selector(&meta.vary, request);
        let object_id = new_object_id(&object_key);
        let placement = store.placement(&object_key);
        let meta = ObjectMeta {
            body_id: object_id,
            ..meta
        };
        ObjectWriter {
            object_id,
            store,
            primary,
            object_key,
            meta,
            buf: BytesMut::new(),
            chunks: 0,
            len: 0,
            max_size,
            abandoned: false,
            placement,
            selector,
        }
    }

    /// Appends body bytes; full chunks go to the store at once.
    pub fn write(&mut self, data: &[u8]) {
        if self.abandoned {
            return;
        }
        self.len += data.len() as u64;
        if self.len > self.max_size {
            self.abandoned = true;
            self.buf = BytesMut::new();
            return;
        }
        let chunk_size = self.store.chunk_size();
        let mut data = data;
        while !data.is_empty() {
            let room = chunk_size - self.buf.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = rest;
            if self.buf.len() == chunk_size {
                // A copy of exactly the chunk's size: a chunk frozen out of
                // the growing buffer would pin its whole (larger) allocation
                // in the memory tier. The buffer is reused for the next.
                let chunk = Bytes::copy_from_slice(&self.buf);
                self.buf.clear();
                self.put_chunk(chunk);
            }
        }
    }

    fn put_chunk(&mut self, chunk: Bytes) {
        self.store.put_chunk(
            &self.object_key,
            self.object_id,
            self.chunks,
            chunk,
            self.placement,
        );
        self.chunks += 1;
    }

    /// The key the object is stored under (the variant key if it varies).
    pub fn object_key(&self) -> CacheKey {
        self.object_key
    }

    /// The id its chunks are stored under.
    pub fn object_id(&self) -> u64 {
        self.object_id
    }

    /// The response being stored (its body layout is set at the end).
    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// Whether the object is still going to be stored.
    pub fn is_abandoned(&self) -> bool {
        self.abandoned
    }

    /// The whole body has arrived: stores the meta (and the Vary record),
    /// making the object visible. Returns whether it was stored.
    pub fn finish(mut self) -> bool {
        if self.abandoned {
            return false;
        }
        let chunk_size = self.store.chunk_size();
        self.meta.body = if self.chunks == 0 && self.buf.len() <= self.store.inline_max() {
            BodyLayout::Inline(Bytes::copy_from_slice(&self.buf))
        } else {
            if !self.buf.is_empty() {
                let rest = Bytes::copy_from_slice(&self.buf);
                self.put_chunk(rest);
            }
            BodyLayout::Chunked {
                object_id: self.object_id,
                len: self.len,
                chunk_size: u32::try_from(chunk_size).unwrap_or(u32::MAX),
            }
        };
        self.publish();
        true
    }

    /// Stores the meta as the head of an object kept in slices
    /// ([`BodyLayout::Sliced`]); the writer takes no body.
    pub fn finish_sliced(mut self, len: u64, slice_size: u64) {
        self.meta.body = BodyLayout::Sliced { len, slice_size };
        self.publish();
    }

    /// Stores the meta, which makes the object visible, then its entry in
    /// the variant index: after the meta, so the index never names a
    /// variant before it can be found.
    fn publish(mut self) {
        let variant = self.variant();
        put(
            &self.store,
            &self.primary,
            &self.object_key,
            self.meta,
            self.placement,
        );
        if let Some(variant) = variant {
            self.store.record_variant(&self.primary, variant);
        }
    }

    /// The entry of the variant index for this object, if it varies.
    fn variant(&mut self) -> Option<crate::variants::Variant> {
        (self.object_key != self.primary).then(|| crate::variants::Variant {
            key: self.object_key,
            selector: std::mem::take(&mut self.selector),
        })
    }
}

/// Makes an object visible under `primary` (through a Vary record when it
/// varies).
fn put(
    store: &Store,
    primary: &CacheKey,
    object_key: &CacheKey,
    meta: ObjectMeta,
    placement: crate::store::Placement,
) {
    if meta.vary.is_empty() {
        store.put_object_placed(primary, meta, placement);
    } else {
        // Variant first, then the record that points at it.
        let vary = meta.vary.clone();
        store.put_object_placed(object_key, meta, placement);
        store.put_vary(primary, vary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use http::{HeaderValue, Method};
    use std::time::Duration;

    fn meta(vary: Vec<HeaderName>) -> ObjectMeta {
        ObjectMeta {
            vary,
            ..ObjectMeta::fresh(HeaderMap::new(), Bytes::new(), Duration::from_secs(60))
        }
    }

    async fn store(dir: &std::path::Path) -> Store {
        let mut cfg = StoreConfig::new(dir.to_owned(), 32 << 20, 64 << 20);
        cfg.chunk_size = 4;
        cfg.inline_max = 4;
        Store::open(&cfg, None).await.unwrap()
    }

    fn key() -> CacheKey {
        CacheKey::for_request(&Method::GET, "http", "x", "/").unwrap()
    }

    #[tokio::test]
    async fn chunked_object_is_invisible_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let req = HeaderMap::new();
        let mut w = ObjectWriter::new(store.clone(), key(), &req, meta(vec![]), 1000);
        w.write(b"hello ");
        w.write(b"world");
        assert!(lookup(&store, &key(), &req).await.unwrap().is_none());
        assert!(w.finish());
        let found = lookup(&store, &key(), &req).await.unwrap().unwrap();
        let BodyLayout::Chunked { object_id, len, .. } = found.meta.body else {
            panic!("expected chunks, got {:?}", found.meta.body);
        };
        assert_eq!(len, 11);
        let mut body = Vec::new();
        for i in 0..found.meta.body.chunk_count() {
            body.extend_from_slice(
                &store
                    .get_chunk(&found.object_key, object_id, i)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        assert_eq!(body, b"hello world");
    }

    #[tokio::test]
    async fn abandoned_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let req = HeaderMap::new();
        let mut w = ObjectWriter::new(store.clone(), key(), &req, meta(vec![]), 1000);
        w.write(b"partial body");
        drop(w);
        assert!(lookup(&store, &key(), &req).await.unwrap().is_none());
        let mut w = ObjectWriter::new(store.clone(), key(), &req, meta(vec![]), 5);
        w.write(b"too large");
        assert!(w.is_abandoned());
        assert!(!w.finish());
        assert!(lookup(&store, &key(), &req).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn variants_are_found_through_the_vary_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let names = vec![HeaderName::from_static("accept-language")];
        let req = |lang: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("accept-language", HeaderValue::from_static(lang));
            h
        };
        for lang in ["en", "fr"] {
            let mut w =
                ObjectWriter::new(store.clone(), key(), &req(lang), meta(names.clone()), 1000);
            w.write(lang.as_bytes());
            assert!(w.finish());
        }
        for lang in ["en", "fr"] {
            let found = lookup(&store, &key(), &req(lang)).await.unwrap().unwrap();
            assert_eq!(found.meta.body, BodyLayout::Inline(Bytes::from(lang)));
        }
        assert!(lookup(&store, &key(), &req("de")).await.unwrap().is_none());
        // A response without Vary replaces the record.
        let mut w = ObjectWriter::new(store.clone(), key(), &req("de"), meta(vec![]), 1000);
        w.write(b"all");
        assert!(w.finish());
        let found = lookup(&store, &key(), &req("en")).await.unwrap().unwrap();
        assert_eq!(
            found.meta.body,
            BodyLayout::Inline(Bytes::from_static(b"all"))
        );
    }

    #[test]
    fn vary_names_parse() {
        let mut h = HeaderMap::new();
        h.append(
            "vary",
            HeaderValue::from_static("Accept-Encoding, accept-language"),
        );
        h.append("vary", HeaderValue::from_static("accept-encoding"));
        assert_eq!(
            vary_names(&h).unwrap(),
            ["accept-encoding", "accept-language"]
        );
        h.append("vary", HeaderValue::from_static("*"));
        assert!(vary_names(&h).is_none());
    }
}
