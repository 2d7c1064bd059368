//! Opening a connection to a peer: TCP (connect timeout, no Nagle,
//! keep-alive probes), TLS for `https` peers (rustls: SNI, certificate and
//! name verified against the system roots or `upstream.tls_ca`, ALPN), then
//! the HTTP/1.1 or HTTP/2 handshake.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use origin_shield::{Peer, Scheme};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::body::ProxyBody;

/// The request half of a connection.
pub(super) enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

impl Sender {
    pub(super) fn protocol(&self) -> &'static str {
        match self {
            Sender::H1(_) => "h1",
            Sender::H2(_) => "h2",
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Tcp(#[source] io::Error),
    #[error("connect timed out")]
    Timeout,
    /// The handshake failed: most often a certificate that is not valid for
    /// the name, or not signed by a trusted CA.
    #[error("TLS handshake with {name:?} failed: {source}")]
    Tls {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("no CA certificates to verify {name:?} with: {reason}")]
    NoRoots { name: String, reason: String },
    #[error("{0:?} is not a valid TLS server name")]
    BadName(String),
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
}

impl ConnectError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ConnectError::Timeout)
    }

    pub fn is_tls(&self) -> bool {
        matches!(
            self,
            ConnectError::Tls { .. } | ConnectError::NoRoots { .. } | ConnectError::BadName(_)
        )
    }
}

/// Why `upstream.tls_ca` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read upstream.tls_ca {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("upstream.tls_ca {} holds no usable CA certificate", path.display())]
    Empty { path: PathBuf },
}

/// Settings every connection shares.
#[derive(Debug)]
pub(super) struct Connector {
    pub connect_timeout: Duration,
    pub max_header_bytes: usize,
    tls: TlsClients,
}

impl Connector {
    pub fn new(
        connect_timeout: Duration,
        max_header_bytes: usize,
        tls_ca: Option<&Path>,
    ) -> Result<Self, CaError> {
        Ok(Connector {
            connect_timeout,
            max_header_bytes,
            tls: TlsClients::new(tls_ca)?,
        })
    }

    /// Opens a connection to `peer` and spawns its I/O task; `on_close`
    /// runs when the connection is gone. `h2` offers HTTP/2: in ALPN over
    /// TLS (the peer may still choose HTTP/1.1), by prior knowledge in
    /// cleartext. `connect_timeout` covers TCP, TLS and the HTTP handshake.
    pub async fn connect(
        &self,
        peer: &Peer,
        h2: bool,
        on_close: impl FnOnce() + Send + 'static,
    ) -> Result<Sender, ConnectError> {
        let opened = tokio::time::timeout(self.connect_timeout, async {
            let tcp = self.tcp(peer).await?;
            match peer.scheme() {
                Scheme::Http => self.handshake(TokioIo::new(tcp), h2).await,
                Scheme::Https => {
                    let tls = self.tls.handshake(peer, h2, tcp).await?;
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    self.handshake(TokioIo::new(tls), h2).await
                }
            }
        })
        .await;
        let (sender, connection) = opened.map_err(|_| ConnectError::Timeout)??;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "upstream connection ended");
            }
            on_close();
        });
        Ok(sender)
    }

    async fn tcp(&self, peer: &Peer) -> Result<TcpStream, ConnectError> {
        let authority = peer.authority();
        let port = authority.port_u16().unwrap_or(match peer.scheme() {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addrs: Vec<_> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| ConnectError::Resolve {
                    host: host.to_owned(),
                    source,
                })?
                .collect(),
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    // Small requests must not wait for an ACK.
                    let _ = tcp.set_nodelay(true);
                    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
                    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
                    return Ok(tcp);
                }
                Err(err) => last = err,
            }
        }
        Err(ConnectError::Tcp(last))
    }

    /// The HTTP handshake; returns the sender and the connection's I/O
    /// future, to be spawned.
    async fn handshake<T>(
        &self,
        io: TokioIo<T>,
        h2: bool,
    ) -> Result<(Sender, Connection), ConnectError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if h2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
                // Finds a dead shared connection before many requests
                // queue on it.
                .keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(20))
                .adaptive_window(true)
                .handshake(io)
                .await
                .map_err(ConnectError::Handshake)?;
            Ok((Sender::H2(sender), Box::pin(conn)))
        } else {
            let (sender, conn) = http1::Builder::new()
                .max_buf_size(self.max_header_bytes.max(8192))
                .handshake(io)
                .await
                .map_err(ConnectError::Handshake)?;
            // On a 101 the connection's task ends and hands the socket to
            // the response's `OnUpgrade` (the tunnel); without this, hyper
            // would close it instead.
            Ok((Sender::H1(sender), Box::pin(conn.with_upgrades())))
        }
    }
}

