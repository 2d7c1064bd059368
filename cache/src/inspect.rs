//! What the cache holds for one URL, as data, for the admin inspector
//! (`GET /cache/inspect` in `edge/src/admin.rs`): every stored variant,
//! the tiers holding it, its stored encodings and slices
//! ([`gather`]), and its age, freshness and stale windows at a given
//! `now` ([`freshness`], the policy's own functions).
//!
//! Reads go through [`Store::peek`], which never promotes an entry from
//! disk into memory, so inspecting does not change what the cache keeps.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::CacheControl;
use crate::CacheKey;
use crate::encoding::Encoding;
use crate::meta::{BodyLayout, ObjectMeta};
use crate::policy::{self, Reuse, StoredPolicy};
use crate::slice;
use crate::store::{Entry, Store, StoreError, Tier};
use crate::variants::REDACTED;

/// Slices looked at per object at most: a 10 GiB object in 4 MiB slices
/// has 2 560; the rest are reported as not checked.
pub const MAX_SLICES_CHECKED: u64 = 4096;

/// What is stored under one primary key.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The Vary'd field names, when a Vary record is stored.
    pub vary: Option<Vec<HeaderName>>,
    /// Tiers holding the Vary record.
    pub vary_tiers: Vec<Tier>,
    /// Every stored object: the one object, or each variant found.
    pub objects: Vec<Stored>,
}

/// One stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    pub object_key: CacheKey,
    /// The request values that select this variant (empty: no Vary).
    pub selector: Vec<(HeaderName, Option<String>)>,
    pub meta: Arc<ObjectMeta>,
    pub tiers: Vec<Tier>,
    /// Encodings made by the edge and stored beside the identity body.
    pub encodings: Vec<StoredEncoding>,
    pub slices: Option<Slices>,
}

/// One stored encoding of an object's body.
#[derive(Debug, Clone)]
pub struct StoredEncoding {
    pub encoding: Encoding,
    pub size: u64,
    pub tiers: Vec<Tier>,
}

/// The slices of an object kept in slices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slices {
    pub slice_size: u64,
    /// Slices the object has.
    pub count: u64,
    /// Indexes of the slices stored (of those checked).
    pub held: Vec<u64>,
    /// Slices looked at (`count`, or [`MAX_SLICES_CHECKED`]).
    pub checked: u64,
}

/// Gathers what the store holds under `primary`, without a body read.
pub async fn gather(store: &Store, primary: &CacheKey) -> Result<Inspection, StoreError> {
    let Some((entry, tiers)) = store.peek(primary).await? else {
        return Ok(Inspection {
            vary: None,
            vary_tiers: Vec::new(),
            objects: Vec::new(),
        });
    };
    match entry {
        Entry::Object(meta) => {
            let object = stored(store, primary, *primary, Vec::new(), meta, tiers).await?;
            Ok(Inspection {
                vary: None,
                vary_tiers: Vec::new(),
                objects: vec![object],
            })
        }
        Entry::Vary(names) => {
            let mut objects = Vec::new();
            for variant in store.variants(primary).await? {
                // An index entry may name a variant evicted or replaced
                // since, or one of an older Vary: only what a lookup with
                // those values would find counts.
                let Some((Entry::Object(meta), tiers)) = store.peek(&variant.key).await? else {
                    continue;
                };
                if meta.vary.as_slice() != &*names {
                    continue;
                }
                objects.push(
                    stored(store, primary, variant.key, variant.selector, meta, tiers).await?,
                );
            }
            Ok(Inspection {
                vary: Some(names.to_vec()),
                vary_tiers: tiers,
                objects,
            })
        }
    }
}

async fn stored(
    store: &Store,
    primary: &CacheKey,
    object_key: CacheKey,
    selector: Vec<(HeaderName, Option<String>)>,
    meta: Arc<ObjectMeta>,
    tiers: Vec<Tier>,
) -> Result<Stored, StoreError> {
    let mut encodings = Vec::new();
    // Encodings exist only for bodies with an id that are not sliced (see
    // `edge/src/transform/mod.rs`, `encoded_key_of`).
    if meta.body_id != 0 && !matches!(meta.body, BodyLayout::Sliced { .. }) {
        for encoding in [
            Encoding::Brotli,
            Encoding::Zstd,
            Encoding::Gzip,
            Encoding::Deflate,
        ] {
            let key = object_key.encoded(encoding, meta.body_id);
            if let Some((Entry::Object(encoded), tiers)) = store.peek(&key).await? {
                encodings.push(StoredEncoding {
                    encoding,
                    size: encoded.body.len(),
                    tiers,
                });
            }
        }
    }
    let slices = match meta.body {
        BodyLayout::Sliced { len, slice_size } => {
            Some(slices(store, primary, &meta, &selector, len, slice_size).await?)
        }
        _ => None,
    };
    Ok(Stored {
        object_key,
        selector,
        meta,
        tiers,
        encodings,
        slices,
    })
}

