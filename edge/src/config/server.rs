//! `[server]`: limits and timeouts of the client-facing side.

use std::time::Duration;

use serde::Deserialize;

use super::units::{ByteSize, de_duration};

/// Limits and timeouts of the client-facing side.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Open client connections at most; beyond it new connections wait in the
    /// kernel's accept queue. Default: `10000`.
    pub max_connections: usize,
    /// Largest request head (request line + headers); larger gets 431.
    /// At least `8KiB`. Default: `64KiB`.
    pub max_header_bytes: ByteSize,
    /// Most request header fields; more gets 431. Default: `100`.
    pub max_headers: usize,
    /// Time a client has to send a complete request head, and for a new
    /// connection to send its first request. On HTTP/1.1 this clock also runs
    /// while a keep-alive connection waits for its next request, so the
    /// effective HTTP/1.1 keep-alive time is the smaller of this and
    /// `idle_timeout`. Default: `15s`.
    #[serde(deserialize_with = "de_duration")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long since its last
    /// request ended is closed (before its first request,
    /// `header_read_timeout` applies). Bytes that do not make a request,
    /// such as HTTP/2 PINGs, do not count. Default: `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// A response write that makes no progress for this long (the client
    /// stopped reading) closes the connection. Default: `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub send_timeout: Duration,
    /// Longest gap between two pieces of a request body; exceeded gives 408.
    /// Default: `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub client_body_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish
    /// before the process exits anyway. Default: `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_grace: Duration,
    /// On SIGUSR2, how long the new binary has to take the sockets and the
    /// data directory and start serving; past it the old process kills it
    /// and keeps serving. Default: `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub upgrade_timeout: Duration,
    /// HTTP/2 streams per connection. Default: `128`.
    pub h2_max_concurrent_streams: u32,
    /// Runtime worker threads; `0` means one per CPU, `1` a single-threaded
    /// scheduler (for a node pinned to one core). Default: `0`.
    pub worker_threads: usize,
    /// HTTP/1.1 `Upgrade` protocols passed to the origin (with `Connection:
    /// upgrade`) and, on its `101`, tunnelled both ways; compared without
    /// case, on the token before any `/version`. A request asking for any
    /// other protocol is forwarded as a plain request without `Upgrade`, as
    /// nginx does. `[]` turns tunnels off. Default: `["websocket"]`.
    pub upgrade_protocols: Vec<String>,
    /// A tunnel (after a `101`) with no byte in either direction for this
    /// long is closed. Not `idle_timeout`: that one counts requests, and a
    /// tunnel is one request that never ends. Default: `300s`.
    #[serde(deserialize_with = "de_duration")]
    pub tunnel_idle_timeout: Duration,
}

impl ServerConfig {
    /// Whether HTTP/2 clients are offered SETTINGS_ENABLE_CONNECT_PROTOCOL
    /// (RFC 8441): only when WebSocket, the one protocol edge translates
    /// to an HTTP/1.1 upgrade, is allowed, so that clients of an edge
    /// without it fall back to HTTP/1.1 as browsers do.
    pub fn offers_connect_protocol(&self) -> bool {
        self.upgrade_protocols
            .iter()
            .any(|p| p.eq_ignore_ascii_case("websocket"))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 10_000,
            max_header_bytes: ByteSize::kib(64),
            max_headers: 100,
            header_read_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            upgrade_timeout: Duration::from_secs(30),
            h2_max_concurrent_streams: 128,
            worker_threads: 0,
            upgrade_protocols: vec!["websocket".to_owned()],
            tunnel_idle_timeout: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_protocol_is_offered_only_with_websocket_allowed() {
        let with = |protocols: &[&str]| ServerConfig {
            upgrade_protocols: protocols.iter().map(|p| (*p).to_owned()).collect(),
            ..ServerConfig::default()
        };
        assert!(with(&["websocket"]).offers_connect_protocol());
        assert!(with(&["x", "WebSocket"]).offers_connect_protocol());
        assert!(!with(&[]).offers_connect_protocol());
        assert!(!with(&["x-custom"]).offers_connect_protocol());
    }
}