/// A connection's I/O: runs until the connection closes.
type Connection = std::pin::Pin<Box<dyn std::future::Future<Output = hyper::Result<()>> + Send>>;

/// The four client configurations (verified or not, with or without h2 in
/// ALPN), built on first use: most nodes never speak TLS upstream, and the
/// system roots take a moment to load.
#[derive(Debug)]
struct TlsClients {
    /// `upstream.tls_ca`, loaded at start so a bad file stops the start.
    ca: Option<Arc<RootCertStore>>,
    /// Set once built; a failure (no system roots) is tried again by the
    /// next connection rather than kept until a restart.
    configs: OnceLock<Arc<Configs>>,
}

#[derive(Debug)]
struct Configs {
    verified_h1: Arc<ClientConfig>,
    verified_h2: Arc<ClientConfig>,
    any_h1: Arc<ClientConfig>,
    any_h2: Arc<ClientConfig>,
}

impl TlsClients {
    fn new(ca: Option<&Path>) -> Result<Self, CaError> {
        let ca = match ca {
            Some(path) => Some(Arc::new(load_ca(path)?)),
            None => None,
        };
        Ok(TlsClients {
            ca,
            configs: OnceLock::new(),
        })
    }

    async fn handshake(
        &self,
        peer: &Peer,
        h2: bool,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
        let name = peer.tls_name();
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| ConnectError::BadName(name.to_owned()))?;
        let configs = match self.configs.get() {
            Some(configs) => configs.clone(),
            None => {
                // Reading the system store is blocking file I/O.
                let ca = self.ca.clone();
                let built = tokio::task::spawn_blocking(move || build(ca))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .map_err(|reason| ConnectError::NoRoots {
                        name: name.to_owned(),
                        reason,
                    })?;
                self.configs.get_or_init(|| Arc::new(built)).clone()
            }
        };
        let transport = peer.transport();
        let config = match (transport.insecure_skip_verify, h2) {
            (false, false) => &configs.verified_h1,
            (false, true) => &configs.verified_h2,
            (true, false) => &configs.any_h1,
            (true, true) => &configs.any_h2,
        };
        tokio_rustls::TlsConnector::from(config.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|source| ConnectError::Tls {
                name: name.to_owned(),
                source,
            })
    }
}

/// The client configurations, trusting `ca` or else the system roots.
fn build(ca: Option<Arc<RootCertStore>>) -> Result<Configs, String> {
    let roots = match ca {
        Some(ca) => ca,
        None => Arc::new(system_roots()?),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let verified = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let any = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    let with_alpn = |config: &ClientConfig, h2: bool| {
        let mut config = config.clone();
        config.alpn_protocols = if h2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Arc::new(config)
    };
    Ok(Configs {
        verified_h1: with_alpn(&verified, false),
        verified_h2: with_alpn(&verified, true),
        any_h1: with_alpn(&any, false),
        any_h2: with_alpn(&any, true),
    })
}

fn load_ca(path: &Path) -> Result<RootCertStore, CaError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|source| CaError::Read {
            path: path.to_owned(),
            source,
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(CaError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// The operating system's trust store (on Debian, `ca-certificates`;
/// `SSL_CERT_FILE` overrides).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        tracing::warn!(error = %err, "reading the system CA certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(
            "the system trust store is empty; install ca-certificates or set upstream.tls_ca"
                .into(),
        );
    }
    Ok(roots)
}

/// `tls_verify = false`: any certificate is accepted, but the handshake
/// signatures are still checked, so the session is at least bound to the
/// key in the certificate it was shown.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
