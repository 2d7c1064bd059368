//! Closing connections that have gone quiet, and clients that stopped
//! reading.
//!
//! hyper has no idle timeout for HTTP/2, none while hyper-util sniffs the
//! protocol of a new connection, and none for a client that stops reading a
//! response. [`IdleIo`] wraps the socket and enforces:
//!
//! - **idle**: no request in flight for `idle_timeout` since the last one
//!   ended (or, before the first request, for `first_request_timeout` since
//!   the connection opened). Bytes alone do not count as activity, so HTTP/2
//!   PINGs or a trickle of bytes that never completes a request cannot keep a
//!   connection slot forever. When the deadline passes, reads report end of
//!   stream and hyper closes the connection.
//! - **send**: a write that cannot make progress for `send_timeout` (the
//!   client's receive window stays shut) fails the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Request activity of one connection, shared by its requests and its IO.
#[derive(Debug)]
pub struct ConnActivity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the connection last became idle;
    /// `u64::MAX` until the first request has ended.
    idle_since_ms: AtomicU64,
}

impl ConnActivity {
    pub fn new() -> Arc<Self> {
        Arc::new(ConnActivity {
            // Connection timeout: monotonic, not cache semantics.
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(u64::MAX),
        })
    }

    /// Marks a request as started; the returned guard ends it when dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestActivity {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestActivity(self.clone())
    }

    /// When the idle deadline falls, or `None` while a request is in
    /// flight: for a connection that has no [`IdleIo`] (HTTP/3).
    pub(crate) fn idle_deadline(&self, idle: Duration, first_request: Duration) -> Option<Instant> {
        self.deadline(idle, first_request)
    }

    /// When the idle deadline falls, or `None` while a request is in flight.
    fn deadline(&self, idle: Duration, first_request: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.idle_since_ms.load(Ordering::Acquire) {
            u64::MAX => Some(self.opened + first_request),
            ms => Some(self.opened + Duration::from_millis(ms) + idle),
        }
    }
}

/// A request in flight on a connection; dropping it ends the request.
#[derive(Debug)]
pub struct RequestActivity(Arc<ConnActivity>);

impl Drop for RequestActivity {
    fn drop(&mut self) {
        let conn = &self.0;
        let now_ms = u64::try_from(conn.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        conn.idle_since_ms.store(now_ms, Ordering::Release);
        conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Timeouts enforced by [`IdleIo`].
#[derive(Debug, Clone, Copy)]
pub struct IoTimeouts {
    pub idle: Duration,
    pub first_request: Duration,
    pub send: Duration,
}

pin_project! {
    pub struct IdleIo<T> {
        #[pin]
        inner: T,
        timeouts: IoTimeouts,
        activity: Arc<ConnActivity>,
        idle_timer: Pin<Box<Sleep>>,
        send_timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, timeouts: IoTimeouts, activity: Arc<ConnActivity>) -> Self {
        // Connection timeout: monotonic, not cache semantics.
        let first = Instant::now() + timeouts.first_request;
        IdleIo {
            inner,
            timeouts,
            activity,
            idle_timer: Box::pin(tokio::time::sleep_until(first)),
            send_timer: None,
        }
    }
}

impl<T: AsyncRead> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll_read(cx, buf) {
            return Poll::Ready(result);
        }
        let t = this.timeouts;
        loop {
            let deadline = this.activity.deadline(t.idle, t.first_request);
            // Connection timeout: monotonic, not cache semantics.
            let target = deadline.unwrap_or_else(|| Instant::now() + t.idle);
            // Only ever brought forward: a later deadline is found when the
            // timer fires early and the loop re-arms, so a busy keep-alive
            // connection does not move the timer on every request.
            if target < this.idle_timer.deadline() || this.idle_timer.is_elapsed() {
                this.idle_timer.as_mut().reset(target);
            }
            if this.idle_timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Connection timeout: monotonic, not cache semantics.
            if deadline.is_some_and(|d| d <= Instant::now()) {
                // End of stream: hyper closes the connection quietly.
                return Poll::Ready(Ok(()));
            }
            // A request started or ended since the timer was set: re-arm.
        }
    }
}

impl<T: AsyncWrite> IdleIo<T> {
    /// Wraps one write attempt with the send timeout.
    fn guard_write<R>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let this = self.project();
        match write(this.inner, cx) {
            Poll::Ready(result) => {
                *this.send_timer = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let send = this.timeouts.send;
                let timer = this
                    .send_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(send)));
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client stopped reading (send timeout)",
                )))
            }
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guard_write(cx, |io, cx| io.poll_write(cx, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.guard_write(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard_write(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUTS: IoTimeouts = IoTimeouts {
        idle: Duration::from_secs(5),
        first_request: Duration::from_secs(2),
        send: Duration::from_secs(3),
    };

    #[tokio::test(start_paused = true)]
    async fn bytes_without_a_request_do_not_keep_a_connection() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = IdleIo::new(a, TIMEOUTS, ConnActivity::new());
        // On tokio's paused test clock.
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            // A trickle that never completes a request.
            for _ in 0..10 {
                let _ = b.write_all(b"x").await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            b
        });
        let mut buf = [0u8; 8];
        while io.read(&mut buf).await.unwrap() > 0 {}
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_millis(2600),
            "closed after {waited:?}, expected the 2 s first-request deadline"
        );
        drop(writer);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let (a, _b) = tokio::io::duplex(64);
        let activity = ConnActivity::new();
        let mut io = IdleIo::new(a, TIMEOUTS, activity.clone());
        let request = activity.request_started();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            io.read(&mut buf).await.unwrap()
        });
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(
            !reader.is_finished(),
            "kept open while a request is in flight"
        );
        // On tokio's paused test clock.
        let ended = Instant::now();
        drop(request);
        assert_eq!(reader.await.unwrap(), 0);
        let waited = ended.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_times_out() {
        let (a, _b) = tokio::io::duplex(16);
        let mut io = IdleIo::new(a, TIMEOUTS, ConnActivity::new());
        let err = io.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
