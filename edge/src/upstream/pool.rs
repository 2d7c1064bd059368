//! Connections kept open to peers, shared by every worker thread.
//!
//! Our own pool rather than hyper-util's: that one keys connections by the
//! request URI's authority, which HTTP/2 also sends as `:authority`. A CDN
//! must dial the peer (an address, verified as the peer's TLS name) while
//! presenting the client's host, so connections here are keyed by [`Peer`]
//! and the request is put in the right form for its connection.
//!
//! HTTP/1.1: idle connections per peer (newest first), each back in the
//! pool once its response body has been read, unless it switched protocols
//! (a `101` hands the socket to a tunnel). HTTP/2: one connection per
//! peer carries every request as a stream; it is opened by one request
//! while the others wait for it. A request carrying `Upgrade` always goes
//! on HTTP/1.1, the only version that has it (RFC 9113 §8.2.2).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme as UriScheme};
use http::{HeaderValue, Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use origin_shield::{Peer, Scheme};

use super::connect::{ConnectError, Connector, Sender};
use crate::body::ProxyBody;
use crate::metrics::Metrics;

/// Why an exchange failed: before a connection was had, or on it.
#[derive(Debug)]
pub(super) enum SendError {
    Connect(Arc<ConnectError>),
    Http(hyper::Error),
}

#[derive(Debug)]
pub(super) struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connector: Connector,
    idle_timeout: Duration,
    max_idle: usize,
    /// foldhash: a `Peer` is hashed on every exchange, and SipHash over
    /// its strings was a visible part of a pass request.
    slots: Mutex<HashMap<Peer, Slot, foldhash::fast::RandomState>>,
    metrics: Metrics,
    exchanges: AtomicU64,
    reused: AtomicU64,
}

#[derive(Debug, Default)]
struct Slot {
    /// Idle HTTP/1.1 connections and when each became idle; newest last.
    idle: Vec<(http1::SendRequest<ProxyBody>, Instant)>,
    /// The shared HTTP/2 connection and when it was last used.
    h2: Option<(http2::SendRequest<ProxyBody>, Instant)>,
    /// Held by the request opening the HTTP/2 connection.
    h2_gate: Arc<tokio::sync::Mutex<()>>,
    /// The last failed attempt at the HTTP/2 connection, so requests that
    /// queued behind it fail with it instead of each waiting out a timeout.
    h2_failed: Option<(Instant, Arc<ConnectError>)>,
    /// The peer answered ALPN with `http/1.1`: stop offering h2.
    h2_declined: bool,
}

impl Pool {
    pub fn new(
        connector: Connector,
        idle_timeout: Duration,
        max_idle: usize,
        metrics: Metrics,
    ) -> Self {
        let inner = Arc::new(Inner {
            connector,
            idle_timeout,
            max_idle,
            slots: Mutex::new(HashMap::default()),
            metrics,
            exchanges: AtomicU64::new(0),
            reused: AtomicU64::new(0),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap(Arc::downgrade(&inner)));
        }
        Pool { inner }
    }

    /// Share of exchanges so far that went out on a reused connection.
    pub fn reuse_ratio(&self) -> f64 {
        let all = self.inner.exchanges.load(Ordering::Relaxed);
        if all == 0 {
            return 0.0;
        }
        self.inner.reused.load(Ordering::Relaxed) as f64 / all as f64
    }

    /// Sends `req` (its URI naming `peer`, its `Host` what the peer should
    /// see) on a pooled connection or a new one. A request that a reused
    /// connection gives back unsent (the peer closed it as we picked it) is
    /// sent once more on a fresh connection.
    pub async fn send(
        &self,
        peer: &Peer,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let inner = &self.inner;
        // The site the peer is asked for, fixed before the first attempt:
        // the HTTP/2 form moves it from `Host` into the URI.
        let site = req
            .headers()
            .get(header::HOST)
            .and_then(|host| Authority::try_from(host.as_bytes()).ok())
            .unwrap_or_else(|| peer.authority().clone());
        let mut fresh_only = false;
        let h1_only = req.headers().contains_key(header::UPGRADE);
        loop {
            let (sender, reused) = inner.checkout(peer, fresh_only, h1_only).await?;
            let result = match sender {
                Sender::H1(mut conn) => {
                    for_h1(&mut req, &site);
                    match conn.try_send_request(req).await {
                        Ok(resp) => {
                            // A switched connection is the tunnel's now.
                            if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                                inner.give_back_when_idle(peer.clone(), conn);
                            }
                            Ok(resp)
                        }
                        Err(err) => Err(err),
                    }
                }
                Sender::H2(mut conn) => {
                    for_h2(&mut req, peer, &site);
                    conn.try_send_request(req).await
                }
            };
            match result {
                Ok(resp) => {
                    inner.counted(reused);
                    return Ok(resp);
                }
                Err(mut err) => match err.take_message() {
                    Some(unsent) if reused && !fresh_only => {
                        req = unsent;
                        fresh_only = true;
                    }
                    _ => return Err(SendError::Http(err.into_error())),
                },
            }
        }
    }
}

