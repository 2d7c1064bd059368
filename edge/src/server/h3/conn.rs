//! One QUIC connection: the handshake under its deadline (0-RTT when
//! allowed), then HTTP/3 request streams, each turned into the
//! `http::Request<ClientBody>` the pipeline serves for HTTP/1.1 and
//! HTTP/2; the idle timeout counted in requests as on TCP; GOAWAY and the
//! drain on shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use h3::server::RequestResolver;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::body::{RecvBody, send_body};
use super::{Pending, Settings};
use crate::body::{self, ClientBody};
use crate::hooks::EdgeHooks;
use crate::metrics::Metrics;
use crate::proxy::{ConnInfo, Proxy};
use crate::server::idle::ConnActivity;
use crate::server::limits::ConnSlot;
use crate::server::tunnels::Tunnels;

/// What every connection of the listener shares.
pub(super) struct Shared<H> {
    pub proxy: Arc<Proxy<H>>,
    pub metrics: Metrics,
    pub tunnels: Arc<Tunnels>,
    pub settings: Settings,
    /// `true` once the server shuts down: each connection sends GOAWAY.
    pub stop: watch::Receiver<bool>,
    /// Never sent on: the drain waits until every holder of this
    /// `Shared` (the accept loop, connections, requests) is gone.
    pub _open: mpsc::Sender<()>,
}

/// Serves one accepted connection attempt to its end.
pub(super) async fn serve<H: EdgeHooks>(
    incoming: quinn::Incoming,
    slot: Arc<ConnSlot>,
    pending: Pending,
    shared: Arc<Shared<H>>,
) {
    let client_addr = incoming.remote_address();
    let counted = |result: &str| {
        shared
            .metrics
            .h3_connections
            .with_label_values(&[result])
            .inc()
    };
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(err) => {
            debug!(client = %client_addr, error = %err, "QUIC connection not accepted");
            counted("handshake_failed");
            return;
        }
    };
    // Set once the handshake is confirmed: until then a request stream
    // can only have come in 0-RTT data, which an attacker may replay.
    let confirmed = Arc::new(AtomicBool::new(true));
    let handshake = shared.settings.handshake_timeout;
    let conn = if shared.settings.zero_rtt {
        match connecting.into_0rtt() {
            Ok((conn, accepted)) => {
                confirmed.store(false, Ordering::Release);
                let (flag, watched) = (confirmed.clone(), conn.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake, accepted).await {
                        Ok(_) => flag.store(true, Ordering::Release),
                        // Same deadline as a full handshake.
                        Err(_) => watched.close(0u32.into(), b"handshake timeout"),
                    }
                });
                conn
            }
            Err(connecting) => match finish_handshake(connecting, handshake).await {
                Ok(conn) => conn,
                Err(result) => {
                    debug!(client = %client_addr, result, "QUIC handshake did not complete");
                    counted(result);
                    return;
                }
            },
        }
    } else {
        match finish_handshake(connecting, handshake).await {
            Ok(conn) => conn,
            Err(result) => {
                debug!(client = %client_addr, result, "QUIC handshake did not complete");
                counted(result);
                return;
            }
        }
    };
    drop(pending);
    counted("accepted");
    shared.metrics.connections.inc();
    let activity = ConnActivity::new();
    let info = ConnInfo {
        client_addr,
        scheme: "https",
        activity: activity.clone(),
        slot,
        tunnels: shared.tunnels.clone(),
    };
    let quic = conn.clone();
    let mut builder = h3::server::builder();
    builder.max_field_section_size(shared.settings.max_field_section_size);
    let mut h3 = match builder.build(h3_quinn::Connection::new(conn)).await {
        Ok(h3) => h3,
        Err(err) => {
            debug!(client = %client_addr, error = %err, "HTTP/3 connection setup failed");
            return;
        }
    };
    let mut stop = shared.stop.clone();
    let mut goaway = *stop.borrow();
    if goaway {
        let _ = h3.shutdown(0).await;
    }
    let timeouts = shared.settings.timeouts;
    // h3 ends `accept` after our GOAWAY only once the client sends its
    // own: the drain counts this connection's requests itself.
    let streams = Arc::new(Streams::default());
    loop {
        // The TCP listeners' idle rule: no request in flight for
        // `idle_timeout` since the last one ended. QUIC's own idle
        // timeout only sees packets, which PINGs keep coming.
        let idle = activity.idle_deadline(timeouts.idle, timeouts.first_request);
        // Connection timeout: monotonic, not cache semantics.
        let wake = idle.unwrap_or_else(|| tokio::time::Instant::now() + timeouts.idle);
        tokio::select! {
            biased;
            changed = stop.changed(), if !goaway => {
                // A dropped sender is a shutdown too.
                if changed.is_err() || *stop.borrow() {
                    goaway = true;
                    // One more stream id than the last accepted: that one's
                    // request is ours to answer, the client retries later ones.
                    let _ = h3.shutdown(1).await;
                }
            }
            () = streams.none_open(), if goaway => break,
            () = tokio::time::sleep_until(wake), if !goaway => {
                // A request in flight when the timer was set: look again.
                if idle.is_some() {
                    debug!(client = %client_addr, "HTTP/3 connection idle; closing");
                    goaway = true;
                    let _ = h3.shutdown(0).await;
                }
            }
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let shared = shared.clone();
                    let info = info.clone();
                    let early = !confirmed.load(Ordering::Acquire);
                    let open = Streams::open(&streams);
                    tokio::spawn(async move {
                        request(resolver, &shared, info, early).await;
                        drop(open);
                    });
                }
                // GOAWAY sent or received, and every request done.
                Ok(None) => break,
                Err(err) => {
                    debug!(client = %client_addr, error = %err, "HTTP/3 connection ended");
                    break;
                }
            },
        }
    }
    // Closing discards what quinn has not yet delivered, and the last
    // response may still be in its buffers: the client gets a moment to
    // read it and close first (it has our GOAWAY).
    let linger = Duration::from_secs(1) + 4 * quic.rtt();
    let _ = tokio::time::timeout(linger, quic.closed()).await;
    // H3_NO_ERROR (RFC 9114 §8.1).
    quic.close(quinn::VarInt::from_u32(0x100), b"");
}

