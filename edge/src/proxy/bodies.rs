//! Bodies of the cache path: one that tees an origin response into the
//! store as it streams to the client, and one that streams a stored object
//! chunk by chunk.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use cache::CacheKey;
use cache::fill::{FillError, FillReader};
use cache::object::ObjectWriter;
use cache::store::{Store, StoreError};
use http_body::{Body, Frame, SizeHint};

use crate::body::{BodyEnd, Tap};
use crate::error::BoxError;

/// Writes an origin body into the store as it streams to the client. The
/// object is committed only when the body ends cleanly; an error or an
/// early drop (client gone, origin failed) abandons it.
#[derive(Debug)]
pub struct Fill(pub ObjectWriter);

impl Tap for Fill {
    fn data(&mut self, data: &Bytes) {
        self.0.write(data);
    }

    fn end(self, end: BodyEnd) {
        if end == BodyEnd::Complete {
            self.0.finish();
        }
    }
}

type ReadFuture =
    Pin<Box<dyn Future<Output = (FillReader, Result<Option<Bytes>, FillError>)> + Send>>;

/// Streams a fill in flight to one client.
pub struct FillBody {
    reader: Option<FillReader>,
    pending: Option<ReadFuture>,
    /// Bytes still to come, when the origin declared a length.
    remaining: Option<u64>,
    done: bool,
}

impl std::fmt::Debug for FillBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FillBody")
            .field("remaining", &self.remaining)
            .field("done", &self.done)
            .finish()
    }
}

impl FillBody {
    pub fn new(reader: FillReader, len: Option<u64>) -> Self {
        FillBody {
            reader: Some(reader),
            pending: None,
            remaining: len,
            done: false,
        }
    }
}

impl Body for FillBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.pending.is_none() {
            let Some(mut reader) = this.reader.take() else {
                return Poll::Ready(None);
            };
            this.pending = Some(Box::pin(async move {
                let next = reader.next().await;
                (reader, next)
            }));
        }
        let Some(pending) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let (reader, next) = ready!(pending.as_mut().poll(cx));
        this.pending = None;
        this.reader = Some(reader);
        match next {
            Ok(Some(bytes)) => {
                if let Some(remaining) = this.remaining.as_mut() {
                    *remaining = remaining.saturating_sub(bytes.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Ok(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Err(err) => {
                this.done = true;
                Poll::Ready(Some(Err(Box::new(err))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

type ChunkFuture = Pin<Box<dyn Future<Output = Result<Option<Bytes>, StoreError>> + Send>>;

/// Why a stored body could not be streamed to the end.
#[derive(Debug, thiserror::Error)]
pub enum CachedBodyError {
    #[error("chunk {0} of a cached object is gone")]
    MissingChunk(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Streams a chunked object from the store. Chunks are read one at a time,
/// each only when the client has taken the previous one.
pub struct CachedBody {
    store: Store,
    key: CacheKey,
    object_id: u64,
    next: u64,
    count: u64,
    remaining: u64,
    first: Option<Bytes>,
    pending: Option<ChunkFuture>,
}

impl std::fmt::Debug for CachedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedBody")
            .field("key", &self.key)
            .field("next", &self.next)
            .field("count", &self.count)
            .finish()
    }
}

impl CachedBody {
    /// `first` is chunk 0, already read (so that a missing first chunk can
    /// still turn into a miss before any byte is sent).
    pub fn new(
        store: Store,
        key: CacheKey,
        object_id: u64,
        count: u64,
        len: u64,
        first: Bytes,
    ) -> Self {
        CachedBody {
            store,
            key,
            object_id,
            next: 1,
            count,
            remaining: len,
            first: Some(first),
            pending: None,
        }
    }
}

impl Body for CachedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            this.remaining = this.remaining.saturating_sub(first.len() as u64);
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if this.next >= this.count {
            return Poll::Ready(None);
        }
        let index = this.next;
        let pending = this.pending.get_or_insert_with(|| {
            let store = this.store.clone();
            let key = this.key;
            let object_id = this.object_id;
            Box::pin(async move { store.get_chunk(&key, object_id, index).await })
        });
        let result = ready!(pending.as_mut().poll(cx));
        this.pending = None;
        this.next += 1;
        match result {
            Ok(Some(chunk)) => {
                this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Ok(None) => {
                // The client gets a cut-off body this once; the object is
                // dropped so that the next request refetches it whole.
                this.store.remove(&this.key);
                Poll::Ready(Some(Err(Box::new(CachedBodyError::MissingChunk(index)))))
            }
            Err(err) => Poll::Ready(Some(Err(Box::new(CachedBodyError::Store(err))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.next >= self.count
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
