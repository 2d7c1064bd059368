//! Large objects in slices (`cache::slice`): once an object's head is
//! stored as sliced, every response for it, whole or ranged, is a stream of
//! slices, each read from the store or fetched with a Range request (one
//! fetch per slice, shared through `cache::fill`) when it is first needed.
//! Also the tap that cuts a whole response too large to store in one piece
//! into slices as it streams, and [`feed`], which pushes an origin body
//! into a fill. (The range miss that first stores a sliced head is in
//! `sliced_miss.rs`.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use cache::fill::{FillFeeder, FillLeader, Join, Waited};
use cache::meta::ObjectMeta;
use cache::object::{self, Found, ObjectWriter};
use cache::range::{ByteRange, RangeAnswer};
use cache::store::Store;
use cache::{CacheKey, slice};
use http::StatusCode;
use http::header::{self, HeaderMap};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::bodies::{FillBody, Ranged};
use super::forward::{Fetched, background_session};
use super::shared::Shared;
use super::stored;
use crate::body::{self, BodyEnd, BoxError, ProxyBody, ReadTimeout, Tap};
use crate::error::{ErrorSource, ProxyError};
use crate::hooks::{EdgeHooks, Session};

/// Why a slice could not be streamed.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    /// The origin no longer serves the representation the stored slices
    /// belong to (new ETag or length, or no ranges any more).
    #[error("the origin's object changed while it was being served in slices")]
    Changed,
    #[error("fetching a slice failed: {0}")]
    Origin(#[from] ProxyError),
}

/// Pushes an origin body into a fill. Runs on its own task so the fill
/// completes (and the object is stored) even if every client leaves; stops
/// early only when nobody wants the bytes any more.
///
/// `expected`: the length the body must have to be stored, when its framing
/// does not say it (a chunked 206 is a slice only if it brings the whole
/// range; hyper checks a `Content-Length` itself).
pub(crate) async fn feed(
    mut feeder: FillFeeder,
    mut body: ReadTimeout<Incoming>,
    expected: Option<u64>,
) {
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    got += data.len() as u64;
                    feeder.push(data);
                }
            }
            Err(err) => {
                warn!(error = %err, "origin body failed; fill abandoned");
                return;
            }
        }
        if !feeder.is_wanted() {
            debug!("fill no longer wanted; stopped");
            return;
        }
    }
    if expected.is_some_and(|expected| expected != got) {
        warn!(
            got,
            ?expected,
            "origin body of the wrong length; fill abandoned"
        );
        return;
    }
    feeder.finish();
}

/// Whether the slices this request would read are all stored, so that
/// `only-if-cached` (RFC 9111 §5.2.1.7) can be answered without the
/// origin. Always true for objects not kept in slices and for HEAD.
/// (A conditional request that would get a 304 is counted as needing
/// its slices too: a 504 is always a correct answer to it.)
pub(crate) async fn slices_cached(
    store: &Store,
    session: &Session,
    key: CacheKey,
    found: &Found,
) -> bool {
    let cache::meta::BodyLayout::Sliced { len, slice_size } = found.meta.body else {
        return true;
    };
    if session.req.method == http::Method::HEAD || len == 0 {
        return true;
    }
    let ranges = match cache::range::evaluate(&session.req.headers, &found.meta.headers, len) {
        RangeAnswer::Full => vec![ByteRange {
            start: 0,
            end: len - 1,
        }],
        RangeAnswer::Unsatisfiable => return true,
        RangeAnswer::Partial(ranges) => ranges,
    };
    let slice_size = slice_size.max(1);
    for wanted in ranges {
        for index in wanted.start / slice_size..=wanted.end / slice_size {
            let Some(range) = slice::slice_range(index, slice_size, len) else {
                return false;
            };
            let stored = object::lookup(store, &key.slice(slice_size, index), &session.req.headers)
                .await
                .ok()
                .flatten();
            let Some(stored) = stored else {
                return false;
            };
            if stored.meta.body.len() != range.len()
                || !slice::is_slice_of(
                    &found.meta.headers,
                    len,
                    stored.meta.status,
                    &stored.meta.headers,
                    range,
                )
            {
                return false;
            }
        }
    }
    true
}

