//! Response and request bodies as they stream through the proxy.
//!
//! Bodies are never collected: each wrapper here passes frames through one at
//! a time, adding a read deadline ([`ReadTimeout`]) or watching them go by
//! ([`Tapped`]).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use origin_shield::health::ActiveGuard;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// Any error a body or a request can end with (defined here, the leaf,
/// so that `error.rs` can build bodies without a cycle).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the proxy produces.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A client's request body, whichever listener it came on: hyper's for
/// HTTP/1.1 and HTTP/2, a boxed stream for HTTP/3 (fed from QUIC by
/// `server::h3`), so that the pipeline has one request type for all three.
#[derive(Debug)]
pub enum ClientBody {
    Hyper(hyper::body::Incoming),
    Boxed(ProxyBodyDebug),
}

/// A boxed body with a `Debug` that says so (the box has none).
pub struct ProxyBodyDebug(pub ProxyBody);

impl std::fmt::Debug for ProxyBodyDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyBody")
    }
}

impl ClientBody {
    /// A streamed body from another source than hyper.
    pub fn streamed(body: ProxyBody) -> Self {
        ClientBody::Boxed(ProxyBodyDebug(body))
    }
}

impl From<hyper::body::Incoming> for ClientBody {
    fn from(body: hyper::body::Incoming) -> Self {
        ClientBody::Hyper(body)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Both are Unpin (hyper's body and a box).
        match self.get_mut() {
            ClientBody::Hyper(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            ClientBody::Boxed(b) => Pin::new(&mut b.0).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::Boxed(b) => b.0.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::Boxed(b) => b.0.size_hint(),
        }
    }
}

/// A peer stopped sending body bytes for longer than the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub struct BodyReadTimeout(pub Duration);

pin_project! {
    /// Fails the stream when no frame arrives within `timeout` of the last
    /// one, so a stalled peer cannot hold a response open forever.
    pub struct ReadTimeout<B> {
        #[pin]
        inner: B,
        timeout: Duration,
        deadline: Pin<Box<Sleep>>,
        // Counts the exchange as in flight on its peer until the body is
        // done with (least-connections and the concurrency cap see it).
        in_flight: Option<ActiveGuard>,
        // The exchange's trace span, which ends with the body.
        span: Option<crate::observe::trace::UpstreamSpan>,
    }
}

impl<B> ReadTimeout<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        ReadTimeout {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            in_flight: None,
            span: None,
        }
    }

    /// Keeps `guard` (a request in flight on a peer) until the body drops.
    pub fn holding(mut self, guard: Option<ActiveGuard>) -> Self {
        self.in_flight = guard;
        self
    }

    /// Ends `span` (the exchange's, `[tracing]`) when the body drops.
    pub fn traced(mut self, span: Option<crate::observe::trace::UpstreamSpan>) -> Self {
        self.span = span;
        self
    }
}

impl<B> Body for ReadTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                // Read timeout: monotonic, not cache semantics.
                this.deadline.as_mut().reset(Instant::now() + *this.timeout);
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(BodyReadTimeout(*this.timeout)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a body stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Every byte was handed to the connection.
    Complete,
    /// The source failed mid-stream (the client sees a truncated response).
    Error,
    /// The consumer dropped the body before its end (client went away).
    Aborted,
}

impl BodyEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            BodyEnd::Complete => "complete",
            BodyEnd::Error => "error",
            BodyEnd::Aborted => "aborted",
        }
    }
}

/// Watches a body stream go by without changing it.
pub trait Tap {
    /// A data frame passed to the consumer.
    fn data(&mut self, data: &Bytes) {
        let _ = data;
    }

    /// The stream ended; called exactly once, at its last frame, on error,
    /// or when the body is dropped early.
    fn end(self, end: BodyEnd);
}

pin_project! {
    /// A body with a [`Tap`] on it. The one place that knows how a stream
    /// can end: a server may stop polling as soon as `is_end_stream` says
    /// so, a source may fail, a consumer may drop the body half-read.
    pub struct Tapped<B, T>
    where
        B: Body,
        T: Tap,
    {
        #[pin]
        inner: B,
        tap: Option<T>,
    }

    impl<B, T> PinnedDrop for Tapped<B, T>
    where
        B: Body,
        T: Tap,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(tap) = this.tap.take() {
                let end = if this.inner.is_end_stream() { BodyEnd::Complete } else { BodyEnd::Aborted };
                tap.end(end);
            }
        }
    }
}

impl<B: Body, T: Tap> Tapped<B, T> {
    pub fn new(inner: B, tap: T) -> Self {
        Tapped {
            inner,
            tap: Some(tap),
        }
    }
}

impl<B, T> Body for Tapped<B, T>
where
    B: Body<Data = Bytes>,
    T: Tap,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let end = match &frame {
            Some(Ok(f)) => {
                if let (Some(data), Some(tap)) = (f.data_ref(), this.tap.as_mut()) {
                    tap.data(data);
                }
                this.inner.is_end_stream().then_some(BodyEnd::Complete)
            }
            Some(Err(_)) => Some(BodyEnd::Error),
            None => Some(BodyEnd::Complete),
        };
        if let Some(end) = end
            && let Some(tap) = this.tap.take()
        {
            tap.end(end);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Called once when an observed body ends, with the data bytes passed on.
pub type OnEnd = Box<dyn FnOnce(BodyEnd, u64) + Send>;

/// Counts data bytes and reports how the stream ended.
pub struct Observe {
    bytes: u64,
    on_end: OnEnd,
}

impl std::fmt::Debug for Observe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observe")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Tap for Observe {
    fn data(&mut self, data: &Bytes) {
        self.bytes += data.len() as u64;
    }

    fn end(self, end: BodyEnd) {
        (self.on_end)(end, self.bytes);
    }
}

/// A body whose end (and byte count) is reported to `on_end`.
pub type Observed<B> = Tapped<B, Observe>;

/// Wraps `inner` so that `on_end` learns how it ended.
pub fn observed<B: Body>(inner: B, on_end: OnEnd) -> Observed<B> {
    Tapped::new(inner, Observe { bytes: 0, on_end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Option<(BodyEnd, u64)>>>;

    fn recorder() -> (Seen, OnEnd) {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        (
            seen,
            Box::new(move |end, n| *s.lock().unwrap() = Some((end, n))),
        )
    }

    #[tokio::test]
    async fn observed_reports_complete_with_bytes() {
        let (seen, on_end) = recorder();
        let body = observed(Full::new(Bytes::from_static(b"hello")), on_end);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(*seen.lock().unwrap(), Some((BodyEnd::Complete, 5)));
    }

    /// A body fed by a channel: pending until something is sent.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn observed_reports_abort_on_early_drop() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let (seen, on_end) = recorder();
        let mut body = observed(ChannelBody(rx), on_end);
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref().unwrap().len(), 3);
        drop(body);
        assert_eq!(*seen.lock().unwrap(), Some((BodyEnd::Aborted, 3)));
    }

    #[tokio::test(start_paused = true)]
    async fn read_timeout_fails_a_stalled_body() {
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        let body = ReadTimeout::new(ChannelBody(rx), Duration::from_secs(3));
        let err = body.collect().await.unwrap_err();
        assert!(err.is::<BodyReadTimeout>(), "{err}");
    }
}
