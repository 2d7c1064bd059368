//! Bytes of objects stored whole: inline bodies as shared views, chunked
//! ones read chunk by chunk from the store, only the chunks a range
//! touches.

use cache::meta::BodyLayout;
use cache::object::Found;
use cache::store::Store;
use tracing::warn;

use super::bodies::{CachedBody, Ranged};
use crate::body::{self, ProxyBody};

/// The bytes `start..start + len` of an object stored whole (inline or in
/// chunks), or `None` if the chunk they start in is gone.
pub(crate) async fn stored_range(
    store: &Store,
    found: &Found,
    start: u64,
    len: u64,
) -> Option<ProxyBody> {
    match &found.meta.body {
        // Read slice by slice instead (`slices.rs`).
        BodyLayout::Sliced { .. } => None,
        BodyLayout::Inline(bytes) => {
            let from = usize::try_from(start).ok()?;
            let to = usize::try_from(start + len).ok()?;
            // A shared view of the stored bytes, not a copy per hit.
            (from <= to && to <= bytes.len()).then(|| body::full(bytes.slice(from..to)))
        }
        BodyLayout::Chunked {
            object_id,
            len: total,
            chunk_size,
        } => {
            if len == 0 {
                return Some(body::empty());
            }
            let chunk_size = u64::from(*chunk_size).max(1);
            let index = start / chunk_size;
            let first = match store.get_chunk(&found.object_key, *object_id, index).await {
                Ok(Some(first)) => first,
                Ok(None) => return None,
                Err(err) => {
                    warn!(error = %err, "cache read failed");
                    return None;
                }
            };
            let from_chunk = index * chunk_size;
            let chunks = CachedBody::new(
                store.clone(),
                found.object_key,
                *object_id,
                (index, found.meta.body.chunk_count()),
                total - from_chunk,
                first,
            );
            Some(if start == from_chunk && start + len == *total {
                body::boxed(chunks)
            } else {
                body::boxed(Ranged::new(chunks, start - from_chunk, len))
            })
        }
    }
}
