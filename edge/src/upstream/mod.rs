//! The client to peers: pooled HTTP/1.1 and HTTP/2 connections, in
//! cleartext or TLS, shared by all worker threads ([`pool`], [`connect`]);
//! connect, send, response-head and body-read timeouts; and errors
//! classified for the status mapping in `error.rs`.

mod connect;
mod pool;

pub use connect::{CaError, ConnectError};

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use origin_shield::Peer;
use tokio::sync::Notify;

use crate::body::{self, BodyEnd, BodyReadTimeout, ProxyBody, ReadTimeout, Tap, Tapped};
use crate::config::UpstreamConfig;
use crate::error::{BoxError, ProxyError};
use crate::metrics::{Metrics, status_class};

/// A response from a peer whose body fails if the peer stalls.
pub type UpstreamResponse = Response<ReadTimeout<Incoming>>;

/// Marks an error that came from the client's request body, so that it is
/// blamed on the client (4xx) and not on the peer.
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
pub struct ClientBodyError(#[source] pub BoxError);

/// Connection pool and timeouts towards every peer.
#[derive(Debug)]
pub struct Upstream {
    pool: pool::Pool,
    config: UpstreamConfig,
    metrics: Metrics,
}

impl Upstream {
    /// Fails only on an unusable `upstream.tls_ca`.
    pub fn new(
        config: UpstreamConfig,
        max_header_bytes: usize,
        metrics: Metrics,
    ) -> Result<Self, CaError> {
        let connector = connect::Connector::new(
            config.connect_timeout,
            max_header_bytes,
            config.tls_ca.as_deref(),
        )?;
        let pool = pool::Pool::new(
            connector,
            config.pool_idle_timeout,
            config.pool_max_idle_per_host,
            metrics.clone(),
        );
        Ok(Upstream {
            pool,
            config,
            metrics,
        })
    }

    /// Share of requests since start sent on a reused connection.
    pub fn reuse_ratio(&self) -> f64 {
        self.pool.reuse_ratio()
    }

    /// Sends `req` (whose URI must be absolute, naming `peer`) and waits for
    /// the response head.
    ///
    /// Two clocks apply: while the request body is being sent, the peer must
    /// keep taking bytes (`read_timeout` without progress gives 504); once it
    /// is sent, the response head must arrive within `header_timeout`. A long
    /// upload is therefore not mistaken for a slow origin.
    pub async fn send(
        &self,
        peer: &Peer,
        req: Request<ProxyBody>,
    ) -> Result<UpstreamResponse, ProxyError> {
        // The exchange's duration for metrics and timeouts: monotonic.
        let started = Instant::now();
        let progress = Arc::new(SendState::default());
        let body_pending = !req.body().is_end_stream();
        let req = req.map(|b| body::boxed(Tapped::new(b, SendProgress(progress.clone()))));
        let response = self.pool.send(peer, req);
        tokio::pin!(response);

        let mut sent_bytes = 0;
        while body_pending && !progress.done.load(Ordering::Acquire) {
            tokio::select! {
                result = &mut response => return self.finish(peer, started, result.map_err(|e| classify(peer, e))),
                () = progress.finished.notified() => {}
                () = tokio::time::sleep(self.config.read_timeout) => {
                    let now = progress.bytes.load(Ordering::Relaxed);
                    if now == sent_bytes && !progress.done.load(Ordering::Acquire) {
                        let err = ProxyError::SendTimeout { peer: peer.to_string(), timeout: self.config.read_timeout };
                        return self.finish(peer, started, Err(err));
                    }
                    sent_bytes = now;
                }
            }
        }
        let timeout = self.config.header_timeout;
        let result = match tokio::time::timeout(timeout, response).await {
            Ok(result) => result.map_err(|e| classify(peer, e)),
            Err(_) => Err(ProxyError::HeaderTimeout {
                peer: peer.to_string(),
                timeout,
            }),
        };
        self.finish(peer, started, result)
    }

    /// Sends a health probe: no metrics of client traffic, no timeouts of
    /// its own (the caller bounds it).
    pub async fn probe(
        &self,
        peer: &Peer,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        self.pool
            .send(peer, req)
            .await
            .map_err(|e| classify(peer, e))
    }

    fn finish(
        &self,
        peer: &Peer,
        started: Instant,
        result: Result<Response<Incoming>, ProxyError>,
    ) -> Result<UpstreamResponse, ProxyError> {
        match &result {
            Ok(resp) => {
                let peer = peer.to_string();
                self.metrics
                    .origin_duration
                    .with_label_values(&[&peer])
                    .observe(started.elapsed().as_secs_f64());
                self.metrics
                    .origin_requests
                    .with_label_values(&[&peer, status_class(resp.status())])
                    .inc();
            }
            Err(err) if err.source_side() == crate::error::ErrorSource::Upstream => {
                if let ProxyError::Tls { .. } = err {
                    // A refused certificate is a setup problem, not a blip.
                    tracing::warn!(peer = %peer, tls_name = peer.tls_name(), error = %err, "TLS to peer refused");
                } else {
                    tracing::debug!(peer = %peer, error = %err, "upstream request failed");
                }
                self.metrics
                    .origin_errors
                    .with_label_values(&[err.as_str()])
                    .inc();
            }
            Err(_) => {}
        }
        let read_timeout = self.config.read_timeout;
        result.map(|resp| resp.map(|body| ReadTimeout::new(body, read_timeout)))
    }
}

/// How far the request body has been handed to the connection.
#[derive(Debug, Default)]
struct SendState {
    bytes: AtomicU64,
    done: AtomicBool,
    finished: Notify,
}

/// Reports request-body progress to [`Upstream::send`].
struct SendProgress(Arc<SendState>);

impl Tap for SendProgress {
    fn data(&mut self, data: &Bytes) {
        self.0.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
    }

    fn end(self, _: BodyEnd) {
        // Sent, failed or dropped by the client: nothing more will go out.
        self.0.done.store(true, Ordering::Release);
        self.0.finished.notify_one();
    }
}

/// Sorts a failure: the client's own body failing, a connection that could
/// not be had (refused, timed out, TLS refused), or a failure after
/// connecting.
fn classify(peer: &Peer, err: pool::SendError) -> ProxyError {
    let peer_name = peer.to_string();
    let err = match err {
        pool::SendError::Connect(err) if err.is_timeout() => {
            return ProxyError::ConnectTimeout { peer: peer_name };
        }
        pool::SendError::Connect(err) if err.is_tls() => {
            return ProxyError::Tls {
                peer: peer_name,
                source: Box::new(SharedError(err)),
            };
        }
        pool::SendError::Connect(err) => {
            return ProxyError::Connect {
                peer: peer_name,
                source: Box::new(SharedError(err)),
            };
        }
        pool::SendError::Http(err) => err,
    };
    let mut cause = err.source();
    while let Some(e) = cause {
        if let Some(client_body) = e.downcast_ref::<ClientBodyError>() {
            return match client_body.0.downcast_ref::<BodyReadTimeout>() {
                Some(timeout) => ProxyError::ClientBodyTimeout(timeout.0),
                None => ProxyError::ClientBody {
                    source: Box::new(err),
                },
            };
        }
        cause = e.source();
    }
    ProxyError::Upstream {
        peer: peer_name,
        source: Box::new(err) as BoxError,
    }
}

/// A connect failure shared by the requests that waited on one attempt.
#[derive(Debug)]
struct SharedError(Arc<ConnectError>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
