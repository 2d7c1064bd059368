//! TLS for clients: certificates from PEM files, chosen by SNI, into a
//! rustls server configuration (TLS 1.2 and 1.3 with ring's safe defaults,
//! ALPN `h2` and `http/1.1`, session resumption by tickets).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// Why the TLS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {}: {source}", path.display())]
    Cert {
        path: std::path::PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no certificate", path.display())]
    NoCert { path: std::path::PathBuf },
    #[error("cannot read the private key {}: {source}", path.display())]
    Key {
        path: std::path::PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A chain and key loaded from PEM files, ready to sign handshakes.
fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|source| TlsError::Cert {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_owned(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Certificates by SNI name: exact names, then `*.domain` wildcards (one
/// label deep, as RFC 6125 says), then the default.
#[derive(Debug)]
struct SniCerts {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return Some(self.default.clone());
        };
        if let Some(cert) = self.exact.get(&name) {
            return Some(cert.clone());
        }
        let parent = name.split_once('.').map(|(_, rest)| rest);
        Some(
            parent
                .and_then(|p| self.wildcard.get(p))
                .unwrap_or(&self.default)
                .clone(),
        )
    }
}

/// Where the certificates come from: the default pair, and pairs by name.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub by_name: Vec<(Vec<String>, std::path::PathBuf, std::path::PathBuf)>,
}

impl CertFiles {
    /// The files `[tls]` names, when it names a default pair.
    pub fn from_settings(tls: &crate::config::TlsSettings) -> Option<CertFiles> {
        let (cert, key) = (tls.cert.as_ref()?, tls.key.as_ref()?);
        Some(CertFiles {
            cert: cert.clone(),
            key: key.clone(),
            by_name: tls
                .certs
                .iter()
                .map(|c| (c.names.clone(), c.cert.clone(), c.key.clone()))
                .collect(),
        })
    }

    fn load(&self) -> Result<SniCerts, TlsError> {
        let mut certs = SniCerts {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: load(&self.cert, &self.key)?,
        };
        for (names, cert, key) in &self.by_name {
            let loaded = load(cert, key)?;
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(domain) => certs.wildcard.insert(domain.to_owned(), loaded.clone()),
                    None => certs.exact.insert(name, loaded.clone()),
                };
            }
        }
        Ok(certs)
    }

    /// The newest modification time among the files (to notice changes).
    fn modified(&self) -> Option<std::time::SystemTime> {
        let paths = [&self.cert, &self.key]
            .into_iter()
            .chain(self.by_name.iter().flat_map(|(_, c, k)| [c, k]));
        paths
            .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .max()
    }
}

/// The certificates in use, swapped whole on reload. Handshakes read them
/// under a short read lock (no await); connections already established
/// keep the certificate they started with.
#[derive(Debug)]
pub struct Certs {
    files: std::sync::RwLock<CertFiles>,
    current: std::sync::RwLock<Arc<SniCerts>>,
}

/// A set of certificates loaded and checked, not yet in use.
#[derive(Debug)]
pub struct StagedCerts {
    files: CertFiles,
    loaded: Arc<SniCerts>,
}

impl Certs {
    fn files(&self) -> CertFiles {
        self.files.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Loads the files again; a bad set keeps the old certificates.
    pub fn reload(&self) -> Result<(), TlsError> {
        let staged = Certs::stage(self.files())?;
        self.install(staged);
        Ok(())
    }

    /// Loads `files` without using them: a config reload checks every
    /// part of the new configuration before it changes anything.
    pub fn stage(files: CertFiles) -> Result<StagedCerts, TlsError> {
        let loaded = Arc::new(files.load()?);
        Ok(StagedCerts { files, loaded })
    }

    /// Puts staged certificates in use for the handshakes from now on.
    pub fn install(&self, staged: StagedCerts) {
        *self.files.write().unwrap_or_else(|p| p.into_inner()) = staged.files;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = staged.loaded;
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        current.resolve(hello)
    }
}

/// The acceptor for `files`, and the certificates it uses (to reload).
pub fn acceptor(files: CertFiles) -> Result<(TlsAcceptor, Arc<Certs>), TlsError> {
    let certs = Arc::new(Certs {
        current: std::sync::RwLock::new(Arc::new(files.load()?)),
        files: std::sync::RwLock::new(files),
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption spares a returning client the full handshake (a round
    // trip and the signature, the costliest step on the server): stateless
    // tickets with keys rotated every 6 hours, plus a session-ID cache for
    // TLS 1.2 clients that do not take tickets. Certificate reloads keep
    // both, since the configuration stays and only the resolver changes.
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    Ok((TlsAcceptor::from(Arc::new(config)), certs))
}

/// The rustls configuration of the QUIC listener (`server::h3`): the same
/// certificates and SNI choice as the TLS listener (`certs`, shared, so a
/// reload changes both), TLS 1.3 only (QUIC has no other), ALPN `h3`.
/// With `zero_rtt`, resumed sessions accept early data (`u32::MAX` is what
/// QUIC requires: the limit is QUIC's flow control, not TLS's); rustls
/// allows it only with server-side session state, not stateless tickets,
/// and that state is taken once: a replayed ClientHello finds it gone.
pub fn quic_config(certs: Arc<Certs>, zero_rtt: bool) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h3".to_vec()];
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    if zero_rtt {
        config.max_early_data_size = u32::MAX;
    } else {
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    }
    Ok(config)
}

/// Reloads the certificates when their files change (checked every
/// `interval`), until the certificates are dropped. A set that does not
/// load is logged and the old one kept. (SIGHUP reloads them with the rest
/// of the configuration.)
pub fn spawn_reloader(certs: &Arc<Certs>, interval: std::time::Duration) {
    let weak = Arc::downgrade(certs);
    let mut seen = certs.files().modified();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(certs) = weak.upgrade() else {
                return;
            };
            let modified = certs.files().modified();
            if modified == seen {
                continue;
            }
            seen = modified;
            match certs.reload() {
                Ok(()) => tracing::info!("TLS certificates reloaded (their files changed)"),
                Err(err) => {
                    tracing::error!(error = %err, "TLS certificates not reloaded; keeping the old ones");
                }
            }
        }
    });
}

/// The HTTPS listener and its certificates.
pub struct TlsListener {
    pub listener: tokio::net::TcpListener,
    pub acceptor: TlsAcceptor,
    pub certs: Arc<Certs>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}
