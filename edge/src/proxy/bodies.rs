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

pin_project_lite::pin_project! {
    /// The bytes `skip..skip + take` of a body: a byte range of a stored or
    /// arriving object.
    pub struct Ranged<B> {
        #[pin]
        inner: B,
        skip: u64,
        take: u64,
    }
}

impl<B> Ranged<B> {
    pub fn new(inner: B, skip: u64, take: u64) -> Self {
        Ranged { inner, skip, take }
    }
}

impl<B> Body for Ranged<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if *this.take == 0 {
                return Poll::Ready(None);
            }
            let Some(frame) = ready!(this.inner.as_mut().poll_frame(cx)) else {
                return Poll::Ready(None);
            };
            let Ok(mut data) = frame?.into_data() else {
                continue;
            };
            let len = data.len() as u64;
            if *this.skip >= len {
                *this.skip -= len;
                continue;
            }
            let from = usize::try_from(*this.skip).unwrap_or(usize::MAX);
            *this.skip = 0;
            data = data.slice(from..);
            if data.len() as u64 > *this.take {
                data.truncate(usize::try_from(*this.take).unwrap_or(usize::MAX));
            }
            *this.take -= data.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.take == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.take)
    }
}

/// Bodies sent one after the other (the parts of a multipart response).
pub struct Chain {
    parts: std::collections::VecDeque<crate::body::ProxyBody>,
    remaining: u64,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl Chain {
    /// `len` is the total length, known in advance.
    pub fn new(parts: Vec<crate::body::ProxyBody>, len: u64) -> Self {
        Chain {
            parts: parts.into(),
            remaining: len,
        }
    }
}

impl Body for Chain {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        while let Some(part) = this.parts.front_mut() {
            match ready!(Pin::new(part).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.remaining = this.remaining.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => {
                    this.parts.pop_front();
                }
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
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
    /// Streams chunks `first_index..count`; `first` is chunk `first_index`,
    /// already read (so that a missing chunk can still turn into a miss
    /// before any byte is sent). `remaining` is the bytes from there on.
    pub fn new(
        store: Store,
        key: CacheKey,
        object_id: u64,
        (first_index, count): (u64, u64),
        remaining: u64,
        first: Bytes,
    ) -> Self {
        CachedBody {
            store,
            key,
            object_id,
            next: first_index + 1,
            count,
            remaining,
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
