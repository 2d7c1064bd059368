//! Compression at the edge (`[compression]`): gzip, Brotli and zstd for
//! clients that accept them, and origin codings undone for clients that do
//! not.
//!
//! - `plan.rs`: what to do with one response for one client, as data,
//!   and the head edits it needs (`Vary`, weak `ETag`, length);
//! - `codec.rs`: the codecs, fed frame by frame;
//! - `body.rs`: a body transcoded as it streams, which can store what it
//!   produces as the object's encoding;
//! - here: the settings, the metrics, and the stored encodings.
//!
//! **Each encoding is made once.** The identity object is stored as it
//! always was; an encoding is another object under
//! `CacheKey::encoded(encoding, body_id)` of the identity object, written
//! by the first response that needed it (the miss that filled the object,
//! or the first hit in that encoding) and read by the hits after it. Its
//! head is always the identity object's (so `Age`, freshness and
//! revalidation are the object's); only its body and length are its own.
//! A new body (a new fill, a purge followed by a fill) has a new id, so a
//! stale encoding is never found.

mod body;
mod codec;
mod plan;

use std::sync::Arc;

use cache::CacheKey;
use cache::encoding::Encoding;
use cache::meta::{BodyLayout, ObjectMeta};
use cache::object::{Found, ObjectWriter};
use cache::store::{Entry, Store};
use http::header::{self, HeaderMap, HeaderValue};
use prometheus::{IntCounterVec, Opts, Registry};

pub use body::Transcoded;
pub use plan::{Plan, Response, edit_head, plan};

use crate::config::CompressionConfig;

/// Every metric name this module exports.
pub mod names {
    pub const COMPRESSIONS_TOTAL: &str = "edge_compressions_total";
    pub const DECOMPRESSIONS_TOTAL: &str = "edge_decompressions_total";
    pub const COMPRESSION_BYTES_IN_TOTAL: &str = "edge_compression_bytes_in_total";
    pub const COMPRESSION_BYTES_OUT_TOTAL: &str = "edge_compression_bytes_out_total";
    pub const ENCODED_HITS_TOTAL: &str = "edge_compressed_hits_total";
}

/// Codec levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub gzip: u32,
    pub br: u32,
    pub zstd: i32,
}

impl Default for Levels {
    fn default() -> Self {
        let c = CompressionConfig::default();
        Levels {
            gzip: c.gzip_level,
            br: c.br_level,
            zstd: c.zstd_level,
        }
    }
}

/// `[compression]`, compiled.
#[derive(Debug, Clone)]
pub struct Compression {
    pub enabled: bool,
    exact: Vec<String>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    pub min_size: u64,
    pub levels: Levels,
}

impl Compression {
    pub fn from_config(config: &CompressionConfig) -> Compression {
        let mut c = Compression {
            enabled: config.enabled,
            exact: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            min_size: config.min_size.0,
            levels: Levels {
                gzip: config.gzip_level,
                br: config.br_level,
                zstd: config.zstd_level,
            },
        };
        for t in &config.types {
            let t = t.to_ascii_lowercase();
            if let Some(ty) = t.strip_suffix("/*") {
                c.prefixes.push(format!("{ty}/"));
            } else if let Some(suffix) = t.strip_prefix('*') {
                c.suffixes.push(suffix.to_owned());
            } else {
                c.exact.push(t);
            }
        }
        c
    }

    /// Whether a response of this `Content-Type` is worth compressing.
    /// Streams of events are not: a compressor holds events back until
    /// a block fills.
    pub fn compressible(&self, headers: &HeaderMap) -> bool {
        let Some(ty) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        // No lower-cased copy: this runs on every hit.
        let ty = ty.split(';').next().unwrap_or("").trim();
        if ty.eq_ignore_ascii_case("text/event-stream") {
            return false;
        }
        let starts = |p: &str| ty.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
        let ends = |s: &str| {
            ty.len() >= s.len()
                && ty
                    .get(ty.len() - s.len()..)
                    .is_some_and(|t| t.eq_ignore_ascii_case(s))
        };
        // Prefixes first: `text/*` is most of what is compressed.
        self.prefixes.iter().any(|p| starts(p))
            || self.exact.iter().any(|t| t.eq_ignore_ascii_case(ty))
            || self.suffixes.iter().any(|s| ends(s))
    }
}

