//! Proxy errors, whose fault they are, and the one place they become statuses.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};

pub use crate::body::BoxError;
use crate::body::{self, ProxyBody};

/// Who caused a failure; decides the status class and how loudly to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something we refuse (4xx).
    Downstream,
    /// The peer failed us (502/504).
    Upstream,
    /// Our own fault (500).
    Internal,
}

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("client request body failed: {source}")]
    ClientBody {
        #[source]
        source: BoxError,
    },
    #[error("client sent no request body data for {0:?}")]
    ClientBodyTimeout(Duration),
    #[error("only-if-cached and nothing is cached")]
    OnlyIfCached,
    /// No site answers for this `Host` and there is no default site (RFC
    /// 9110 §15.5.20: 421).
    #[error("no site answers for host {0:?}")]
    Misdirected(String),
    /// A transfer coding other than chunked (RFC 9112 §6.1: 501).
    #[error("transfer coding other than chunked")]
    UnsupportedCoding,
    #[error("no origin is configured for this request")]
    NoPeer,
    #[error("cannot connect to {peer}: {source}")]
    Connect {
        peer: String,
        #[source]
        source: BoxError,
    },
    /// The peer's certificate was refused (wrong name, unknown CA,
    /// expired) or the handshake failed: nothing was sent.
    #[error("TLS with {peer} failed: {source}")]
    Tls {
        peer: String,
        #[source]
        source: BoxError,
    },
    #[error("connecting to {peer} timed out")]
    ConnectTimeout { peer: String },
    #[error("{peer} sent no response head within {timeout:?}")]
    HeaderTimeout { peer: String, timeout: Duration },
    #[error("{peer} stopped reading the request body for {timeout:?}")]
    SendTimeout { peer: String, timeout: Duration },
    #[error("{peer} failed: {source}")]
    Upstream {
        peer: String,
        #[source]
        source: BoxError,
    },
    /// Another request for the same object was fetching it and the origin
    /// failed; this request shares that answer instead of repeating it.
    #[error("the origin just failed for the same object ({0})")]
    CollapsedFailure(StatusCode),
    /// Every peer is at its concurrency cap (`upstream.max_conns`).
    #[error("every peer is at its limit of requests in flight")]
    PeersBusy,
    /// The request has passed through too many nodes (RFC 8586).
    #[error("request loop: {0} nodes in CDN-Loop")]
    LoopDetected(usize),
    #[error("internal error: {0}")]
    Internal(String),
    /// An access check said no (`crate::access`): 403 or 429.
    #[error("refused: {}", .0.as_str())]
    Refused(crate::access::Refusal),
}

impl ProxyError {
    pub fn source_side(&self) -> ErrorSource {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::ClientBody { .. }
            | ProxyError::ClientBodyTimeout(_)
            | ProxyError::OnlyIfCached
            | ProxyError::Misdirected(_)
            | ProxyError::UnsupportedCoding
            | ProxyError::Refused(_) => ErrorSource::Downstream,
            ProxyError::NoPeer
            | ProxyError::Internal(_)
            | ProxyError::LoopDetected(_)
            | ProxyError::PeersBusy => ErrorSource::Internal,
            ProxyError::Connect { .. }
            | ProxyError::Tls { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::HeaderTimeout { .. }
            | ProxyError::SendTimeout { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::CollapsedFailure(_) => ErrorSource::Upstream,
        }
    }

    /// The status a client sees (RFC 9110 §15.6.3 and §15.6.5 for 502/504).
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::ClientBody { .. } => StatusCode::BAD_REQUEST,
            ProxyError::ClientBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
            ProxyError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::NoPeer
            | ProxyError::Connect { .. }
            | ProxyError::Tls { .. }
            | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout { .. }
            | ProxyError::HeaderTimeout { .. }
            | ProxyError::SendTimeout { .. }
            // RFC 9111 §5.2.1.7
            | ProxyError::OnlyIfCached => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::CollapsedFailure(status) => *status,
            ProxyError::LoopDetected(_) => StatusCode::LOOP_DETECTED,
            ProxyError::PeersBusy => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Refused(refusal) => refusal.status(),
        }
    }

    /// A short, stable name for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::ClientBody { .. } => "client_body",
            ProxyError::ClientBodyTimeout(_) => "client_body_timeout",
            ProxyError::OnlyIfCached => "only_if_cached",
            ProxyError::Misdirected(_) => "misdirected",
            ProxyError::UnsupportedCoding => "unsupported_coding",
            ProxyError::NoPeer => "no_peer",
            ProxyError::Connect { .. } => "connect",
            ProxyError::Tls { .. } => "tls",
            ProxyError::ConnectTimeout { .. } => "connect_timeout",
            ProxyError::HeaderTimeout { .. } => "header_timeout",
            ProxyError::SendTimeout { .. } => "send_timeout",
            ProxyError::Upstream { .. } => "upstream",
            ProxyError::CollapsedFailure(_) => "collapsed_failure",
            ProxyError::LoopDetected(_) => "loop_detected",
            ProxyError::PeersBusy => "peers_busy",
            ProxyError::Internal(_) => "internal",
            ProxyError::Refused(refusal) => refusal.as_str(),
        }
    }

    /// The error page: a one-line plain-text body. Peer addresses and error
    /// details stay in the log, not in what the client sees.
    pub fn to_response(&self) -> Response<ProxyBody> {
        let status = self.status();
        let text = match self {
            ProxyError::BadRequest(why) => format!("400 Bad Request: {why}\n"),
            ProxyError::ClientBody { .. } => {
                "400 Bad Request: request body incomplete\n".to_owned()
            }
            // The host passed `validate` (a reg-name or IP literal): safe
            // to echo.
            ProxyError::Misdirected(host) => {
                format!("421 Misdirected Request: no site for host {host}\n")
            }
            _ => format!(
                "{} {}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error")
            ),
        };
        let mut resp = Response::new(body::full(Bytes::from(text)));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        if let ProxyError::Refused(refusal) = self {
            refusal.write_headers(headers);
        }
        // A refusal keeps the connection: the client did nothing wrong
        // with the protocol, and closing would cost a reconnect per 429.
        if self.source_side() == ErrorSource::Downstream && !matches!(self, ProxyError::Refused(_))
        {
            headers.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_fault() {
        let peer = || "http://o:1".to_owned();
        assert_eq!(ProxyError::BadRequest("x").status(), 400);
        assert_eq!(
            ProxyError::Connect {
                peer: peer(),
                source: "refused".into()
            }
            .status(),
            502
        );
        assert_eq!(ProxyError::ConnectTimeout { peer: peer() }.status(), 504);
        assert_eq!(
            ProxyError::HeaderTimeout {
                peer: peer(),
                timeout: Duration::from_secs(1)
            }
            .status(),
            504
        );
        assert_eq!(ProxyError::Internal("x".into()).status(), 500);
    }

    #[test]
    fn error_page_hides_details() {
        let e = ProxyError::Connect {
            peer: "http://10.1.2.3:80".into(),
            source: "refused".into(),
        };
        let resp = e.to_response();
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    }
}