/// Which slices of a sliced object are stored, checked as the serving
/// path checks them (`edge/src/proxy/slices.rs`): a 206 of the right
/// range and validator.
async fn slices(
    store: &Store,
    primary: &CacheKey,
    whole: &ObjectMeta,
    selector: &[(HeaderName, Option<String>)],
    len: u64,
    slice_size: u64,
) -> Result<Slices, StoreError> {
    let slice_size = slice_size.max(1);
    let count = len.div_ceil(slice_size);
    let checked = count.min(MAX_SLICES_CHECKED);
    let request = request_of(selector);
    let mut held = Vec::new();
    for index in 0..checked {
        let Some(range) = slice::slice_range(index, slice_size, len) else {
            continue;
        };
        let slice_key = primary.slice(slice_size, index);
        let meta = match store.peek(&slice_key).await? {
            Some((Entry::Object(meta), _)) => meta,
            Some((Entry::Vary(names), _)) => match &request {
                Some(request) => match store.peek(&slice_key.variant(&names, request)).await? {
                    Some((Entry::Object(meta), _)) => meta,
                    _ => continue,
                },
                None => continue,
            },
            None => continue,
        };
        if meta.body.len() == range.len()
            && slice::is_slice_of(&whole.headers, len, meta.status, &meta.headers, range)
        {
            held.push(index);
        }
    }
    Ok(Slices {
        slice_size,
        count,
        held,
        checked,
    })
}

/// The request headers a selector stands for; `None` when a value was
/// redacted (the variant key of such a request cannot be rebuilt).
fn request_of(selector: &[(HeaderName, Option<String>)]) -> Option<HeaderMap> {
    let mut request = HeaderMap::new();
    for (name, value) in selector {
        match value.as_deref() {
            None => {}
            Some(REDACTED) => return None,
            Some(value) => {
                request.append(name.clone(), HeaderValue::from_str(value).ok()?);
            }
        }
    }
    Some(request)
}

/// An object's age and freshness at `now` (RFC 9111 §4.2), for a request
/// without directives, from the policy's own functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// `current_age` (§4.2.3).
    pub age: Duration,
    /// The freshness lifetime (§4.2.1), after any soft purge.
    pub lifetime: Duration,
    /// Time left until stale; zero once stale.
    pub fresh_for: Duration,
    /// How long it has been stale; zero while fresh.
    pub stale_for: Duration,
    /// What a plain request would do with it now.
    pub reuse: Reuse,
    /// `stale-while-revalidate` (RFC 5861 §3): the window and what is left.
    pub stale_while_revalidate: Option<Window>,
    /// `stale-if-error` (RFC 5861 §4): the window and what is left.
    pub stale_if_error: Option<Window>,
}

/// A stale window and how much of it is left at `now` (all of it while
/// the object is fresh; none once it is over or when `must-revalidate` /
/// `no-cache` rule stale reuse out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub window: Duration,
    pub left: Duration,
}

