//! The `[server]` limits the accept loop applies to each new connection
//! (HTTP/1.1 and HTTP/2 settings, idle, first-request and send timeouts,
//! the connection cap, the shutdown grace), swapped whole by a reload:
//! a connection keeps the settings it was accepted with; the next one gets
//! the new ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::idle::IoTimeouts;
use crate::config::ServerConfig;

/// What one connection is served with.
#[derive(Debug)]
pub(crate) struct ConnSettings {
    pub builder: auto::Builder<TokioExecutor>,
    pub timeouts: IoTimeouts,
    /// A TLS handshake shares the first request's deadline.
    pub handshake_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl ConnSettings {
    fn new(cfg: &ServerConfig) -> Self {
        ConnSettings {
            builder: connection_builder(cfg),
            timeouts: IoTimeouts {
                idle: cfg.idle_timeout,
                first_request: cfg.header_read_timeout,
                send: cfg.send_timeout,
            },
            handshake_timeout: cfg.header_read_timeout,
            shutdown_grace: cfg.shutdown_grace,
        }
    }
}

/// The settings in force and the connection cap.
#[derive(Debug)]
pub(crate) struct Limits {
    current: ArcSwap<ConnSettings>,
    /// One permit per connection that may be open.
    pub permits: Arc<Semaphore>,
    max_connections: AtomicUsize,
}

impl Limits {
    pub fn new(cfg: &ServerConfig) -> Self {
        Limits {
            current: ArcSwap::from_pointee(ConnSettings::new(cfg)),
            permits: Arc::new(Semaphore::new(cfg.max_connections)),
            max_connections: AtomicUsize::new(cfg.max_connections),
        }
    }

    /// The settings for a connection accepted now.
    pub fn now(&self) -> Arc<ConnSettings> {
        self.current.load_full()
    }

    /// The connection cap in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// Puts `cfg` in force for the connections accepted from now on. A
    /// lower cap takes free permits at once and the rest as connections
    /// close (open connections are never cut to meet it).
    pub fn set(&self, cfg: &ServerConfig) {
        self.current.store(Arc::new(ConnSettings::new(cfg)));
        let new = cfg.max_connections;
        let old = self.max_connections.swap(new, Ordering::Relaxed);
        if new > old {
            self.permits.add_permits(new - old);
        } else if new < old {
            let owed = (old - new) - self.permits.forget_permits(old - new);
            if owed > 0 {
                let permits = self.permits.clone();
                let owed = u32::try_from(owed).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(taken) = permits.acquire_many_owned(owed).await {
                        taken.forget();
                    }
                });
            }
        }
    }
}

/// One connection's place under `max_connections` and in
/// `edge_open_connections`, held by the connection and by a tunnel it
/// became (which outlives hyper's connection): freed when the last of them
/// ends.
#[derive(Debug)]
pub struct ConnSlot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl ConnSlot {
    pub(crate) fn new(permit: OwnedSemaphorePermit, open: IntGauge) -> Arc<Self> {
        open.inc();
        Arc::new(ConnSlot {
            _permit: permit,
            open,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// HTTP/1.1 and HTTP/2 settings from the server limits.
fn connection_builder(cfg: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let max_head = cfg.max_header_bytes.as_usize();
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(max_head.max(8192))
        .max_headers(cfg.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX))
        // Rapid reset (CVE-2023-44487): streams a client opens and cancels
        // before they are served cost work without counting against the
        // concurrency limit. Past 20 of them waiting, or 1024 streams this
        // side had to reset for protocol errors, the connection gets
        // GOAWAY (ENHANCE_YOUR_CALM). Spelled out so a dependency update
        // cannot quietly change them.
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        // PINGs find dead peers; they do not count as activity (see IdleIo).
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    if cfg.offers_connect_protocol() {
        // WebSocket over HTTP/2 (RFC 8441): offered only when it would be
        // accepted, so that clients fall back to HTTP/1.1 otherwise.
        builder.http2().enable_connect_protocol();
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lower_cap_takes_free_permits_now_and_busy_ones_as_they_free() {
        let mut cfg = ServerConfig {
            max_connections: 4,
            ..ServerConfig::default()
        };
        let limits = Limits::new(&cfg);
        let busy = limits
            .permits
            .clone()
            .acquire_many_owned(3)
            .await
            .expect("permits");
        cfg.max_connections = 2;
        limits.set(&cfg);
        assert_eq!(limits.permits.available_permits(), 0);
        drop(busy);
        // The task owed one permit takes it as the connections close.
        tokio::task::yield_now().await;
        assert_eq!(limits.permits.available_permits(), 2);
        cfg.max_connections = 5;
        limits.set(&cfg);
        assert_eq!(limits.permits.available_permits(), 5);
        assert_eq!(limits.max_connections(), 5);
    }
}