/// The counters of compression work; hits on a stored encoding add none.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Bodies compressed, by encoding.
    pub compressions: IntCounterVec,
    /// Bodies decompressed (an origin coding undone), by encoding.
    pub decompressions: IntCounterVec,
    /// Bytes into a codec, by encoding and direction.
    pub bytes_in: IntCounterVec,
    /// Bytes out of a codec, by encoding and direction.
    pub bytes_out: IntCounterVec,
    /// Responses served from a stored encoding, by encoding.
    pub encoded_hits: IntCounterVec,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(Metrics {
            compressions: vec(
                names::COMPRESSIONS_TOTAL,
                "Response bodies compressed by the edge",
                &["encoding"],
            )?,
            decompressions: vec(
                names::DECOMPRESSIONS_TOTAL,
                "Origin-compressed bodies decompressed for clients that do not accept their coding",
                &["encoding"],
            )?,
            bytes_in: vec(
                names::COMPRESSION_BYTES_IN_TOTAL,
                "Bytes fed to a codec",
                &["encoding", "direction"],
            )?,
            bytes_out: vec(
                names::COMPRESSION_BYTES_OUT_TOTAL,
                "Bytes a codec produced",
                &["encoding", "direction"],
            )?,
            encoded_hits: vec(
                names::ENCODED_HITS_TOTAL,
                "Responses served from an encoding stored beside the object (no compression work)",
                &["encoding"],
            )?,
        })
    }
}

/// Whether a codec packs or unpacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Compress,
    Decompress,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Compress => "compress",
            Direction::Decompress => "decompress",
        }
    }
}

/// The stored `encoding` of the object `found`, if it was made.
pub async fn stored_encoding(store: &Store, found: &Found, encoding: Encoding) -> Option<Found> {
    let key = encoded_key(found, encoding)?;
    match store.get(&key).await {
        Ok(Some((Entry::Object(meta), tier))) => Some(Found {
            meta,
            tier,
            object_key: key,
        }),
        _ => None,
    }
}

/// Where `encoding` of `found`'s body is stored; `None` for objects that
/// record no body id (stored by an older binary) or are kept in slices.
fn encoded_key(found: &Found, encoding: Encoding) -> Option<CacheKey> {
    encoded_key_of(&found.object_key, &found.meta, encoding)
}

fn encoded_key_of(
    object_key: &CacheKey,
    meta: &ObjectMeta,
    encoding: Encoding,
) -> Option<CacheKey> {
    if meta.body_id == 0 || matches!(meta.body, BodyLayout::Sliced { .. }) {
        return None;
    }
    Some(object_key.encoded(encoding, meta.body_id))
}

/// A writer that stores the `encoding` of the body of `meta` (the
/// identity object under `object_key`) as it is produced.
pub fn encoding_writer(
    store: &Store,
    object_key: &CacheKey,
    meta: &ObjectMeta,
    encoding: Encoding,
    max_size: u64,
) -> Option<ObjectWriter> {
    let key = encoded_key_of(object_key, meta, encoding)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    // Only the body is read back; the head served is the identity's.
    let encoded = ObjectMeta {
        headers,
        vary: Vec::new(),
        tags: Vec::new(),
        body: BodyLayout::Inline(bytes::Bytes::new()),
        ..meta.clone()
    };
    Some(ObjectWriter::new(
        store.clone(),
        key,
        &HeaderMap::new(),
        encoded,
        max_size,
    ))
}

/// What the encoded body of a response is built from, for [`Transcoded`]:
/// shared by every response of one generation.
#[derive(Debug, Clone)]
pub struct Transformer {
    pub settings: Arc<Compression>,
    pub metrics: Metrics,
}

impl Transformer {
    /// Counts a response served from a stored encoding.
    pub fn count_encoded_hit(&self, encoding: Encoding) {
        self.metrics
            .encoded_hits
            .with_label_values(&[encoding.token()])
            .inc();
    }
}