/// The freshness of a stored response at `now`; pass the meta as the
/// purge rules leave it (`decision::apply_purge`).
pub fn freshness(meta: &ObjectMeta, now: SystemTime) -> Freshness {
    let stored: &StoredPolicy = &meta.policy;
    let age = policy::current_age(stored, meta.response_time, now);
    let stale_for = age.saturating_sub(stored.lifetime);
    let reuse = policy::evaluate(stored, meta.response_time, &CacheControl::default(), now);
    let usable = !stored.must_revalidate && !stored.no_cache;
    let window = |w: Option<Duration>| {
        w.map(|window| Window {
            window,
            left: if usable {
                window.saturating_sub(stale_for)
            } else {
                Duration::ZERO
            },
        })
    };
    Freshness {
        age,
        lifetime: stored.lifetime,
        fresh_for: stored.lifetime.saturating_sub(age),
        stale_for,
        reuse,
        stale_while_revalidate: window(stored.stale_while_revalidate),
        stale_if_error: window(stored.stale_if_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use crate::variants::Variant;
    use bytes::Bytes;
    use http::Method;

    fn meta_with(policy: StoredPolicy, at: SystemTime) -> ObjectMeta {
        ObjectMeta {
            request_time: at,
            response_time: at,
            policy,
            ..ObjectMeta::fresh(HeaderMap::new(), Bytes::new(), Duration::ZERO)
        }
    }

    #[test]
    fn freshness_counts_age_lifetime_and_windows() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let policy = StoredPolicy {
            stale_while_revalidate: Some(Duration::from_secs(30)),
            stale_if_error: Some(Duration::from_secs(300)),
            corrected_initial_age: Duration::from_secs(5),
            ..StoredPolicy::fresh_for(Duration::from_secs(60))
        };
        let meta = meta_with(policy, t0);
        let fresh = freshness(&meta, t0 + Duration::from_secs(15));
        assert_eq!(fresh.age, Duration::from_secs(20));
        assert_eq!(fresh.fresh_for, Duration::from_secs(40));
        assert_eq!(fresh.stale_for, Duration::ZERO);
        assert_eq!(fresh.reuse, Reuse::Fresh);
        assert_eq!(
            fresh.stale_while_revalidate,
            Some(Window {
                window: Duration::from_secs(30),
                left: Duration::from_secs(30)
            })
        );
        let stale = freshness(&meta, t0 + Duration::from_secs(65));
        assert_eq!(stale.fresh_for, Duration::ZERO);
        assert_eq!(stale.stale_for, Duration::from_secs(10));
        assert_eq!(stale.reuse, Reuse::StaleWhileRevalidate);
        assert_eq!(
            stale.stale_while_revalidate.map(|w| w.left),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            stale.stale_if_error.map(|w| w.left),
            Some(Duration::from_secs(290))
        );
        let later = freshness(&meta, t0 + Duration::from_secs(200));
        assert_eq!(later.reuse, Reuse::Revalidate);
        assert_eq!(
            later.stale_while_revalidate.map(|w| w.left),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn must_revalidate_leaves_no_window() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let policy = StoredPolicy {
            must_revalidate: true,
            stale_if_error: Some(Duration::from_secs(300)),
            ..StoredPolicy::fresh_for(Duration::from_secs(60))
        };
        let f = freshness(&meta_with(policy, t0), t0);
        assert_eq!(f.stale_if_error.map(|w| w.left), Some(Duration::ZERO));
    }

    #[test]
    fn selectors_rebuild_requests_unless_redacted() {
        let lang = HeaderName::from_static("accept-language");
        let req = request_of(&[(lang.clone(), Some("fr, en".into()))]).unwrap();
        assert_eq!(req.get(&lang).unwrap(), "fr, en");
        assert!(request_of(&[(lang, Some(REDACTED.into()))]).is_none());
    }

    #[tokio::test]
    async fn gathers_variants_without_promoting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &StoreConfig::new(dir.path().to_owned(), 32 << 20, 64 << 20),
            None,
        )
        .await
        .unwrap();
        let primary = CacheKey::for_request(&Method::GET, "http", "x", "/").unwrap();
        assert!(gather(&store, &primary).await.unwrap().objects.is_empty());
        let names = vec![HeaderName::from_static("accept-language")];
        for lang in ["en", "fr"] {
            let mut req = HeaderMap::new();
            req.insert("accept-language", HeaderValue::from_static(lang));
            let meta = ObjectMeta {
                vary: names.clone(),
                ..ObjectMeta::fresh(HeaderMap::new(), Bytes::new(), Duration::from_secs(60))
            };
            let mut w = crate::object::ObjectWriter::new(store.clone(), primary, &req, meta, 100);
            w.write(lang.as_bytes());
            assert!(w.finish());
        }
        let seen = gather(&store, &primary).await.unwrap();
        assert_eq!(seen.vary, Some(names.clone()));
        let langs: Vec<_> = seen
            .objects
            .iter()
            .map(|o| o.selector[0].1.clone().unwrap())
            .collect();
        assert_eq!(langs, ["fr", "en"]);
        assert!(seen.objects[0].tiers.contains(&Tier::Memory));
        // An index entry whose variant is gone is left out.
        store.record_variant(
            &primary,
            Variant {
                key: primary.slice(1, 1),
                selector: vec![],
            },
        );
        assert_eq!(gather(&store, &primary).await.unwrap().objects.len(), 2);
    }
}
