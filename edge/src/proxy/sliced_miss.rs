//! A range request for an object not in the cache, with slicing on:
//! fetch only the slice holding the first byte asked for. A 206 for it
//! tells the object's length and version; the whole object's head is
//! stored (sliced) and the client is answered like a hit on it, the other
//! slices it needs fetched as it reads. An origin that ignores ranges
//! answers 200 and the response is filled whole, as any miss.

use std::sync::Arc;

use cache::fill::Join;
use cache::object::{Found, ObjectWriter};
use cache::store::Tier;
use cache::{CacheKey, NoCacheReason, slice};
use http::StatusCode;
use http::header;
use tracing::debug;

use super::forward::Fetched;
use super::join::{self, Joined};
use super::respond::{Detail, Fwd, Mark, Served};
use super::shared::Shared;
use super::{serve, slices, stream};
use crate::body::{self, ProxyBody};
use crate::error::{ErrorSource, ProxyError};
use crate::hooks::{EdgeHooks, Session};

/// A GET with a `Range` for an object not in the cache: fetch the slice
/// holding the first byte asked for. A 206 for it tells the object's
/// length and version; the whole object's head is stored, and the
/// client is answered like a hit on it (other slices it needs are
/// fetched as it reads). An origin that ignores ranges answers 200 and
/// the response is filled whole, as any miss.
pub(crate) async fn sliced_miss<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    key: CacheKey,
    client_body: ProxyBody,
    ctx: &mut H::Ctx,
) -> Result<Served, ProxyError> {
    let cache = &shared.cache;
    let size = cache.slice_size;
    let index = slice::first_wanted(&session.req.headers).unwrap_or(0) / size;
    // The first fetch of an object shares the whole object's fill, so
    // that range misses at different offsets and plain GETs arriving
    // together cost one request even when the origin ignores ranges.
    // Only whole responses are ever published under `key`.
    let leader = match join::join_fill(shared, session, key, true).await {
        Joined::Lead(leader) => leader,
        Joined::Served(served) => return Ok(served),
        Joined::Failed(status) => return Err(ProxyError::CollapsedFailure(status)),
        Joined::Alone => {
            return range_pass(shared, session, client_body, ctx, NoCacheReason::FillWait).await;
        }
        Joined::Bypass => {
            return range_pass(shared, session, client_body, ctx, NoCacheReason::HitForPass).await;
        }
    };
    let ask = [(header::RANGE, slice::range_request(index, size))];
    let fetched = match shared.fwd.forward(session, client_body, ctx, &ask).await {
        Ok(fetched) => fetched,
        Err(err) => {
            if err.source_side() == ErrorSource::Upstream {
                leader.fail(err.status());
            }
            return Err(err);
        }
    };
    match fetched.parts.status {
        // The origin ignores ranges: an ordinary whole-object fill.
        StatusCode::OK => {
            return Ok(stream::lead(
                shared,
                session,
                key,
                leader,
                fetched,
                Mark::MISS,
            ));
        }
        StatusCode::PARTIAL_CONTENT => {}
        // 416 (the range starts past the end), errors, redirects: the
        // client's answer too, as a miss.
        _ => {
            leader.release();
            let Fetched { parts, body, .. } = fetched;
            let fwd = Some(Fwd::UriMiss);
            return Ok(stream::pass_through(
                shared,
                session,
                parts,
                body,
                fwd,
                NoCacheReason::Status,
            ));
        }
    }
    let Some((got, total)) = slice::content_range(&fetched.parts.headers) else {
        leader.release();
        return range_pass(
            shared,
            session,
            body::empty(),
            ctx,
            NoCacheReason::ContentRange,
        )
        .await;
    };
    if got.start == 0 && got.end + 1 == total {
        // The slice is the whole object: store it as one, and answer the
        // range from it like any miss.
        let Fetched {
            mut parts,
            body,
            exchange,
        } = fetched;
        parts.status = StatusCode::OK;
        parts.headers = slice::whole_head(&parts.headers, total);
        let whole = Fetched {
            parts,
            body,
            exchange,
        };
        return Ok(stream::lead(
            shared,
            session,
            key,
            leader,
            whole,
            Mark::MISS,
        ));
    }
    let whole_headers = slice::whole_head(&fetched.parts.headers, total);
    let sliceable = slice::slice_range(index, size, total) == Some(got)
        && slice::is_slice_of(
            &whole_headers,
            total,
            fetched.parts.status,
            &fetched.parts.headers,
            got,
        );
    if !sliceable {
        // Not the slice asked for, or nothing to tie slices together:
        // ask for exactly what the client wants.
        leader.release();
        return range_pass(
            shared,
            session,
            body::empty(),
            ctx,
            NoCacheReason::Unsliceable,
        )
        .await;
    }
    let whole = match cache.object_meta(session, StatusCode::OK, &whole_headers, fetched.exchange) {
        Ok(whole) => slices::sliced_meta(whole, total, size),
        Err(reason) => {
            debug!(reason = reason.as_str(), "slice response not storable");
            if reason.concerns_request_only() {
                drop(leader);
            } else {
                leader.refuse();
            }
            return range_pass(shared, session, body::empty(), ctx, reason).await;
        }
    };
    // The head first: the waiters released below look for it.
    let head = ObjectWriter::new(
        cache.store.clone(),
        key,
        &session.req.headers,
        whole.clone(),
        0,
    );
    let object_key = head.object_key();
    head.finish_sliced(total, size);
    let Fetched {
        parts,
        body: slice_body,
        ..
    } = fetched;
    // This slice becomes a fill of its own, which the client's body
    // (and anyone else's) reads.
    if let Join::Leader(slice_leader) = cache.fills.join(key.slice(size, index)) {
        let writer = ObjectWriter::new(
            cache.store.clone(),
            key.slice(size, index),
            &session.req.headers,
            slices::slice_meta(&whole, parts.headers),
            size,
        );
        let feeder = slice_leader.publish(writer);
        tokio::spawn(slices::feed(feeder, slice_body, Some(got.len())));
    }
    leader.release();
    let found = Found {
        meta: Arc::new(whole),
        tier: Tier::Memory,
        object_key,
    };
    let mark = Mark::MISS
        .with_fwd_status(StatusCode::PARTIAL_CONTENT)
        .stored()
        .with_detail(Detail::Slice);
    let served = serve::serve_stored(shared, session, &found, mark).await;
    session.cache_tier = None;
    // A sliced head always has a body stream (slices are fetched as
    // needed), so `None` cannot happen; a miss is the honest fallback.
    match served {
        Some(served) => Ok(Served {
            upstream_status: Some(StatusCode::PARTIAL_CONTENT),
            ..served
        }),
        None => range_pass(shared, session, body::empty(), ctx, NoCacheReason::Slice).await,
    }
}

/// The client's own range request, passed to the origin and back
/// unstored: for responses that cannot be sliced.
async fn range_pass<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    client_body: ProxyBody,
    ctx: &mut H::Ctx,
    reason: NoCacheReason,
) -> Result<Served, ProxyError> {
    let own: Vec<_> = [header::RANGE, header::IF_RANGE]
        .into_iter()
        .filter_map(|name| Some((name.clone(), session.req.headers.get(&name)?.clone())))
        .collect();
    let Fetched { parts, body, .. } = shared.fwd.forward(session, client_body, ctx, &own).await?;
    Ok(stream::pass_through(
        shared,
        session,
        parts,
        body,
        Some(Fwd::UriMiss),
        reason,
    ))
}
