//! The cache as the request phases share it: the store, the policy
//! choices, the fills in flight, the revalidations in flight, the purge
//! rules and the clock; and the questions every phase asks of them (may
//! this response be stored? does a purge cover that object?).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache::decision::PurgeVerdict;
use cache::fill::{FillConfig, FillReader, Fills};
use cache::meta::{BodyLayout, ObjectMeta};
use cache::object::{self, ObjectWriter};
use cache::policy::{self, PolicyOptions};
use cache::store::Store;
use cache::{CacheKey, Clock, KeyMap, NoCacheReason, validation};
use http::header::HeaderMap;
use http::{Method, StatusCode, response};
use purge_api::Purger;
use tokio::sync::watch;
use tracing::debug;

use super::respond::content_length;
use crate::config::CacheConfig;
use crate::hooks::Session;

/// The fills' limits from `[cache]`.
fn fill_config(config: &CacheConfig) -> FillConfig {
    FillConfig {
        window: config.fill_window.as_usize(),
        // Fill windows sit on top of the memory tier's budget: together
        // they may add a quarter of it.
        total_window: config.memory.as_usize() / 4,
        wait_for_head: config.fill_wait_timeout,
        hit_for_pass: config.hit_for_pass,
    }
}

/// The store and the policy choices, shared by all requests.
#[derive(Debug)]
pub(crate) struct CacheLayer {
    pub store: Store,
    pub opts: PolicyOptions,
    pub max_object_size: u64,
    /// Slice size for large objects; 0 when slicing is off.
    pub slice_size: u64,
    /// Objects being revalidated: one revalidation at a time per object;
    /// the receiver wakes when it ends.
    revalidating: Arc<Mutex<KeyMap<watch::Receiver<()>>>>,
    /// Misses being fetched, shared by the requests that want them.
    pub fills: Arc<Fills>,
    pub purger: Arc<Purger>,
    /// "Now" for every age, freshness and purge decision.
    pub clock: Clock,
    /// This node's name in `Cache-Status`.
    pub node: String,
}

impl CacheLayer {
    pub fn new(
        store: Store,
        config: &CacheConfig,
        purger: Arc<Purger>,
        clock: Clock,
        node: String,
    ) -> Self {
        CacheLayer {
            fills: Arc::new(Fills::new(
                store.clone(),
                fill_config(config),
                clock.clone(),
            )),
            store,
            opts: config.policy_options(),
            max_object_size: config.max_object_size.as_u64(),
            slice_size: config.slice_size.as_u64(),
            revalidating: Arc::default(),
            purger,
            clock,
            node,
        }
    }

    /// This layer under a reloaded `[cache]`: the policy knobs (TTLs,
    /// heuristics, size limits, slices) change; the store, the fills and
    /// revalidations in flight, the purges and the clock are the same, so
    /// a request on the new generation joins a fill begun on the old one.
    pub fn reconfigured(&self, config: &CacheConfig) -> Self {
        self.fills.reconfigure(fill_config(config));
        CacheLayer {
            store: self.store.clone(),
            opts: config.policy_options(),
            max_object_size: config.max_object_size.as_u64(),
            slice_size: config.slice_size.as_u64(),
            revalidating: self.revalidating.clone(),
            fills: self.fills.clone(),
            purger: self.purger.clone(),
            clock: self.clock.clone(),
            node: self.node.clone(),
        }
    }

    /// RFC 9111 §4.4: a successful unsafe request invalidates the stored
    /// responses for its target and for same-host `Location` and
    /// `Content-Location`. (Keys are derived the default way; a custom
    /// `cache_key` hook is not consulted here.)
    pub fn invalidate_after(&self, session: &Session, resp: &response::Parts) {
        if !validation::invalidates(&session.req.method, resp.status) {
            return;
        }
        let targets = std::iter::once(session.path_and_query().to_owned()).chain(
            validation::invalidation_targets(&resp.headers, session.host()),
        );
        for target in targets {
            if let Some(key) = session.key_for(&Method::GET, &target) {
                debug!(target = %target, "invalidated by {}", session.req.method);
                self.store.remove(&key);
            }
        }
    }

    /// Starts revalidating `key`, or, if another request already is,
    /// returns a receiver that wakes when it is done.
    pub fn begin_revalidation(
        self: &Arc<Self>,
        key: CacheKey,
    ) -> Result<RevalidationGuard, watch::Receiver<()>> {
        let mut map = self.revalidating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = map.get(&key) {
            return Err(done.clone());
        }
        let (done, receiver) = watch::channel(());
        map.insert(key, receiver);
        Ok(RevalidationGuard {
            layer: self.clone(),
            key,
            _done: done,
        })
    }

