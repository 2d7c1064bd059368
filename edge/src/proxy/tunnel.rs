//! A tunnel after a protocol switch (WebSocket): once hyper has handed
//! over both sockets (the client's after our `101`, the origin's after
//! its own), bytes are copied both ways, unchanged, until both sides have
//! closed, no byte has moved for `server.tunnel_idle_timeout`, or the
//! server's grace period is over. How it ended is [`End`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::{Instrument, Span, debug, info};

use crate::body::{BoxError, ProxyBody};
use crate::metrics::Metrics;
use crate::server::idle::RequestActivity;
use crate::server::limits::ConnSlot;
use crate::server::tunnels::TunnelGuard;

/// Why a tunnel ended (`edge_tunnels_closed_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Both directions reached end of stream (either side may close
    /// first: its end is passed on and the other direction runs on).
    Closed,
    Idle,
    /// The grace period of a shutdown was over.
    Shutdown,
    /// A socket failed, or was never handed over.
    Error,
}

impl End {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Idle => "idle",
            End::Shutdown => "shutdown",
            End::Error => "error",
        }
    }
}

/// What a tunnel keeps alive while it runs, released when it ends.
pub(crate) struct Holds {
    /// Keeps the client connection from the request-idle timeout of
    /// `IdleIo` (bytes do not count there; the tunnel's own does).
    pub _activity: RequestActivity,
    /// Its place under `max_connections`.
    pub _slot: Arc<ConnSlot>,
    /// Its place among the server's tunnels, and the shutdown signal.
    pub guard: TunnelGuard,
    /// The origin's (empty) response body: it holds the peer's in-flight
    /// count, which least-connections and the concurrency cap read.
    pub _origin_body: ProxyBody,
}

/// A tunnel to run, once both sockets are handed over.
pub(crate) struct Tunnel {
    /// The config's name of the protocol, for logs.
    pub protocol: String,
    pub client: OnUpgrade,
    pub origin: OnUpgrade,
    pub idle_timeout: Duration,
    pub metrics: Arc<Metrics>,
    pub holds: Holds,
    pub span: Span,
}

impl Tunnel {
    /// Runs the tunnel on a task of its own: the request that opened it
    /// has answered (`101`) and is done.
    pub(crate) fn spawn(self) {
        let span = self.span.clone();
        tokio::spawn(self.run().instrument(span));
    }

    async fn run(self) {
        let Tunnel {
            protocol,
            client,
            origin,
            idle_timeout,
            metrics,
            mut holds,
            span: _,
        } = self;
        // Tunnel idle timer: monotonic, not cache semantics.
        let started = Instant::now();
        let traffic = Arc::new(Traffic::new(started));
        let end = tokio::select! {
            result = relay(client, origin, &traffic, &metrics) => match result {
                Ok(()) => End::Closed,
                Err(err) => {
                    debug!(error = %err, "tunnel failed");
                    End::Error
                }
            },
            () = idle_out(&traffic, idle_timeout) => End::Idle,
            () = holds.guard.closing() => End::Shutdown,
        };
        metrics
            .tunnels_closed
            .with_label_values(&[end.as_str()])
            .inc();
        info!(
            protocol,
            end = end.as_str(),
            seconds = started.elapsed().as_secs_f64(),
            to_origin = traffic.to_origin.load(Ordering::Relaxed),
            to_client = traffic.to_client.load(Ordering::Relaxed),
            "tunnel ended"
        );
        drop(holds);
    }
}

/// Waits for both sockets, then copies until both directions end.
async fn relay(
    client: OnUpgrade,
    origin: OnUpgrade,
    traffic: &Arc<Traffic>,
    metrics: &Metrics,
) -> Result<(), BoxError> {
    let (client, origin) = tokio::try_join!(client, origin)?;
    let mut client = Counted {
        io: TokioIo::new(client),
        traffic: traffic.clone(),
        towards: Towards::Origin,
        metric: metrics.tunnel_bytes.with_label_values(&["to_origin"]),
    };
    let mut origin = Counted {
        io: TokioIo::new(origin),
        traffic: traffic.clone(),
        towards: Towards::Client,
        metric: metrics.tunnel_bytes.with_label_values(&["to_client"]),
    };
    tokio::io::copy_bidirectional(&mut client, &mut origin).await?;
    Ok(())
}

/// Resolves once no byte has been read on either side for `idle`.
async fn idle_out(moved: &Traffic, idle: Duration) {
    loop {
        let last = moved.at();
        tokio::time::sleep_until(last + idle).await;
        if moved.at() == last {
            return;
        }
    }
}

/// What a tunnel has relayed, and when it last read a byte on either side.
#[derive(Debug)]
struct Traffic {
    started: Instant,
    /// Milliseconds after `started`.
    ms: AtomicU64,
    to_origin: AtomicU64,
    to_client: AtomicU64,
}

impl Traffic {
    fn new(started: Instant) -> Self {
        Traffic {
            started,
            ms: AtomicU64::new(0),
            to_origin: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::Relaxed);
    }

    fn at(&self) -> Instant {
        self.started + Duration::from_millis(self.ms.load(Ordering::Relaxed))
    }
}

/// Where the bytes read from one side of a tunnel go.
#[derive(Debug, Clone, Copy)]
enum Towards {
    Origin,
    Client,
}

/// One side of a tunnel: what is read from it counts as activity and as
/// bytes relayed towards the other side.
struct Counted<T> {
    io: T,
    traffic: Arc<Traffic>,
    towards: Towards,
    metric: IntCounter,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            let n = read as u64;
            self.traffic.touch();
            let total = match self.towards {
                Towards::Origin => &self.traffic.to_origin,
                Towards::Client => &self.traffic.to_client,
            };
            total.fetch_add(n, Ordering::Relaxed);
            self.metric.inc_by(n);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idles_out_only_after_a_quiet_period() {
        let moved = Arc::new(Traffic::new(Instant::now()));
        let idle = Duration::from_secs(10);
        let started = Instant::now();
        let toucher = {
            let moved = moved.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_secs(6)).await;
                    moved.touch();
                }
            })
        };
        idle_out(&moved, idle).await;
        // Last byte at 18 s, so quiet from 18 s to 28 s.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(28) && waited < Duration::from_secs(29),
            "{waited:?}"
        );
        toucher.await.unwrap();
    }
}
