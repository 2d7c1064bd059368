//! A miss: one request per key goes to the origin while a fill is in
//! flight, the others stream the same response as it arrives (`join.rs`);
//! range misses with slicing on fetch one slice (`sliced_miss.rs`); keys
//! recently found uncacheable, and HEADs, go straight to the origin.

use std::sync::Arc;

use cache::CacheKey;
use http::Method;
use http::header;

use super::forward::Fetched;
use super::join::{self, Joined};
use super::respond::{Mark, Served};
use super::shared::Shared;
use super::{sliced_miss, stream};
use crate::body::ProxyBody;
use crate::error::{ErrorSource, ProxyError};
use crate::hooks::{EdgeHooks, Session};

/// A miss: join the fill of `key`, or lead it.
pub(crate) async fn fill<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    key: CacheKey,
    client_body: ProxyBody,
    ctx: &mut H::Ctx,
) -> Result<Served, ProxyError> {
    session.cache_tier = None;
    if shared
        .fwd
        .routing(session)
        .passed_here(&session.req.headers)
    {
        // Back at this node through a shield loop: this node's own fetch
        // of the key is what sent it round, so waiting on it would wait
        // on ourselves.
        return bypass(shared, session, key, client_body, ctx).await;
    }
    if shared.cache.slice_size > 0
        && session.req.method == Method::GET
        && session.req.headers.contains_key(header::RANGE)
    {
        return sliced_miss::sliced_miss(shared, session, key, client_body, ctx).await;
    }
    // A HEAD brings no body to share.
    let shareable = session.req.method != Method::HEAD;
    let leader = match join::join_fill(shared, session, key, shareable).await {
        Joined::Lead(leader) => leader,
        Joined::Served(served) => return Ok(served),
        Joined::Failed(status) => return Err(ProxyError::CollapsedFailure(status)),
        Joined::Alone => {
            let fetched = shared.fwd.forward(session, client_body, ctx, &[]).await?;
            return Ok(stream::store_or_pass(
                shared,
                session,
                key,
                fetched,
                Mark::MISS,
            ));
        }
        Joined::Bypass => return bypass(shared, session, key, client_body, ctx).await,
    };
    match shared.fwd.forward(session, client_body, ctx, &[]).await {
        Ok(fetched) => Ok(stream::lead(
            shared,
            session,
            key,
            leader,
            fetched,
            Mark::MISS,
        )),
        Err(err) => {
            if err.source_side() == ErrorSource::Upstream {
                leader.fail(err.status());
            }
            // Otherwise (the client's own body failed) dropping the leader
            // hands the fetch to a waiter.
            Err(err)
        }
    }
}

/// A key recently found uncacheable (or a HEAD): straight to the origin,
/// storing the response if it turns out cacheable after all.
async fn bypass<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    key: CacheKey,
    client_body: ProxyBody,
    ctx: &mut H::Ctx,
) -> Result<Served, ProxyError> {
    let Fetched {
        parts,
        body,
        exchange,
    } = shared.fwd.forward(session, client_body, ctx, &[]).await?;
    let cache = &shared.cache;
    Ok(match cache.object_writer(session, key, &parts, exchange) {
        Ok(writer) => {
            // Cacheable again: stop bypassing the fill.
            cache.fills.clear_pass(&key);
            stream::stored_response(shared, session, parts, body, writer, Mark::MISS)
        }
        Err(reason) => stream::pass_through(shared, session, parts, body, Mark::MISS.fwd, reason),
    })
}