/// The bytes `start..start + len` of a sliced object, read slice by
/// slice as the client takes them.
pub(crate) fn sliced_body<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &Session,
    found: &Found,
    start: u64,
    len: u64,
) -> Option<ProxyBody> {
    let cache::meta::BodyLayout::Sliced { slice_size, .. } = found.meta.body else {
        return None;
    };
    let primary = session.cache_key?;
    let source = SliceSource {
        shared: shared.clone(),
        session: background_session(session, primary),
        ctx: shared.fwd.hooks.new_ctx(),
        primary,
        object_key: found.object_key,
        whole: found.meta.clone(),
        slice_size,
    };
    Some(body::boxed(SlicedBody {
        source: Some(source),
        opening: None,
        current: None,
        owed: 0,
        pos: start,
        end: start + len,
        remaining: len,
    }))
}

/// The meta a slice is stored with: the 206 head as received, reused under
/// the whole object's policy (the whole object's head decides freshness;
/// a slice only has to match its validator).
pub(crate) fn slice_meta(whole: &ObjectMeta, part_headers: HeaderMap) -> ObjectMeta {
    ObjectMeta {
        status: StatusCode::PARTIAL_CONTENT,
        headers: part_headers,
        tags: Vec::new(),
        ..whole.clone()
    }
}

/// Everything needed to produce slices of one object after the request's
/// own phases are over: a copy of the session for the upstream phases, and
/// the whole object's head that each slice must match.
struct SliceSource<H: EdgeHooks> {
    shared: Arc<Shared<H>>,
    session: Session,
    ctx: H::Ctx,
    primary: CacheKey,
    object_key: CacheKey,
    whole: Arc<ObjectMeta>,
    slice_size: u64,
}

impl<H: EdgeHooks> SliceSource<H> {
    /// The bytes `start..end`, which lie in one slice: from the store if
    /// the slice is there, else from the fill that fetches it.
    async fn open(&mut self, start: u64, end: u64) -> Result<ProxyBody, SliceError> {
        let total = self.whole.body.len();
        let index = start / self.slice_size;
        let range = slice::slice_range(index, self.slice_size, total).ok_or(SliceError::Changed)?;
        let (skip, take) = (start - range.start, end - start);
        let key = self.primary.slice(self.slice_size, index);
        let fills = self.shared.cache.fills.clone();
        // Bounded: each round either answers or follows a fill that ended.
        for _ in 0..3 {
            if let Some(body) = self.stored(key, range, skip, take).await {
                return Ok(body);
            }
            let waiter = match fills.join(key) {
                Join::Leader(leader) => {
                    // Fetched on its own task: the slice is stored even if
                    // this client stops reading (or leaves) meanwhile.
                    self.spawn_fill(leader, key, range);
                    match fills.waiter(key) {
                        Some(waiter) => waiter,
                        // Already done: the store has it.
                        None => continue,
                    }
                }
                Join::Waiter(waiter) => waiter,
                Join::Bypass => break,
            };
            // Not in the store: these bytes come from the origin now.
            self.session
                .origin_fetched
                .store(true, std::sync::atomic::Ordering::Relaxed);
            match waiter.wait(&self.session.req.headers).await {
                Waited::Reader(reader) => {
                    let head = reader.head();
                    if self.matches(head.meta.status, &head.meta.headers, range) {
                        let body = FillBody::new(reader, Some(range.len()));
                        return Ok(body::boxed(Ranged::new(body, skip, take)));
                    }
                    break;
                }
                Waited::Failed(status) => return Err(ProxyError::CollapsedFailure(status).into()),
                Waited::Rejoin => {}
                Waited::Alone => break,
            }
        }
        // Not shareable (or not settling): this client's own fetch.
        let fetched = self.fetch(range).await?;
        Ok(body::boxed(Ranged::new(fetched.body, skip, take)))
    }

    /// The slice from the store, if it is there whole and of this version.
    // `&mut self` throughout: a shared borrow held across an await would
    // need the hooks' context to be `Sync`.
    async fn stored(
        &mut self,
        key: CacheKey,
        range: ByteRange,
        skip: u64,
        take: u64,
    ) -> Option<ProxyBody> {
        let store = &self.shared.cache.store;
        let found = object::lookup(store, &key, &self.session.req.headers)
            .await
            .ok()??;
        if !self.matches(found.meta.status, &found.meta.headers, range)
            || found.meta.body.len() != range.len()
        {
            // Another version's slice: fetched again (if the origin has
            // moved on, that fetch fails and drops our head).
            return None;
        }
        let body = stored::stored_range(store, &found, skip, take).await;
        if body.is_none() {
            // Its chunks are gone.
            store.remove(&found.object_key);
        }
        body
    }

