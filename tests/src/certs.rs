//! Certificates made for one test: self-signed leaves, and a small CA that
//! signs leaves (for peers verified the way production ones are).

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A certificate and key written to PEM files in a temporary directory.
#[derive(Debug)]
pub struct Cert {
    pub der: CertificateDer<'static>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cert {
    fn write(cert_pem: &str, key_pem: &str, der: CertificateDer<'static>) -> Cert {
        let dir = tempfile::tempdir().expect("dir");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert_pem).expect("write cert");
        std::fs::write(&key_path, key_pem).expect("write key");
        Cert {
            der,
            cert_path,
            key_path,
            _dir: dir,
        }
    }

    /// Gives `config` an HTTPS listener on an ephemeral port with this
    /// certificate as the default.
    pub fn serve_on(&self, config: &mut edge::Config) {
        config.tls.listen = Some("127.0.0.1:0".parse().expect("addr"));
        config.tls.cert = Some(self.cert_path.clone());
        config.tls.key = Some(self.key_path.clone());
    }

    /// As [`serve_on`](Self::serve_on), plus HTTP/3 on an ephemeral UDP port.
    pub fn serve_h3_on(&self, config: &mut edge::Config) {
        self.serve_on(config);
        config.tls.h3_listen = Some("127.0.0.1:0".parse().expect("addr"));
    }

    /// A server configuration presenting this certificate, with ALPN `h2`
    /// and `http/1.1`.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let chain = CertificateDer::pem_file_iter(&self.cert_path)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .expect("chain");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&self.key_path).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A self-signed certificate for `names`.
pub fn self_signed(names: &[&str]) -> Cert {
    let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let signed = rcgen::generate_simple_self_signed(names).expect("certificate");
    Cert::write(
        &signed.cert.pem(),
        &signed.signing_key.serialize_pem(),
        signed.cert.der().clone(),
    )
}

/// A certificate authority whose certificate is at `cert_path`.
#[derive(Debug)]
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub cert: Cert,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edge test CA");
        let key = KeyPair::generate().expect("key");
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA");
        let cert = Cert::write(&issuer.pem(), &key_pem, issuer.der().clone());
        TestCa { issuer, cert }
    }

    /// A leaf certificate for `names`, signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Cert {
        let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let params = CertificateParams::new(names).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        Cert::write(&cert.pem(), &key.serialize_pem(), cert.der().clone())
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// A client configuration that trusts `roots` and offers `alpn`.
pub fn client_config(roots: &[&Cert], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store.add(cert.der.clone()).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