/// The request streams of a connection being served.
#[derive(Debug, Default)]
struct Streams {
    open: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

/// One stream being served; its drop may be the last.
struct OpenStream(Arc<Streams>);

impl Streams {
    fn open(this: &Arc<Streams>) -> OpenStream {
        this.open.fetch_add(1, Ordering::AcqRel);
        OpenStream(this.clone())
    }

    /// Until no stream is being served.
    async fn none_open(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            changed.await;
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

/// A full handshake within `timeout`; the metric label of its failure.
async fn finish_handshake(
    connecting: quinn::Connecting,
    timeout: Duration,
) -> Result<quinn::Connection, &'static str> {
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(_)) => Err("handshake_failed"),
        Err(_) => Err("handshake_timeout"),
    }
}

/// Methods 0-RTT may carry: safe ones (RFC 8470 §4.1; RFC 9114 §10.9).
fn safe_in_early_data(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// Fields HTTP/3 forbids (RFC 9114 §4.2): connection-specific ones a
/// response from the pipeline or the origin may still hold.
const CONNECTION_SPECIFIC: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::HeaderName::from_static("keep-alive"),
];

/// One request stream: its head, the pipeline, the response streamed back.
async fn request<H: EdgeHooks>(
    resolver: RequestResolver<h3_quinn::Connection, Bytes>,
    shared: &Shared<H>,
    info: ConnInfo,
    early: bool,
) {
    let client = info.client_addr;
    let (req, stream) = match resolver.resolve_request().await {
        Ok(resolved) => resolved,
        Err(err) => {
            debug!(client = %client, error = %err, "HTTP/3 request head refused");
            return;
        }
    };
    let (mut send, recv) = stream.split();
    let (mut parts, ()) = req.into_parts();
    parts.version = Version::HTTP_3;
    let response = if early && !safe_in_early_data(&parts.method) {
        too_early()
    } else {
        if early {
            // RFC 8470 §5.1: the origin may answer 425 itself.
            parts
                .headers
                .insert("early-data", HeaderValue::from_static("1"));
        }
        let body = request_body(&parts, recv);
        let req = http::Request::from_parts(parts, body);
        match shared.proxy.clone().handle(req, info).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    };
    let (mut head, body) = response.into_parts();
    for name in &CONNECTION_SPECIFIC {
        head.headers.remove(name);
    }
    if let Err(err) = send.send_response(Response::from_parts(head, ())).await {
        debug!(client = %client, error = %err, "HTTP/3 response head not sent");
        return;
    }
    if let Err(err) = send_body(&mut send, body).await {
        debug!(client = %client, error = %err, "HTTP/3 response body not sent whole");
    }
}

/// The request body: none for GET and HEAD without a length (what every
/// client sends; reading for the stream's end first would cost a wait),
/// else the stream's DATA frames, with the length when given.
fn request_body(
    parts: &http::request::Parts,
    recv: h3::server::RequestStream<h3_quinn::RecvStream, Bytes>,
) -> ClientBody {
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bodiless = match length {
        Some(n) => n == 0,
        None => matches!(parts.method, Method::GET | Method::HEAD),
    };
    if bodiless {
        return ClientBody::streamed(body::empty());
    }
    ClientBody::streamed(body::boxed(RecvBody::new(recv, length)))
}

/// `425 Too Early` (RFC 8470 §5.2): the client retries after the
/// handshake, where replay is impossible.
fn too_early() -> Response<crate::body::ProxyBody> {
    let mut response = Response::new(body::full("request not allowed in 0-RTT data; retry\n"));
    *response.status_mut() = StatusCode::TOO_EARLY;
    response
}