    /// Fetches slice `range` for everyone who wants it and stores it, on a
    /// task of its own.
    fn spawn_fill(&self, leader: FillLeader, key: CacheKey, range: ByteRange) {
        let mut source = SliceSource {
            shared: self.shared.clone(),
            session: background_session(&self.session, self.primary),
            ctx: self.shared.fwd.hooks.new_ctx(),
            primary: self.primary,
            object_key: self.object_key,
            whole: self.whole.clone(),
            slice_size: self.slice_size,
        };
        tokio::spawn(async move {
            let fetched = match source.fetch(range).await {
                Ok(fetched) => fetched,
                Err(SliceError::Origin(err)) if err.source_side() == ErrorSource::Upstream => {
                    return leader.fail(err.status());
                }
                Err(_) => return leader.release(),
            };
            // Each slice exchange is judged on its own: a slice fetched
            // with one client's credentials, or marked private, is that
            // client's alone.
            let whole_headers = slice::whole_head(&fetched.parts.headers, source.whole.body.len());
            let cache = &source.shared.cache;
            if let Err(reason) = cache.object_meta(
                &source.session,
                StatusCode::OK,
                &whole_headers,
                fetched.exchange,
            ) {
                debug!(reason = reason.as_str(), "slice not storable; not shared");
                return leader.release();
            }
            let writer = ObjectWriter::new(
                cache.store.clone(),
                key,
                &source.session.req.headers,
                slice_meta(&source.whole, fetched.parts.headers),
                source.slice_size,
            );
            feed(leader.publish(writer), fetched.body, Some(range.len())).await;
        });
    }

    /// Asks the origin for slice `range`. Anything but that slice of the
    /// same version means the object changed: its head is dropped so that
    /// the next request fetches it anew.
    async fn fetch(&mut self, range: ByteRange) -> Result<Fetched, SliceError> {
        self.session
            .origin_fetched
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let index = range.start / self.slice_size;
        let ask = [(header::RANGE, slice::range_request(index, self.slice_size))];
        let fetched = self
            .shared
            .fwd
            .forward(&mut self.session, body::empty(), &mut self.ctx, &ask)
            .await?;
        if !self.matches(fetched.parts.status, &fetched.parts.headers, range) {
            warn!(
                status = fetched.parts.status.as_u16(),
                "origin object changed under its slices; dropping the stored head"
            );
            self.drop_head().await;
            return Err(SliceError::Changed);
        }
        Ok(fetched)
    }

    /// Removes the object's head, unless it is already another version's
    /// (a request that started on this version must not drop the next).
    async fn drop_head(&mut self) {
        let store = &self.shared.cache.store;
        let Ok(Some(found)) = object::lookup(store, &self.primary, &self.session.req.headers).await
        else {
            return;
        };
        if slice::validator(&found.meta.headers) == slice::validator(&self.whole.headers) {
            store.remove(&found.object_key);
        }
    }

    fn matches(&self, status: StatusCode, headers: &HeaderMap, range: ByteRange) -> bool {
        slice::is_slice_of(
            &self.whole.headers,
            self.whole.body.len(),
            status,
            headers,
            range,
        )
    }
}

type Opening<H> =
    Pin<Box<dyn Future<Output = (SliceSource<H>, Result<ProxyBody, SliceError>)> + Send>>;

/// Streams `pos..end` of a sliced object, opening one slice at a time when
/// the client has taken the previous one.
struct SlicedBody<H: EdgeHooks> {
    source: Option<SliceSource<H>>,
    opening: Option<Opening<H>>,
    current: Option<ProxyBody>,
    /// Bytes the current slice still owes: a slice that ends short must
    /// fail the response, not let the next slice's bytes slide into its
    /// place.
    owed: u64,
    /// The first byte not yet opened.
    pos: u64,
    end: u64,
    remaining: u64,
}

/// A slice delivered fewer bytes than its range.
#[derive(Debug, thiserror::Error)]
#[error("a slice ended {0} bytes short")]
struct ShortSlice(u64);