impl Inner {
    fn slots(&self) -> MutexGuard<'_, HashMap<Peer, Slot, foldhash::fast::RandomState>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counted(&self, reused: bool) {
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        let label = if reused {
            self.reused.fetch_add(1, Ordering::Relaxed);
            "reused"
        } else {
            "new"
        };
        self.metrics
            .upstream_exchanges
            .with_label_values(&[label])
            .inc();
    }

    /// A connection to `peer`, and whether it was already open. With
    /// `fresh_only` (a retry), no idle HTTP/1.1 connection is taken; the
    /// shared HTTP/2 one still is unless it has closed. `h1_only`: an
    /// HTTP/1.1 connection even to an HTTP/2 peer.
    async fn checkout(
        self: &Arc<Self>,
        peer: &Peer,
        fresh_only: bool,
        h1_only: bool,
    ) -> Result<(Sender, bool), SendError> {
        let wants_h2 = peer.transport().http2 && !h1_only && !self.h2_declined(peer);
        if !wants_h2 {
            return self.checkout_h1(peer, fresh_only).await;
        }
        if let Some(found) = self.shared_h2(peer, None) {
            return found;
        }

        // One request opens the HTTP/2 connection; the others wait here.
        let waited_since = Instant::now();
        let gate = self
            .slots()
            .entry(peer.clone())
            .or_default()
            .h2_gate
            .clone();
        let opening = gate.lock().await;
        if let Some(found) = self.shared_h2(peer, Some(waited_since)) {
            return found;
        }
        if self.h2_declined(peer) {
            // The request ahead of us learnt that the peer speaks HTTP/1.1.
            drop(opening);
            return self.checkout_h1(peer, fresh_only).await;
        }
        // Boxed, here and below: connecting (TCP, TLS, the HTTP/2
        // handshake) is a large future that only a new connection needs;
        // inline, every request's future carries its size and a miss's
        // boxed future is copied whole (callgrind: most of a pass
        // request's memcpy).
        match Box::pin(self.open(peer, true)).await {
            Ok(Sender::H2(conn)) => {
                let mut slots = self.slots();
                let slot = slots.entry(peer.clone()).or_default();
                // Connection-pool timer (idle expiry, HTTP/2 back-off): monotonic, not cache semantics.
                slot.h2 = Some((conn.clone(), Instant::now()));
                slot.h2_failed = None;
                Ok((Sender::H2(conn), false))
            }
            Ok(Sender::H1(conn)) => {
                tracing::info!(peer = %peer, "peer declined HTTP/2 in ALPN; using HTTP/1.1");
                self.slots().entry(peer.clone()).or_default().h2_declined = true;
                Ok((Sender::H1(conn), false))
            }
            Err(SendError::Connect(err)) => {
                let mut slots = self.slots();
                slots.entry(peer.clone()).or_default().h2_failed =
                    // Connection-pool timer (idle expiry, HTTP/2 back-off): monotonic, not cache semantics.
                    Some((Instant::now(), err.clone()));
                Err(SendError::Connect(err))
            }
            Err(other) => Err(other),
        }
    }

    async fn checkout_h1(
        self: &Arc<Self>,
        peer: &Peer,
        fresh_only: bool,
    ) -> Result<(Sender, bool), SendError> {
        if !fresh_only && let Some(conn) = self.idle_h1(peer) {
            return Ok((Sender::H1(conn), true));
        }
        let sender = Box::pin(self.open(peer, false)).await?;
        Ok((sender, false))
    }

    /// The open HTTP/2 connection, or the failure that a request ahead of
    /// us met opening it after `failed_after` (while we waited for it).
    fn shared_h2(
        &self,
        peer: &Peer,
        failed_after: Option<Instant>,
    ) -> Option<Result<(Sender, bool), SendError>> {
        let mut slots = self.slots();
        let slot = slots.get_mut(peer)?;
        if let Some((conn, used)) = &mut slot.h2 {
            if !conn.is_closed() {
                // Connection-pool timer (idle expiry, HTTP/2 back-off): monotonic, not cache semantics.
                *used = Instant::now();
                return Some(Ok((Sender::H2(conn.clone()), true)));
            }
            slot.h2 = None;
        }
        match (&slot.h2_failed, failed_after) {
            (Some((at, err)), Some(since)) if *at >= since => {
                Some(Err(SendError::Connect(err.clone())))
            }
            _ => None,
        }
    }

    fn h2_declined(&self, peer: &Peer) -> bool {
        self.slots().get(peer).is_some_and(|s| s.h2_declined)
    }

    /// The most recently idled HTTP/1.1 connection that is still usable.
    fn idle_h1(&self, peer: &Peer) -> Option<http1::SendRequest<ProxyBody>> {
        let mut slots = self.slots();
        let slot = slots.get_mut(peer)?;
        while let Some((conn, since)) = slot.idle.pop() {
            if since.elapsed() < self.idle_timeout && conn.is_ready() {
                return Some(conn);
            }
        }
        None
    }

    /// Opens a connection; `h2` offers HTTP/2 (ALPN, or prior knowledge in
    /// cleartext).
    async fn open(self: &Arc<Self>, peer: &Peer, h2: bool) -> Result<Sender, SendError> {
        let metrics = self.metrics.clone();
        let on_close = move || metrics.upstream_open_connections.dec();
        let sender = self
            .connector
            .connect(peer, h2, on_close)
            .await
            .map_err(|err| SendError::Connect(Arc::new(err)))?;
        self.metrics.upstream_open_connections.inc();
        self.metrics
            .upstream_connections
            .with_label_values(&[&peer.to_string(), sender.protocol()])
            .inc();
        Ok(sender)
    }

    /// Puts an HTTP/1.1 connection back once its response has been read to
    /// the end (a body dropped half-way closes it instead).
    fn give_back_when_idle(self: &Arc<Self>, peer: Peer, mut conn: http1::SendRequest<ProxyBody>) {
        let inner = Arc::downgrade(self);
        tokio::spawn(async move {
            if conn.ready().await.is_err() {
                return;
            }
            let Some(inner) = inner.upgrade() else { return };
            let mut slots = inner.slots();
            let slot = slots.entry(peer).or_default();
            if slot.idle.len() < inner.max_idle {
                // Connection-pool timer (idle expiry, HTTP/2 back-off): monotonic, not cache semantics.
                slot.idle.push((conn, Instant::now()));
            }
        });
    }
}

