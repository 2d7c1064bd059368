//! HTTP/3 for clients (`tls.h3_listen`): a QUIC endpoint (quinn) on UDP
//! with the TLS listener's certificates and SNI choice (the same
//! resolver, so certificate reloads reach it), the accept loop with its
//! limits (connections shared with `server.max_connections`, address
//! validation by Retry under load), and the drain on shutdown. Each
//! connection is `conn.rs`; bodies across the boundary are `body.rs`.

mod body;
mod conn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::idle::IoTimeouts;
use super::limits::{ConnSlot, Limits};
use super::tls::{Certs, TlsError, quic_config};
use super::tunnels::Tunnels;
use crate::config::{ServerConfig, TlsSettings};
use crate::hooks::EdgeHooks;
use crate::metrics::Metrics;
use crate::proxy::Proxy;

/// Why the HTTP/3 listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum H3Error {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the TLS configuration does not suit QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("cannot listen on {addr} (tls.h3_listen, UDP): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The connection settings, fixed at start (`tls.h3_*` need a restart).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// As the TLS listener's: `server.header_read_timeout`.
    pub handshake_timeout: Duration,
    /// Idle in requests, as on TCP (`server.idle_timeout`, and
    /// `server.header_read_timeout` before the first request).
    pub timeouts: IoTimeouts,
    /// `server.max_header_bytes`, as HTTP/3's SETTINGS_MAX_FIELD_SECTION_SIZE.
    pub max_field_section_size: u64,
    pub zero_rtt: bool,
    pub retry_threshold: usize,
}

/// A bound QUIC endpoint, not yet accepting.
#[derive(Debug)]
pub(crate) struct H3Listener {
    endpoint: quinn::Endpoint,
    settings: Settings,
}

impl H3Listener {
    /// Binds `addr` (UDP) with `certs`, the TLS listener's resolver.
    pub fn bind(
        addr: SocketAddr,
        certs: Arc<Certs>,
        tls: &TlsSettings,
        server: &ServerConfig,
    ) -> Result<Self, H3Error> {
        let crypto = quic_config(certs, tls.h3_zero_rtt)?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(crypto))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(tls.h3_max_concurrent_streams.into())
            // The client's control and QPACK streams (RFC 9114 §6.2, RFC
            // 9204 §4.2), and room for grease: nothing else is used.
            .max_concurrent_uni_streams(8u32.into())
            // Packets, not requests (conn.rs counts those): a peer gone
            // silent is dropped at the same time as an idle one.
            .max_idle_timeout(quinn::IdleTimeout::try_from(server.idle_timeout).ok());
        config.transport_config(Arc::new(transport));
        let socket = bind_udp(addr).map_err(|source| H3Error::Bind { addr, source })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| H3Error::Bind { addr, source })?;
        let timeouts = IoTimeouts {
            idle: server.idle_timeout,
            first_request: server.header_read_timeout,
            send: server.send_timeout,
        };
        Ok(H3Listener {
            endpoint,
            settings: Settings {
                handshake_timeout: server.header_read_timeout,
                timeouts,
                max_field_section_size: server.max_header_bytes.as_usize() as u64,
                zero_rtt: tls.h3_zero_rtt,
                retry_threshold: tls.h3_retry_threshold,
            },
        })
    }

    /// The UDP address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Starts accepting on a task of its own.
    pub fn spawn<H: EdgeHooks>(
        self,
        proxy: Arc<Proxy<H>>,
        limits: Arc<Limits>,
        metrics: Metrics,
        tunnels: Arc<Tunnels>,
    ) -> H3Running {
        let (stop_tx, stop) = watch::channel(false);
        let (open, drained) = mpsc::channel(1);
        let shared = Arc::new(conn::Shared {
            proxy,
            metrics,
            tunnels,
            settings: self.settings,
            stop,
            _open: open,
        });
        let endpoint = self.endpoint.clone();
        tokio::spawn(accept_loop(self.endpoint, limits, shared));
        H3Running {
            endpoint,
            stop: stop_tx,
            drained,
        }
    }
}

/// The UDP socket, with `SO_REUSEPORT` so that the new process of a
/// binary upgrade can bind it beside the old one (UDP sockets are not
/// handed over; docs/http3.md says what that costs).
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Handshakes in progress, for address validation under load.
#[derive(Debug, Clone)]
pub(crate) struct Pending(Arc<AtomicUsize>);

impl Pending {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Pending(count.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept_loop<H: EdgeHooks>(
    endpoint: quinn::Endpoint,
    limits: Arc<Limits>,
    shared: Arc<conn::Shared<H>>,
) {
    let pending = Arc::new(AtomicUsize::new(0));
    let mut stop = shared.stop.clone();
    let counted = |result: &str| {
        shared
            .metrics
            .h3_connections
            .with_label_values(&[result])
            .inc()
    };
    loop {
        let incoming = tokio::select! {
            biased;
            _ = stop.changed() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        // Past the threshold, a client must show it owns its address (a
        // Retry token) before we keep any state or send a flight of
        // certificates to it: spoofed floods then cost one packet each.
        if !incoming.remote_address_validated()
            && pending.load(Ordering::Acquire) >= shared.settings.retry_threshold
            && incoming.may_retry()
        {
            counted("retry");
            if let Err(err) = incoming.retry() {
                debug!(error = %err, "QUIC retry not sent");
            }
            continue;
        }
        // The same cap as the TCP listeners. UDP has no accept queue to
        // wait in: over the cap the client is refused at once.
        let Ok(permit) = limits.permits.clone().try_acquire_owned() else {
            counted("refused");
            incoming.refuse();
            continue;
        };
        let slot = ConnSlot::new(permit, shared.metrics.open_connections.clone());
        let pending = Pending::start(&pending);
        tokio::spawn(conn::serve(incoming, slot, pending, shared.clone()));
    }
    debug!("HTTP/3 listener stopped accepting");
}

/// The HTTP/3 listener at work.
#[derive(Debug)]
pub(crate) struct H3Running {
    endpoint: quinn::Endpoint,
    stop: watch::Sender<bool>,
    drained: mpsc::Receiver<()>,
}

impl H3Running {
    /// Stops accepting; every connection sends GOAWAY and drains.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Until every connection has finished its requests and closed.
    pub async fn drained(&mut self) {
        while self.drained.recv().await.is_some() {}
    }

    /// After the grace period: closes what is left, and waits (briefly)
    /// for the close frames to go out.
    pub async fn close(&self) {
        if self.endpoint.open_connections() > 0 {
            warn!(
                open = self.endpoint.open_connections(),
                "grace period over, closing the remaining HTTP/3 connections"
            );
        }
        self.endpoint
            .close(quinn::VarInt::from_u32(0x100), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}
