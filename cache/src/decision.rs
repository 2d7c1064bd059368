//! The cache decision: what to do with a request for a cacheable resource,
//! given what the lookup found, the request's directives, the purge rules'
//! verdict and the time (RFC 9111 §4, §5.2.1; RFC 5861). Pure: the edge
//! carries the decision out (serve, refresh in the background, revalidate,
//! fill or answer 504), in the spirit of pingora-cache's phases and
//! rusty-http-cache-semantics' `before_request`.

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderName, HeaderValue};

use crate::cache_control::CacheControl;
use crate::meta::ObjectMeta;
use crate::object::Found;
use crate::policy::{self, Reuse};
use crate::validation;

/// What the purge rules say about a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeVerdict {
    Valid,
    /// Soft-purged at this time: serve only as stale, revalidate.
    Stale(SystemTime),
    /// Hard-purged (or older than any rule remembers): a miss.
    Invalid,
}

/// How a stored response is served as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// Fresh: `HIT`.
    Fresh,
    /// Stale, but the client's `max-stale` accepts it: `STALE`.
    MaxStale,
    /// Stale within `stale-while-revalidate`: `STALE`, and refreshed in the
    /// background.
    WhileRevalidating,
}

/// Why a stored response goes back to the origin with its validators
/// (RFC 9211 `fwd=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevalidateReason {
    /// The client asked for it (`no-cache`, or `Pragma: no-cache`).
    Request,
    /// The stored response is stale (or `no-cache` in the response).
    Stale,
}

/// The conditional request a revalidation sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditional {
    /// `If-None-Match` / `If-Modified-Since` from the stored validators;
    /// empty when it has none (the revalidation is then a plain fetch).
    pub validators: Vec<(HeaderName, HeaderValue)>,
    pub reason: RevalidateReason,
}

/// What to do with a request, as data.
#[derive(Debug)]
pub enum Decision {
    /// Answer from the stored object.
    Serve(Found, Serve),
    /// Ask the origin whether the stored object may still be used.
    Revalidate(Found, Conditional),
    /// Nothing usable is stored (or it was purged): fetch and store.
    Fill,
    /// `only-if-cached` (RFC 9111 §5.2.1.7) and the answer would need the
    /// origin: 504.
    Unavailable,
}

impl Decision {
    /// `as_str` for logs and tests.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Serve(_, Serve::Fresh) => "serve",
            Decision::Serve(_, Serve::MaxStale) => "serve-stale",
            Decision::Serve(_, Serve::WhileRevalidating) => "serve-then-refresh",
            Decision::Revalidate(..) => "revalidate",
            Decision::Fill => "fill",
            Decision::Unavailable => "unavailable",
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub struct Lookup {
    /// The stored object, if any.
    pub found: Option<Found>,
    /// Whether every byte the request would read is in the store (false
    /// only for objects kept in slices that are partly missing). Only
    /// consulted for `only-if-cached`.
    pub complete: bool,
}

/// The decision for a request with directives `request` at `now`, given
/// what the lookup found and the purge rules' verdict on it.
pub fn decide(
    lookup: Lookup,
    request: &CacheControl,
    purge: PurgeVerdict,
    now: SystemTime,
) -> Decision {
    let only_if_cached = request.has("only-if-cached");
    let Some(found) = lookup.found.and_then(|found| apply_purge(found, purge)) else {
        return if only_if_cached {
            Decision::Unavailable
        } else {
            Decision::Fill
        };
    };
    if only_if_cached && !lookup.complete {
        return Decision::Unavailable;
    }
    let meta = &found.meta;
    match policy::evaluate(&meta.policy, meta.response_time, request, now) {
        Reuse::Fresh => Decision::Serve(found, Serve::Fresh),
        Reuse::StaleAllowed => Decision::Serve(found, Serve::MaxStale),
        Reuse::StaleWhileRevalidate => Decision::Serve(found, Serve::WhileRevalidating),
        // §5.2.1.7: a stored response that would need the origin does not
        // satisfy only-if-cached.
        Reuse::Revalidate if only_if_cached => Decision::Unavailable,
        Reuse::Revalidate => {
            let reason = if request.has("no-cache") {
                RevalidateReason::Request
            } else {
                RevalidateReason::Stale
            };
            let validators = validation::conditional_headers(&meta.headers);
            Decision::Revalidate(found, Conditional { validators, reason })
        }
    }
}

/// The stored object as the purge rules leave it: gone (hard purge), or
/// expired as of the purge (soft: stale windows count from then, and the
/// next use revalidates), or untouched.
pub fn apply_purge(found: Found, purge: PurgeVerdict) -> Option<Found> {
    match purge {
        PurgeVerdict::Valid => Some(found),
        PurgeVerdict::Invalid => None,
        PurgeVerdict::Stale(at) => {
            let mut meta: ObjectMeta = (*found.meta).clone();
            let age_then = policy::current_age(&meta.policy, meta.response_time, at);
            meta.policy.lifetime = meta.policy.lifetime.min(age_then);
            Some(Found {
                meta: Arc::new(meta),
                ..found
            })
        }
    }
}

#[cfg(test)]
mod tests;
