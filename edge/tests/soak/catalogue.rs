//! The objects the origin serves: how each path is cached, how long it
//! is, its validators, and its deterministic bytes per version (the
//! catalogue of current versions, with memos of hot bodies and hashes).

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use http::{HeaderMap, header};

use crate::model::{KIB, MIB};

/// How an object may be cached, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Long,
    /// Stale after 2 s: revalidated with `If-None-Match`.
    Short,
    /// Stale after 2 s, then served while refreshed, or on origin errors.
    StaleWhileRevalidate,
    NoStore,
    Private,
}

impl Freshness {
    pub fn of(path: &str) -> Self {
        let seed = path_seed(path);
        if path.starts_with("/nc/") {
            if seed.is_multiple_of(2) {
                Freshness::NoStore
            } else {
                Freshness::Private
            }
        } else if path.starts_with("/hot/") {
            match (seed >> 40) % 10 {
                0 => Freshness::Short,
                1 => Freshness::StaleWhileRevalidate,
                _ => Freshness::Long,
            }
        } else {
            Freshness::Long
        }
    }

    pub fn cache_control(self) -> &'static str {
        match self {
            Freshness::Long => "public, max-age=3600",
            Freshness::Short => "max-age=2",
            Freshness::StaleWhileRevalidate => {
                "max-age=2, stale-while-revalidate=10, stale-if-error=60"
            }
            Freshness::NoStore => "no-store",
            Freshness::Private => "private, max-age=60",
        }
    }

    pub fn cacheable(self) -> bool {
        !matches!(self, Freshness::NoStore | Freshness::Private)
    }
}

pub fn path_seed(path: &str) -> u64 {
    let hash = blake3::hash(path.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Whether the origin knows `path` (GET and HEAD).
pub fn is_object(path: &str) -> bool {
    ["/hot/", "/cold/", "/nc/"].iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|n| n.parse::<u64>().is_ok())
    })
}

/// An object's length, the same for all its versions: 1 KiB to 4 MiB,
/// most small, some sliced (over `MAX_OBJECT`).
pub fn size_of(path: &str) -> u64 {
    let seed = path_seed(path);
    let x = seed >> 8;
    match seed % 100 {
        0..60 => KIB + x % (15 * KIB),
        60..85 => 16 * KIB + x % (240 * KIB),
        85..95 => 256 * KIB + x % (768 * KIB),
        _ => MIB + x % (3 * MIB),
    }
}

/// A strong validator naming the path and the version: `"<tag>.<version>"`.
pub fn etag(path: &str, version: u32) -> String {
    format!("\"{:08x}.{version}\"", path_seed(path) as u32)
}

/// The version an ETag names, if it is this path's.
pub fn etag_version(path: &str, headers: &HeaderMap) -> Option<u32> {
    let value = headers.get(header::ETAG)?.to_str().ok()?;
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    let (tag, version) = inner.split_once('.')?;
    (tag == format!("{:08x}", path_seed(path) as u32))
        .then(|| version.parse().ok())
        .flatten()
}

/// Bytes `start..start + len` of a version of an object: blake3's
/// extendable output keyed by the path and version, so any slice is known
/// without storing the whole.
pub fn generate(path: &str, version: u32, start: u64, len: u64) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(path.as_bytes());
    hasher.update(&version.to_le_bytes());
    let mut reader = hasher.finalize_xof();
    reader.set_position(start);
    let mut out = vec![0u8; usize::try_from(len).expect("object sizes fit")];
    reader.fill(&mut out);
    out
}

/// The origin's objects: current versions, and memos of hot bodies and of
/// every version's hash.
#[derive(Debug, Default)]
pub struct Catalogue {
    versions: Mutex<HashMap<String, u32>>,
    bodies: Mutex<HashMap<String, (u32, Bytes)>>,
    hashes: Mutex<HashMap<(String, u32), blake3::Hash>>,
}

impl Catalogue {
    pub fn version(&self, path: &str) -> u32 {
        let versions = self.versions.lock().expect("versions lock");
        versions.get(path).copied().unwrap_or(0)
    }

    /// A new version of the object (a POST or a publish before a purge).
    pub fn bump(&self, path: &str) -> u32 {
        let mut versions = self.versions.lock().expect("versions lock");
        let version = versions.entry(path.to_owned()).or_insert(0);
        *version += 1;
        *version
    }

    /// Bytes `start..=end` of a version of `path`; the current version of
    /// hot and uncacheable objects is kept in memory.
    pub fn bytes(&self, path: &str, version: u32, start: u64, end: u64) -> Bytes {
        let memo = !path.starts_with("/cold/") && version == self.version(path);
        if !memo {
            return Bytes::from(generate(path, version, start, end + 1 - start));
        }
        let whole = {
            let bodies = self.bodies.lock().expect("bodies lock");
            bodies
                .get(path)
                .filter(|(v, _)| *v == version)
                .map(|(_, b)| b.clone())
        };
        let whole = whole.unwrap_or_else(|| {
            let body = Bytes::from(generate(path, version, 0, size_of(path)));
            let mut bodies = self.bodies.lock().expect("bodies lock");
            bodies.insert(path.to_owned(), (version, body.clone()));
            body
        });
        whole.slice(start as usize..=end as usize)
    }

    pub fn hash(&self, path: &str, version: u32) -> blake3::Hash {
        let key = (path.to_owned(), version);
        if let Some(hash) = self.hashes.lock().expect("hashes lock").get(&key) {
            return *hash;
        }
        let hash = blake3::hash(&self.bytes(path, version, 0, size_of(path) - 1));
        self.hashes.lock().expect("hashes lock").insert(key, hash);
        hash
    }
}
