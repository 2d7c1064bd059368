//! TLS for clients: certificates from PEM files, chosen by SNI, into a
//! rustls server configuration (TLS 1.2 and 1.3 with ring's safe defaults,
//! ALPN `h2` and `http/1.1`).

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

/// The acceptor for the default `cert` (chain, leaf first) and `key`, and
/// `(names, cert, key)` chosen by SNI.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    by_name: &[(Vec<String>, std::path::PathBuf, std::path::PathBuf)],
) -> Result<TlsAcceptor, TlsError> {
    let mut certs = SniCerts {
        exact: HashMap::new(),
        wildcard: HashMap::new(),
        default: load(cert, key)?,
    };
    for (names, cert, key) in by_name {
        let loaded = load(cert, key)?;
        for name in names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(domain) => certs.wildcard.insert(domain.to_owned(), loaded.clone()),
                None => certs.exact.insert(name, loaded.clone()),
            };
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certs));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The HTTPS listener and its certificates.
pub struct TlsListener {
    pub listener: tokio::net::TcpListener,
    pub acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}
