//! The pooled HTTP client to peers: keep-alive connections shared by all
//! worker threads, with connect, send, response-head and body-read timeouts,
//! and errors classified for the status mapping in `error.rs`.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
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
    client: Client<HttpConnector, ProxyBody>,
    config: UpstreamConfig,
    metrics: Metrics,
}

impl Upstream {
    pub fn new(config: UpstreamConfig, metrics: Metrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            // The request already carries the Host the origin should see.
            .set_host(false)
            .build(connector);
        Upstream {
            client,
            config,
            metrics,
        }
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
        let started = Instant::now();
        let progress = Arc::new(SendState::default());
        let body_pending = !req.body().is_end_stream();
        let req = req.map(|b| body::boxed(Tapped::new(b, SendProgress(progress.clone()))));
        let response = self.client.request(req);
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
    pub async fn probe(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, ProxyError> {
        let peer = req
            .uri()
            .authority()
            .map_or_else(String::new, ToString::to_string);
        self.client
            .request(req)
            .await
            .map_err(|source| ProxyError::Upstream {
                peer,
                source: Box::new(source),
            })
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
                tracing::debug!(peer = %peer, error = %err, "upstream request failed");
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

/// Sorts a client error: the client's own body failing, connect failure or
/// timeout, or a failure after connecting.
fn classify(peer: &Peer, err: hyper_util::client::legacy::Error) -> ProxyError {
    let mut cause = err.source();
    let mut timed_out = false;
    while let Some(e) = cause {
        if let Some(client_body) = e.downcast_ref::<ClientBodyError>() {
            return match client_body.0.downcast_ref::<BodyReadTimeout>() {
                Some(timeout) => ProxyError::ClientBodyTimeout(timeout.0),
                None => ProxyError::ClientBody {
                    source: Box::new(err),
                },
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        cause = e.source();
    }
    let peer = peer.to_string();
    if err.is_connect() {
        if timed_out {
            return ProxyError::ConnectTimeout { peer };
        }
        return ProxyError::Connect {
            peer,
            source: Box::new(err),
        };
    }
    ProxyError::Upstream {
        peer,
        source: Box::new(err) as BoxError,
    }
}
