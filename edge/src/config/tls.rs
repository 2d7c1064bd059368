//! `[tls]`: the HTTPS listener and its certificates.

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
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            listen: None,
            cert: None,
            key: None,
            certs: Vec::new(),
            reload_interval: Duration::from_secs(10),
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
