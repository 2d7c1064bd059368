//! The pooled HTTP client to peers: keep-alive connections shared by all
//! worker threads, with connect, response-head and body-read timeouts, and
//! errors classified for the status mapping in `error.rs`.

use std::error::Error as _;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use origin_shield::Peer;

use crate::body::{ProxyBody, ReadTimeout};
use crate::config::UpstreamConfig;
use crate::error::{BoxError, ProxyError};
use crate::metrics::{Metrics, status_class};

/// A response from a peer whose body fails if the peer stalls.
pub type UpstreamResponse = Response<ReadTimeout<Incoming>>;

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
        connector.set_keepalive(Some(std::time::Duration::from_secs(60)));
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
    pub async fn send(
        &self,
        peer: &Peer,
        req: Request<ProxyBody>,
    ) -> Result<UpstreamResponse, ProxyError> {
        let started = Instant::now();
        let timeout = self.config.header_timeout;
        let result = match tokio::time::timeout(timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(err)) => Err(classify(peer, err)),
            Err(_) => Err(ProxyError::HeaderTimeout {
                peer: peer.to_string(),
                timeout,
            }),
        };
        match &result {
            Ok(resp) => {
                self.metrics
                    .origin_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics
                    .origin_requests
                    .with_label_values(&[status_class(resp.status())])
                    .inc();
            }
            Err(err) => self
                .metrics
                .origin_errors
                .with_label_values(&[err.as_str()])
                .inc(),
        }
        let read_timeout = self.config.read_timeout;
        result.map(|resp| resp.map(|body| ReadTimeout::new(body, read_timeout)))
    }
}

/// Sorts a client error into connect failure, connect timeout or a failure
/// after connecting.
fn classify(peer: &Peer, err: hyper_util::client::legacy::Error) -> ProxyError {
    let peer = peer.to_string();
    if err.is_connect() {
        let mut cause = err.source();
        let mut timed_out = false;
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
            }
            cause = e.source();
        }
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
