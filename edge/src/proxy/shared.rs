//! What every cache phase reaches: the upstream side ([`Forwarder`]) and
//! the cache ([`CacheLayer`]) and compression ([`Transformer`]), in one `Arc` that background work (a
//! refresh, a slice fetched while a body streams) can keep.

use std::sync::Arc;

use super::forward::Forwarder;
use super::layer::CacheLayer;
use crate::observe::live_log::LiveLog;
use crate::transform::Transformer;

#[derive(Debug)]
pub(crate) struct Shared<H> {
    pub fwd: Forwarder<H>,
    pub cache: Arc<CacheLayer>,
    /// Compression settings of this generation.
    pub transform: Transformer,
    /// Watchers of `/log` (the same across generations).
    pub live: Arc<LiveLog>,
    /// `[tracing]` of this generation (kept by a reload that leaves it
    /// alone); `None` without an endpoint.
    pub tracing: Option<Arc<crate::observe::trace::Tracing>>,
}
