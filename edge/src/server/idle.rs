//! Closing connections that have gone quiet.
//!
//! hyper has no idle timeout of its own for HTTP/2, and for HTTP/1.1 only a
//! header-read timeout. [`IdleIo`] wraps the socket: every read or write
//! pushes a deadline forward, and when a read would block past the deadline
//! while no request on the connection is in flight, it reports end of stream,
//! which makes hyper close the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pin_project! {
    pub struct IdleIo<T> {
        #[pin]
        inner: T,
        timeout: Duration,
        deadline: Pin<Box<Sleep>>,
        in_flight: Arc<AtomicUsize>,
    }
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, timeout: Duration, in_flight: Arc<AtomicUsize>) -> Self {
        IdleIo {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            in_flight,
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
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline.as_mut().reset(Instant::now() + *this.timeout);
                }
                Poll::Ready(result)
            }
            Poll::Pending => loop {
                if this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if this.in_flight.load(Ordering::Relaxed) == 0 {
                    // End of stream: hyper closes the connection quietly.
                    return Poll::Ready(Ok(()));
                }
                // Busy (e.g. waiting on a slow origin): not idle, look again
                // later. Polling the new deadline registers the waker.
                this.deadline.as_mut().reset(Instant::now() + *this.timeout);
            },
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.deadline.as_mut().reset(Instant::now() + *this.timeout);
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.deadline.as_mut().reset(Instant::now() + *this.timeout);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_read_ends_the_stream() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = IdleIo::new(a, Duration::from_secs(5), Arc::default());
        b.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 2);
        let started = Instant::now();
        assert_eq!(io.read(&mut buf).await.unwrap(), 0, "EOF after idling");
        assert!(started.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connection_is_not_idle() {
        let (a, mut b) = tokio::io::duplex(64);
        let in_flight = Arc::new(AtomicUsize::new(1));
        let mut io = IdleIo::new(a, Duration::from_secs(5), in_flight.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            io.read(&mut buf).await.unwrap()
        });
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(
            !reader.is_finished(),
            "kept open while a request is in flight"
        );
        b.write_all(b"x").await.unwrap();
        assert_eq!(reader.await.unwrap(), 1);
    }
}