// Nothing in it is pinned structurally: the source only moves between
// polls, and the bodies and futures it polls are boxed.
impl<H: EdgeHooks> Unpin for SlicedBody<H> {}

impl<H: EdgeHooks> Body for SlicedBody<H> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(current) = this.current.as_mut() {
                match ready!(Pin::new(current).poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            let len = data.len() as u64;
                            this.remaining = this.remaining.saturating_sub(len);
                            this.owed = this.owed.saturating_sub(len);
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Some(Err(err)) => {
                        this.current = None;
                        this.pos = this.end;
                        return Poll::Ready(Some(Err(err)));
                    }
                    None if this.owed > 0 => {
                        this.current = None;
                        this.pos = this.end;
                        warn!(short = this.owed, "sliced response cut short");
                        return Poll::Ready(Some(Err(Box::new(ShortSlice(this.owed)))));
                    }
                    None => this.current = None,
                }
                continue;
            }
            if this.opening.is_none() {
                if this.pos >= this.end {
                    return Poll::Ready(None);
                }
                let Some(mut source) = this.source.take() else {
                    return Poll::Ready(None);
                };
                let start = this.pos;
                let size = source.slice_size.max(1);
                let slice_end = (start / size).saturating_add(1).saturating_mul(size);
                let end = slice_end.min(this.end);
                this.pos = end;
                this.owed = end - start;
                this.opening = Some(Box::pin(async move {
                    let opened = source.open(start, end).await;
                    (source, opened)
                }));
            }
            let Some(opening) = this.opening.as_mut() else {
                return Poll::Ready(None);
            };
            let (source, opened) = ready!(opening.as_mut().poll(cx));
            this.opening = None;
            this.source = Some(source);
            match opened {
                Ok(body) => this.current = Some(body),
                Err(err) => {
                    warn!(error = %err, "sliced response cut short");
                    this.pos = this.end;
                    return Poll::Ready(Some(Err(Box::new(err))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Cuts a whole response that is too large to store in one piece into
/// slices as it streams to the client: each slice is stored once all its
/// bytes have passed (nothing of a slice the stream did not finish).
pub(crate) struct SliceTap {
    pub store: cache::store::Store,
    pub primary: CacheKey,
    pub request: HeaderMap,
    pub whole: ObjectMeta,
    pub slice_size: u64,
    /// The slice being written and the bytes it still needs.
    pub current: Option<(ObjectWriter, u64)>,
    pub next_index: u64,
}

impl SliceTap {
    fn start_next(&mut self) -> Option<&mut (ObjectWriter, u64)> {
        let total = self.whole.body.len();
        let range = slice::slice_range(self.next_index, self.slice_size, total)?;
        let headers = slice::part_head(&self.whole.headers, range, total);
        let writer = ObjectWriter::new(
            self.store.clone(),
            self.primary.slice(self.slice_size, self.next_index),
            &self.request,
            slice_meta(&self.whole, headers),
            self.slice_size,
        );
        self.next_index += 1;
        Some(self.current.insert((writer, range.len())))
    }
}

impl Tap for SliceTap {
    fn data(&mut self, data: &Bytes) {
        let mut data = &data[..];
        while !data.is_empty() {
            let current = match self.current.as_mut() {
                Some(current) => current,
                None => match self.start_next() {
                    Some(current) => current,
                    // More bytes than declared: nothing more is stored.
                    None => return,
                },
            };
            let (now, rest) = data.split_at(
                data.len()
                    .min(usize::try_from(current.1).unwrap_or(usize::MAX)),
            );
            current.0.write(now);
            current.1 -= now.len() as u64;
            data = rest;
            if current.1 == 0
                && let Some((writer, _)) = self.current.take()
            {
                writer.finish();
            }
        }
    }

    fn end(self, _end: BodyEnd) {
        // Complete slices were stored as they completed; a slice still
        // open here did not fully arrive and is dropped.
    }
}

/// The head of a sliced object: `whole` with its body kept in slices.
pub(crate) fn sliced_meta(mut whole: ObjectMeta, total: u64, slice_size: u64) -> ObjectMeta {
    whole.body = cache::meta::BodyLayout::Sliced {
        len: total,
        slice_size,
    };
    whole
}