    /// The purge rules' verdict on `meta`, stored (or being fetched) under
    /// `key` for this request's host and path.
    pub fn purge_verdict(
        &self,
        session: &Session,
        key: CacheKey,
        meta: &ObjectMeta,
    ) -> PurgeVerdict {
        let rules = self.purger.rules();
        if rules.is_empty() {
            // Most of the time: no need for the host or the content's age.
            return PurgeVerdict::Valid;
        }
        rules.verdict(
            &key,
            session.host(),
            session.req.uri.path(),
            &meta.tags,
            content_time(meta),
        )
    }

    /// Whether a purge made since covers what a fill is fetching: its
    /// request went to the origin before the purge. A request that arrives
    /// after the purge's answer must not get those bytes.
    pub fn fill_purged(&self, session: &Session, key: CacheKey, reader: &FillReader) -> bool {
        self.purge_verdict(session, key, &reader.head().meta) != PurgeVerdict::Valid
    }

    /// The meta an origin response would be stored with, or why it may not
    /// be stored (RFC 9111 §3, plus HEAD); its body layout is set later.
    pub fn object_meta(
        &self,
        session: &Session,
        status: StatusCode,
        headers: &HeaderMap,
        exchange: policy::Exchange,
    ) -> Result<ObjectMeta, NoCacheReason> {
        if session.req.method == Method::HEAD {
            return Err(NoCacheReason::Head);
        }
        let response = policy::Response {
            status,
            headers,
            exchange,
        };
        let policy = policy::storable_with(
            &session.req.method,
            &session.req.headers,
            response,
            &self.opts,
            &rule_defaults(session),
        )?;
        Ok(ObjectMeta {
            status,
            headers: headers.clone(),
            request_time: exchange.request_time,
            response_time: exchange.response_time,
            policy,
            body: BodyLayout::Inline(Bytes::new()),
            vary: object::vary_names(headers).unwrap_or_default(),
            tags: tags(headers),
            body_id: 0,
        })
    }

    /// Whether an origin response may be stored, and if so the writer that
    /// will store it (RFC 9111 §3, plus HEAD and the size limit).
    pub fn object_writer(
        &self,
        session: &Session,
        key: CacheKey,
        parts: &response::Parts,
        exchange: policy::Exchange,
    ) -> Result<ObjectWriter, NoCacheReason> {
        let meta = self.object_meta(session, parts.status, &parts.headers, exchange)?;
        let too_large =
            content_length(&parts.headers).is_some_and(|len| len > self.max_object_size);
        if too_large {
            return Err(NoCacheReason::TooLarge);
        }
        Ok(ObjectWriter::new(
            self.store.clone(),
            key,
            &session.req.headers,
            meta,
            self.max_object_size,
        ))
    }
}

/// What the request's site rule says about responses that do not say
/// themselves (TTL defaults, negative caching, stale windows).
pub(crate) fn rule_defaults(session: &Session) -> policy::Defaults<'_> {
    let rule = session.policy();
    policy::Defaults {
        ttl: rule.ttl,
        ttl_override: rule.ttl_override,
        ttl_status: &rule.ttl_status,
        stale_if_error: rule.stale_if_error,
        stale_while_revalidate: rule.stale_while_revalidate,
    }
}

/// Ends a revalidation, however it ends: waiters wake when the sender
/// drops, after the key has left the map.
pub(crate) struct RevalidationGuard {
    layer: Arc<CacheLayer>,
    key: CacheKey,
    _done: watch::Sender<()>,
}

impl Drop for RevalidationGuard {
    fn drop(&mut self) {
        self.layer
            .revalidating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// Purge tags: `Surrogate-Key` (space-separated) and `Cache-Tag`
/// (comma-separated).
fn tags(headers: &HeaderMap) -> Vec<String> {
    let mut tags = Vec::new();
    let lists = [("surrogate-key", ' '), ("cache-tag", ',')];
    for (name, sep) in lists {
        for value in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
            tags.extend(
                value
                    .split(sep)
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    tags
}

/// When a stored response's content was made, for purge rules: when the
/// request for it was sent (a fetch sent before a purge but answered after
/// it is older than the purge), less the `Age` it arrived with (a shield's
/// copy is as old as the shield says). Not the apparent age from `Date`:
/// its one-second resolution would make fetches just after a purge look
/// older than it.
pub(crate) fn content_time(meta: &ObjectMeta) -> SystemTime {
    // A list-valued Age counts its first member, as for freshness.
    let age = policy::age_value(&meta.headers).unwrap_or(Duration::ZERO);
    meta.request_time
        .checked_sub(age)
        .unwrap_or(meta.request_time)
}
