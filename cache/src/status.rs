//! `CacheStatus`: how a response relates to the cache, as shown in
//! `X-Cache`, logs and metric labels.

/// The outcome of a request as far as the cache is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Served from cache, fresh.
    Hit,
    /// Not in cache: fetched (and stored if allowed).
    Miss,
    /// Served from cache although stale (stale-while-revalidate,
    /// stale-if-error or the client's max-stale).
    Stale,
    /// Stale in cache, confirmed by the origin with a 304.
    Revalidated,
    /// Stale in cache, replaced by a new response from the origin.
    Expired,
    /// Not cacheable by request (method, or the cache_key hook said no).
    Pass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Pass => "PASS",
        }
    }

    /// Whether the body came out of the cache.
    pub fn from_cache(self) -> bool {
        matches!(
            self,
            CacheStatus::Hit | CacheStatus::Stale | CacheStatus::Revalidated
        )
    }
}
