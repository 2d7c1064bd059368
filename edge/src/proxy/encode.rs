//! Phase 7's transform (`transform/`) applied to this request's response:
//! a stored object is served in the client's encoding from the store when
//! that encoding was made before, else compressed as it streams and
//! stored; a response from the origin (a miss, a pass) is compressed as it
//! streams, and when it is an object being filled, its encoding is stored
//! beside it.

use std::sync::Arc;

use cache::meta::BodyLayout;
use cache::object::Found;
use http::{Method, response};

use super::respond::{self, BodyOf};
use super::shared::Shared;
use super::stored;
use crate::body::{self, ProxyBody};
use crate::hooks::{EdgeHooks, Session};
use crate::transform::{self, Plan, Transcoded};

/// The plan for this request's response with head `parts` and a body of
/// `len` bytes (when known).
pub(crate) fn plan_for<H>(
    shared: &Shared<H>,
    session: &Session,
    parts: &response::Parts,
    len: Option<u64>,
) -> Plan {
    let settings = &shared.transform.settings;
    let enabled = settings.enabled && session.policy().compression.unwrap_or(true);
    transform::plan(
        settings,
        enabled,
        &session.req.headers,
        transform::Response {
            status: parts.status,
            headers: &parts.headers,
            len,
        },
    )
}

/// For a stored object about to be served whole with head `parts`: the
/// plan, with the head edited for it, and the stored encoding when the
/// plan needs one that was made before.
pub(crate) async fn plan_stored<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &Session,
    found: &Found,
    parts: &mut response::Parts,
) -> (Plan, Option<Found>) {
    if matches!(found.meta.body, BodyLayout::Sliced { .. }) {
        return (Plan::UNTOUCHED, None);
    }
    let plan = plan_for(shared, session, parts, Some(found.meta.body.len()));
    let encoded = match plan {
        Plan::Encode(encoding) => {
            transform::stored_encoding(&shared.cache.store, found, encoding).await
        }
        _ => None,
    };
    let len = encoded.as_ref().map(|e| e.meta.body.len());
    transform::edit_head(plan, &mut parts.headers, len);
    (plan, encoded)
}

/// The body of the stored encoding `encoded` (from [`plan_stored`]),
/// if its chunks are still there; else `None`, and the head no longer
/// claims its length (the identity body is compressed again instead).
pub(crate) async fn encoded_body<H>(
    shared: &Shared<H>,
    plan: Plan,
    encoded: Option<Found>,
    parts: &mut response::Parts,
) -> Option<ProxyBody> {
    let (Plan::Encode(encoding), Some(encoded)) = (plan, encoded) else {
        return None;
    };
    let len = encoded.meta.body.len();
    if let Some(body) = stored::stored_range(&shared.cache.store, &encoded, 0, len).await {
        shared.transform.count_encoded_hit(encoding);
        return Some(body);
    }
    parts.headers.remove(http::header::CONTENT_LENGTH);
    None
}

/// The identity body of the stored object `found` served under `plan`:
/// transcoded, and when compressed, stored as the object's encoding for
/// the hits after this one.
pub(crate) fn transcode_stored<H>(
    shared: &Shared<H>,
    found: &Found,
    plan: Plan,
    identity: ProxyBody,
) -> ProxyBody {
    match plan {
        Plan::AsIs { .. } => identity,
        Plan::Encode(encoding) => {
            let writer = writer(shared, &found.object_key, &found.meta, encoding);
            body::boxed(Transcoded::encode(
                &shared.transform,
                identity,
                encoding,
                writer,
            ))
        }
        Plan::Decode(encoding) => {
            body::boxed(Transcoded::decode(&shared.transform, identity, encoding))
        }
    }
}

/// A response that was not read from the store (a miss, a pass), about
/// to be sent: transformed as it streams. An object being filled gets its
/// encoding stored too.
pub(crate) fn streamed<H>(
    shared: &Shared<H>,
    session: &Session,
    parts: &mut response::Parts,
    body: ProxyBody,
    of: BodyOf,
) -> ProxyBody {
    if matches!(of, BodyOf::Transformed) {
        return body;
    }
    let plan = plan_for(
        shared,
        session,
        parts,
        respond::content_length(&parts.headers),
    );
    transform::edit_head(plan, &mut parts.headers, None);
    if session.req.method == Method::HEAD {
        return body;
    }
    match plan {
        Plan::AsIs { .. } => body,
        Plan::Encode(encoding) => {
            let writer = match &of {
                BodyOf::Filling(head) => writer(shared, &head.object_key, &head.meta, encoding),
                BodyOf::Other | BodyOf::Transformed => None,
            };
            body::boxed(Transcoded::encode(
                &shared.transform,
                body,
                encoding,
                writer,
            ))
        }
        Plan::Decode(encoding) => {
            body::boxed(Transcoded::decode(&shared.transform, body, encoding))
        }
    }
}

/// Stores `encoding` of the body of the object `meta` under `object_key`.
fn writer<H>(
    shared: &Shared<H>,
    object_key: &cache::CacheKey,
    meta: &cache::meta::ObjectMeta,
    encoding: cache::encoding::Encoding,
) -> Option<cache::object::ObjectWriter> {
    let max_size = shared.cache.max_object_size;
    transform::encoding_writer(&shared.cache.store, object_key, meta, encoding, max_size)
}
