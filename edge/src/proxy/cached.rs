//! Phases 4–7 for cacheable requests (GET and HEAD with a cache key): the
//! lookup, the purge rules' verdict, then `cache::decision::decide` and
//! carrying out what it says: serve (`serve.rs`), refresh in the
//! background or revalidate (`revalidate.rs`), fill (`fill.rs`), or 504.

use std::sync::Arc;

use cache::decision::{self, Decision, Lookup, PurgeVerdict, Serve};
use cache::object;
use cache::policy;
use cache::{CacheKey, CacheStatus};
use tracing::{debug, warn};

use super::respond::Served;
use super::shared::Shared;
use super::{fill, revalidate, serve, slices};
use crate::error::ProxyError;
use crate::hooks::{EdgeHooks, Session};

/// The cache phases for one request.
pub(crate) async fn serve_cacheable<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    key: CacheKey,
    body: crate::body::ClientBody,
    ctx: &mut H::Ctx,
) -> Result<Served, ProxyError> {
    let cache = &shared.cache;
    let req_cc = policy::request_directives(&session.req.headers);
    let found = match object::lookup(&cache.store, &key, &session.req.headers).await {
        Ok(found) => found,
        Err(err) => {
            warn!(error = %err, "cache lookup failed; fetching from origin");
            None
        }
    };
    let verdict = found.as_ref().map_or(PurgeVerdict::Valid, |f| {
        cache.purge_verdict(session, key, &f.meta)
    });
    if verdict == PurgeVerdict::Invalid {
        debug!("stored object purged");
    }
    let client_body = shared.fwd.request_body(body);
    // Whatever happens next involves the origin unless the cache answers;
    // a failure on the way still counts as a miss, not a pass.
    session.cache_status = CacheStatus::Miss;
    let only_if_cached = req_cc.has("only-if-cached");
    let purged = verdict == PurgeVerdict::Invalid;
    let complete = match &found {
        Some(found) if only_if_cached && !purged => {
            slices::slices_cached(&cache.store, session, key, found).await
        }
        _ => true,
    };
    if let Some(found) = &found
        && !purged
        && complete
    {
        // The tier the answer would come from, even if it turns out to
        // need the origin (logged with a 504 to only-if-cached).
        session.cache_tier = Some(found.tier);
    }
    let lookup = Lookup { found, complete };
    let found = match decision::decide(lookup, &req_cc, verdict, cache.clock.now()) {
        Decision::Unavailable => return Err(ProxyError::OnlyIfCached),
        Decision::Fill => {
            return Box::pin(fill::fill(shared, session, key, client_body, ctx)).await;
        }
        Decision::Revalidate(found, conditional) => {
            let stale = revalidate::Stale {
                key,
                found,
                conditional,
                req_cc: &req_cc,
            };
            let revalidation =
                revalidate::revalidate_once(shared, session, stale, client_body, ctx);
            return Box::pin(revalidation).await;
        }
        Decision::Serve(found, how) => {
            let mark = serve::served_mark(how);
            if let Some(served) = serve::serve_stored(shared, session, &found, mark).await {
                if how == Serve::WhileRevalidating {
                    revalidate::spawn_refresh(shared, session, key, found);
                }
                return Ok(served);
            }
            found
        }
    };
    // The object's body is gone (a chunk was evicted): a miss.
    cache.store.remove(&found.object_key);
    if only_if_cached {
        return Err(ProxyError::OnlyIfCached);
    }
    Box::pin(fill::fill(shared, session, key, client_body, ctx)).await
}
