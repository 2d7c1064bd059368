//! `[tls]`: the HTTPS listener, its certificates, and HTTP/3 (QUIC) on
//! the same certificates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::de_duration;

/// HTTPS for clients: a second listener that terminates TLS (1.2 and 1.3,
/// ALPN `h2` and `http/1.1`) and serves the same pipeline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Where to listen for TLS. Default: unset (no TLS listener).
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// More certificates, chosen by the SNI name a client asks for (exact
    /// names first, then `*.example.com` wildcards); `cert`/`key` above is
    /// the default for names none of them covers. Default: none.
    pub certs: Vec<SniCert>,
    /// How often the certificate files are checked for changes (they are
    /// also reloaded on SIGHUP). Default: `10s`.
    #[serde(deserialize_with = "de_duration")]
    pub reload_interval: Duration,
    /// Where to listen for QUIC + HTTP/3 (UDP), with the same certificates
    /// and SNI choice as `listen` (needs `cert` and `key`). Default: unset
    /// (no HTTP/3). See `docs/http3.md`.
    pub h3_listen: Option<SocketAddr>,
    /// Request streams one HTTP/3 connection may have open at once.
    /// Default: `128`.
    pub h3_max_concurrent_streams: u32,
    /// Accept 0-RTT (early data) from returning clients: a round trip
    /// saved, but early data can be replayed, so only GET and HEAD are
    /// served from it (others get `425 Too Early`). Default: `false`.
    pub h3_zero_rtt: bool,
    /// Handshakes in progress past which a new client must first prove
    /// its address (a QUIC Retry: one more round trip, no state kept for
    /// spoofed sources). `0` asks every client. Default: `64`.
    pub h3_retry_threshold: usize,
    /// Answers on the TLS listener advertise HTTP/3 with `Alt-Svc:
    /// h3=":PORT"; ma=...` (when `h3_listen` is set). Default: `true`.
    pub alt_svc: bool,
    /// The `ma` (max-age) of that `Alt-Svc`. Default: `24h`.
    #[serde(deserialize_with = "de_duration")]
    pub alt_svc_max_age: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            listen: None,
            cert: None,
            key: None,
            certs: Vec::new(),
            reload_interval: Duration::from_secs(10),
            h3_listen: None,
            h3_max_concurrent_streams: 128,
            h3_zero_rtt: false,
            h3_retry_threshold: 64,
            alt_svc: true,
            alt_svc_max_age: Duration::from_secs(86_400),
        }
    }
}

/// A certificate for some server names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    /// Names it serves: `www.example.com`, or `*.example.com`.
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}
