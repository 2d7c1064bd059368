//! Joining the fill of a missing object: lead the fetch for everyone, be
//! served by another request's fetch as it streams (or by what its leader
//! stored another way), or go alone. A leader that leaves before the head
//! hands over to a waiter, a bounded number of times.

use std::sync::Arc;

use cache::CacheKey;
use cache::fill::{FillLeader, Join, Waited};
use cache::policy::PolicyOptions;
use http::StatusCode;
use http::header;

use super::respond::{Mark, Served};
use super::shared::Shared;
use super::{serve, stream};
use crate::hooks::{EdgeHooks, Session};

/// What joining a fill came to.
pub(crate) enum Joined {
    /// Fetch for everyone.
    Lead(FillLeader),
    /// Answered from the fill (or from what it stored).
    Served(Served),
    /// The origin just failed for the leader: answer this status.
    Failed(StatusCode),
    /// Fetch on your own.
    Alone,
    /// Recently uncacheable (or not shareable): fetch on your own at once.
    Bypass,
}

/// How many times a waiter joins a fill again after its leader went away,
/// before it fetches alone (each round waits at most `fill_wait_timeout`).
const MAX_REJOINS: u32 = 3;

/// Whether this request's own headers keep it from sharing a response
/// (reasons that `concern_request_only`): it may not take over a fill
/// for the others.
fn request_unshareable(session: &Session, opts: &PolicyOptions) -> bool {
    let headers = &session.req.headers;
    headers.contains_key(header::AUTHORIZATION)
        || (!opts.allow_cookie_requests && headers.contains_key(header::COOKIE))
        || cache::policy::request_directives(headers).has("no-store")
}

/// Joins the fill of `key` (or skips it, if not `shareable`): lead it,
/// or be served by it, or by what its leader stored another way (in
/// slices), or go alone. A leader that leaves before the head hands
/// over to a waiter, at most `MAX_REJOINS` times.
pub(crate) async fn join_fill<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    key: CacheKey,
    shareable: bool,
) -> Joined {
    let cache = &shared.cache;
    let mut rejoins = 0;
    loop {
        let join = if shareable {
            cache.fills.join(key)
        } else {
            Join::Bypass
        };
        let waiter = match join {
            Join::Leader(leader) => return Joined::Lead(leader),
            Join::Bypass => return Joined::Bypass,
            Join::Waiter(waiter) => waiter,
        };
        match waiter.wait(&session.req.headers).await {
            // Fetched before a purge: start a fill of our own, and let
            // later requests join that one instead.
            Waited::Reader(reader) if cache.fill_purged(session, key, &reader) => {
                cache.fills.detach(&key, &reader);
                if rejoins >= MAX_REJOINS {
                    return Joined::Alone;
                }
                rejoins += 1;
            }
            Waited::Reader(reader) => {
                shared.fwd.metrics.cache_collapsed.inc();
                let served = stream::serve_fill(shared, session, reader, Mark::MISS, true);
                return Joined::Served(served);
            }
            // The leader's client left before the head: one of us
            // takes over the fetch, the others wait for it.
            Waited::Rejoin
                if rejoins < MAX_REJOINS && !request_unshareable(session, &cache.opts) =>
            {
                rejoins += 1;
            }
            Waited::Failed(status) => return Joined::Failed(status),
            Waited::Alone | Waited::Rejoin => {
                // The leader may have stored the object in slices.
                let mark = Mark::MISS.collapsed();
                return match serve::serve_fresh(shared, session, key, mark).await {
                    Some(served) => {
                        shared.fwd.metrics.cache_collapsed.inc();
                        Joined::Served(served)
                    }
                    None => Joined::Alone,
                };
            }
        }
    }
}
