//! A stored object that needs the origin's word (stale, or `no-cache`):
//! one conditional request per object at a time, the others waiting for
//! its answer; what the answer comes to is `cache::validation`'s decision
//! (refreshed, replaced, unusable, or an error that `stale-if-error`
//! covers). Also the background refresh of `stale-while-revalidate`.

use std::sync::Arc;

use cache::decision::{Conditional, RevalidateReason};
use cache::fill::{Join, Waited};
use cache::meta::ObjectMeta;
use cache::object::Found;
use cache::validation::{self, Answer, Asked, Revalidated};
use cache::{CacheControl, CacheKey, CacheStatus, NoCacheReason, policy};
use http::Method;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::forward::background_session;
use super::layer::{self, CacheLayer};
use super::respond::{Detail, Fwd, Mark, Served};
use super::shared::Shared;
use super::{serve, stream};
use crate::body::{self, ProxyBody};
use crate::error::ProxyError;
use crate::hooks::{EdgeHooks, Session};

/// A stored object the decision sent back to the origin.
pub(crate) struct Stale<'a> {
    pub key: CacheKey,
    pub found: Found,
    /// The validators to send, and why (`fwd=`).
    pub conditional: Conditional,
    /// The request's directives (for `stale-if-error`).
    pub req_cc: &'a CacheControl,
}

/// Revalidates `stale.found`, unless another request already is: then
/// waits for its answer (usually a 304 that serves us too) or streams the
/// new representation it is fetching.
pub(crate) async fn revalidate_once<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    stale: Stale<'_>,
    client_body: ProxyBody,
    ctx: &mut H::Ctx,
) -> Result<Served, ProxyError> {
    let cache = &shared.cache;
    let key = stale.key;
    // Held while this request revalidates; `None` when another request
    // was revalidating and its answer did not serve this one.
    let guard = match cache.begin_revalidation(stale.found.object_key) {
        Ok(guard) => Some(guard),
        Err(done) => {
            if let Some(served) = Box::pin(after_revalidation(shared, session, key, done)).await {
                return Ok(served);
            }
            // Or a new representation, still arriving.
            if let Some(waiter) = cache.fills.waiter(key)
                && let Waited::Reader(reader) = Box::pin(waiter.wait(&session.req.headers)).await
                && !cache.fill_purged(session, key, &reader)
            {
                shared.fwd.metrics.cache_collapsed.inc();
                let how = Mark::forwarded(CacheStatus::Expired, Fwd::Stale);
                return Ok(stream::serve_fill(shared, session, reader, how, true));
            }
            None
        }
    };
    // The caller boxed this whole phase: no second allocation here.
    let served = revalidate(shared, session, stale, client_body, ctx).await;
    drop(guard);
    served
}

/// Waits (as long as a miss waits for a fill) for another request's
/// revalidation, then serves the object if it is now fresh.
async fn after_revalidation<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    key: CacheKey,
    mut done: watch::Receiver<()>,
) -> Option<Served> {
    let wait = shared.cache.fills.config().wait_for_head;
    // `changed` returns Err when the guard's sender drops: the normal end.
    // Only the timeout matters.
    let _ended = tokio::time::timeout(wait, done.changed()).await.ok()?;
    let mark = Mark::forwarded(CacheStatus::Revalidated, Fwd::Stale).collapsed();
    let served = serve::serve_fresh(shared, session, key, mark).await?;
    shared.fwd.metrics.cache_collapsed.inc();
    Some(served)
}