/// Closes connections idle for longer than the idle timeout, until the pool
/// is gone.
async fn reap(pool: Weak<Inner>) {
    let every = pool.upgrade().map_or(Duration::from_secs(1), |p| {
        (p.idle_timeout / 2).max(Duration::from_secs(1))
    });
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = pool.upgrade() else { return };
        let timeout = inner.idle_timeout;
        inner.slots().retain(|_, slot| {
            slot.idle
                .retain(|(conn, since)| since.elapsed() < timeout && !conn.is_closed());
            if slot
                .h2
                .as_ref()
                .is_some_and(|(conn, used)| used.elapsed() >= timeout || conn.is_closed())
            {
                // Requests still on it keep their own handles; the
                // connection closes after the last of them.
                slot.h2 = None;
            }
            // A slot whose gate is held is being connected to: dropping it
            // would let the next request open a second connection.
            let opening = Arc::strong_count(&slot.h2_gate) > 1;
            !slot.idle.is_empty() || slot.h2.is_some() || slot.h2_declined || opening
        });
    }
}

/// HTTP/1.1 sends the path alone; `Host` names the site.
fn for_h1(req: &mut Request<ProxyBody>, site: &Authority) {
    *req.version_mut() = Version::HTTP_11;
    // `te: trailers` is kept for HTTP/2 peers (gRPC); in HTTP/1.1 it is a
    // hop-by-hop field of this connection, which reads no trailers.
    req.headers_mut().remove(header::TE);
    // A request given back unsent by HTTP/2 has lost its `Host`.
    if !req.headers().contains_key(header::HOST)
        && let Ok(host) = HeaderValue::from_str(site.as_str())
    {
        req.headers_mut().insert(header::HOST, host);
    }
    let origin_form = req
        .uri()
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    *req.uri_mut() = origin_form;
}

/// HTTP/2 names the site in `:authority` (RFC 9113 §8.3.1), which hyper
/// takes from the URI; `Host` goes, so the two cannot disagree.
fn for_h2(req: &mut Request<ProxyBody>, peer: &Peer, site: &Authority) {
    *req.version_mut() = Version::HTTP_2;
    req.headers_mut().remove(header::HOST);
    let authority = site.clone();
    let scheme = match peer.scheme() {
        Scheme::Http => UriScheme::HTTP,
        Scheme::Https => UriScheme::HTTPS,
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;

    #[test]
    fn request_forms() {
        let peer: Peer = "https://10.0.0.1:8443".parse().unwrap();
        let site: Authority = "www.example.com".parse().unwrap();
        let mut req = Request::get(peer.uri_for(Some(&"/a?b=1".parse().unwrap())))
            .header("host", "www.example.com")
            .body(body::empty())
            .unwrap();
        for_h2(&mut req, &peer, &site);
        assert_eq!(req.uri().to_string(), "https://www.example.com/a?b=1");
        assert!(req.headers().get("host").is_none());
        // Handed back unsent and sent again: the same site, in either form.
        for_h2(&mut req, &peer, &site);
        assert_eq!(req.uri().to_string(), "https://www.example.com/a?b=1");
        for_h1(&mut req, &site);
        assert_eq!(req.uri().to_string(), "/a?b=1");
        assert_eq!(req.headers()["host"], "www.example.com");
        let mut grpc = Request::post(peer.uri_for(Some(&"/s/M".parse().unwrap())))
            .header("te", "trailers")
            .body(body::empty())
            .unwrap();
        for_h2(&mut grpc, &peer, &site);
        assert_eq!(grpc.headers()["te"], "trailers");
        for_h1(&mut grpc, &site);
        assert!(grpc.headers().get("te").is_none());
    }
}