/// Asks the origin with the stored validators and carries out what its
/// answer comes to.
async fn revalidate<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    stale: Stale<'_>,
    client_body: ProxyBody,
    ctx: &mut H::Ctx,
) -> Result<Served, ProxyError> {
    let cache = &shared.cache;
    let Stale {
        key,
        found,
        conditional,
        req_cc,
    } = stale;
    // RFC 9211: `request` when the client asked for it, `stale` when the
    // object had expired.
    let fwd = match conditional.reason {
        RevalidateReason::Request => Fwd::Request,
        RevalidateReason::Stale => Fwd::Stale,
    };
    let validators = conditional.validators;
    let fetched = match shared
        .fwd
        .forward(session, client_body, ctx, &validators)
        .await
    {
        Ok(fetched) => fetched,
        Err(err) => return stale_on_error(shared, session, &found, req_cc, err).await,
    };
    let status = fetched.parts.status;
    let asked = Asked {
        method: &session.req.method,
        headers: &session.req.headers,
        directives: req_cc,
        sent_validators: !validators.is_empty(),
        defaults: layer::rule_defaults(session),
    };
    let answer = Answer {
        status,
        headers: &fetched.parts.headers,
        exchange: fetched.exchange,
    };
    let outcome =
        validation::revalidated(&found.meta, asked, answer, &cache.opts, cache.clock.now());
    let fetched = match outcome {
        Revalidated::Refreshed { meta, kept } => {
            let refreshed = Found {
                meta: Arc::new(keep_refreshed(cache, &found, *meta, kept)),
                ..found
            };
            let mark = Mark::forwarded(CacheStatus::Revalidated, fwd)
                .with_fwd_status(StatusCode::NOT_MODIFIED);
            return match serve::serve_stored(shared, session, &refreshed, mark).await {
                Some(served) => Ok(Served {
                    upstream_status: Some(status),
                    ..served
                }),
                None => {
                    cache.store.remove(&refreshed.object_key);
                    let fetched = shared.fwd.forward(session, body::empty(), ctx, &[]).await?;
                    Ok(stream::store_or_pass(
                        shared,
                        session,
                        key,
                        fetched,
                        Mark::MISS,
                    ))
                }
            };
        }
        Revalidated::ServerError { serve_stale: true } => {
            warn!(status = status.as_u16(), "origin error; serving stale");
            let mark = stale_if_error_mark();
            if let Some(served) = serve::serve_stored(shared, session, &found, mark).await {
                return Ok(served);
            }
            fetched
        }
        // A 304 for something else: the client never asked conditionally,
        // so fetch the representation in full.
        Revalidated::Unusable => shared.fwd.forward(session, body::empty(), ctx, &[]).await?,
        Revalidated::ServerError { serve_stale: false } | Revalidated::Replaced => fetched,
    };
    // A new representation: requests that waited for this revalidation
    // stream it as it arrives, like a miss's waiters.
    let how = Mark::forwarded(CacheStatus::Expired, fwd);
    if session.req.method == Method::GET
        && let Join::Leader(leader) = cache.fills.join(key)
    {
        return Ok(stream::lead(shared, session, key, leader, fetched, how));
    }
    Ok(stream::store_or_pass(shared, session, key, fetched, how))
}

/// The mark of a stale object standing in for an origin failure.
fn stale_if_error_mark() -> Mark {
    Mark::forwarded(CacheStatus::Stale, Fwd::Stale).with_detail(Detail::StaleIfError)
}

/// Stores a refreshed object (RFC 9111 §4.3.4), or removes it when it may
/// no longer be stored; either way its meta serves this request.
fn keep_refreshed(
    cache: &CacheLayer,
    found: &Found,
    meta: ObjectMeta,
    kept: Result<(), NoCacheReason>,
) -> ObjectMeta {
    match kept {
        Ok(()) => cache.store.put_object(&found.object_key, meta.clone()),
        Err(reason) => {
            debug!(
                reason = reason.as_str(),
                "revalidated object no longer storable"
            );
            cache.store.remove(&found.object_key);
        }
    }
    meta
}

/// The origin failed: serve the stale object if `stale-if-error` allows.
async fn stale_on_error<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    found: &Found,
    req_cc: &CacheControl,
    err: ProxyError,
) -> Result<Served, ProxyError> {
    let now = shared.cache.clock.now();
    if policy::stale_if_error_allows(&found.meta.policy, found.meta.response_time, req_cc, now) {
        warn!(error = %err, "origin failed; serving stale");
        if let Some(served) =
            serve::serve_stored(shared, session, found, stale_if_error_mark()).await
        {
            return Ok(served);
        }
    }
    Err(err)
}

/// `stale-while-revalidate`: refresh the object in the background, at most
/// once at a time per object.
pub(crate) fn spawn_refresh<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &Session,
    key: CacheKey,
    found: Found,
) {
    let Ok(guard) = shared.cache.begin_revalidation(found.object_key) else {
        return;
    };
    let shared = shared.clone();
    let mut background = background_session(session, key);
    tokio::spawn(async move {
        let _guard = guard;
        let cache = &shared.cache;
        let mut ctx = shared.fwd.hooks.new_ctx();
        let validators = validation::conditional_headers(&found.meta.headers);
        let fetched = match shared
            .fwd
            .forward(&mut background, body::empty(), &mut ctx, &validators)
            .await
        {
            Ok(fetched) => fetched,
            Err(err) => {
                warn!(error = %err, "background revalidation failed");
                return;
            }
        };
        let asked = Asked {
            method: &background.req.method,
            headers: &background.req.headers,
            directives: &CacheControl::default(),
            sent_validators: !validators.is_empty(),
            defaults: layer::rule_defaults(&background),
        };
        let answer = Answer {
            status: fetched.parts.status,
            headers: &fetched.parts.headers,
            exchange: fetched.exchange,
        };
        match validation::revalidated(&found.meta, asked, answer, &cache.opts, cache.clock.now()) {
            Revalidated::Refreshed { meta, kept } => {
                keep_refreshed(cache, &found, *meta, kept);
                return;
            }
            // Keep serving what we have until the window closes.
            Revalidated::ServerError { .. } => return,
            Revalidated::Unusable | Revalidated::Replaced => {}
        }
        let how = Mark::forwarded(CacheStatus::Expired, Fwd::Stale);
        let Served { mut body, .. } =
            stream::store_or_pass(&shared, &mut background, key, fetched, how);
        // Drain the body so the fill completes.
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    });
}
