//! HTTPS for clients: a certificate generated here, HTTP/1.1 and h2 chosen
//! by ALPN, the same cache behind both, `X-Forwarded-Proto: https`.

use bytes::Bytes;
use edge_tests::certs::{self, Cert};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, client, eventually, logs};
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn cert_for(name: &str) -> Cert {
    certs::self_signed(&[name])
}

fn connector(cert: &Cert, alpn: &[&[u8]]) -> TlsConnector {
    TlsConnector::from(certs::client_config(&[cert], alpn))
}

/// One GET over a fresh TLS connection; returns the negotiated ALPN
/// protocol, the status, `X-Cache` and the body.
async fn get_tls(
    edge: &TestEdge,
    cert: &Cert,
    alpn: &[&[u8]],
    path: &str,
) -> (Option<Vec<u8>>, u16, String, Bytes) {
    let addr = edge.tls_addr().expect("a TLS listener");
    let (protocol, resp) = client::get_tls(addr, cert, "edge.test", alpn, path).await;
    let cache = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (protocol, resp.status().as_u16(), cache, resp.into_body())
}

#[tokio::test]
async fn https_clients_get_cached_responses_over_http1_and_h2() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/secure",
        Reply::ok("over tls").header("cache-control", "max-age=600"),
    );
    let cert = cert_for("edge.test");
    let edge = TestEdge::start_with(&origin.url(), |c| cert.serve_on(c)).await;

    let (proto, status, cache, body) = get_tls(&edge, &cert, &[b"http/1.1"], "/secure").await;
    assert_eq!(proto.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(
        (status, cache.as_str(), &body[..]),
        (200, "MISS", &b"over tls"[..])
    );
    let seen = origin.last_request("/secure").expect("request");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["forwarded"], "for=127.0.0.1;proto=https");

    let (proto, status, cache, body) =
        get_tls(&edge, &cert, &[b"h2", b"http/1.1"], "/secure").await;
    assert_eq!(proto.as_deref(), Some(&b"h2"[..]), "ALPN prefers h2");
    assert_eq!(
        (status, cache.as_str(), &body[..]),
        (200, "HIT", &b"over tls"[..])
    );
    assert_eq!(origin.hits("/secure"), 1);

    // The plain listener keeps serving, and https is its own cache key.
    let plain = edge_tests::client::get_with(&edge.url("/secure"), &[("host", "edge.test")]).await;
    assert_eq!(plain.x_cache(), "MISS");
}

#[tokio::test]
async fn http_and_https_share_objects_when_the_key_ignores_the_scheme() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/shared",
        Reply::ok("either way").header("cache-control", "max-age=600"),
    );
    let cert = cert_for("edge.test");
    let edge = TestEdge::start_with(&origin.url(), |c| {
        cert.serve_on(c);
        c.cache.key_ignore_scheme = true;
    })
    .await;
    // Same host and port in both keys: the default ports are left out.
    let plain = edge_tests::client::get_with(&edge.url("/shared"), &[("host", "edge.test")]).await;
    assert_eq!(plain.x_cache(), "MISS");
    let (_, status, cache, body) = get_tls(&edge, &cert, &[b"h2"], "/shared").await;
    assert_eq!(
        (status, cache.as_str(), &body[..]),
        (200, "HIT", &b"either way"[..])
    );
    assert_eq!(origin.hits("/shared"), 1);
}

#[tokio::test]
async fn a_bad_certificate_file_is_an_error_naming_it() {
    let origin = MockOrigin::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let bogus = dir.path().join("cert.pem");
    std::fs::write(&bogus, "not a certificate").expect("write");
    let (mut config, _data) = edge_tests::test_config(&origin.url());
    config.tls.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.tls.cert = Some(bogus.clone());
    config.tls.key = Some(bogus.clone());
    let err = edge::Server::bind(config)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains(&bogus.display().to_string()), "{err}");
}

/// The leaf certificate the edge presents for SNI `name`.
async fn presented(edge: &TestEdge, trusted: &[&Cert], name: &str) -> CertificateDer<'static> {
    let config = certs::client_config(trusted, &[]);
    let tcp = TcpStream::connect(edge.tls_addr().expect("tls"))
        .await
        .expect("connect");
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from(name.to_owned()).expect("name"), tcp)
        .await
        .unwrap_or_else(|e| panic!("handshake for {name}: {e}"));
    tls.get_ref().1.peer_certificates().expect("certificates")[0].clone()
}

#[tokio::test]
async fn certificates_are_chosen_by_sni_with_wildcards_and_a_default() {
    let origin = MockOrigin::start().await;
    let default = certs::self_signed(&["default.test", "unknown.test"]);
    let a = cert_for("a.test");
    let b = cert_for("*.b.test");
    let by_name = vec![
        edge::config::SniCert {
            names: vec!["a.test".into()],
            cert: a.cert_path.clone(),
            key: a.key_path.clone(),
        },
        edge::config::SniCert {
            names: vec!["*.b.test".into()],
            cert: b.cert_path.clone(),
            key: b.key_path.clone(),
        },
    ];
    let edge = TestEdge::start_with(&origin.url(), |c| {
        default.serve_on(c);
        c.tls.certs = by_name;
    })
    .await;
    let all = [&default, &a, &b];
    assert_eq!(presented(&edge, &all, "a.test").await, a.der);
    assert_eq!(
        presented(&edge, &all, "www.b.test").await,
        b.der,
        "wildcard"
    );
    assert_eq!(
        presented(&edge, &all, "unknown.test").await,
        default.der,
        "default"
    );
}

/// Moves the modification time of `paths` `ahead` into the future: the
/// reloader sees a change even where the file system keeps whole seconds,
/// without the test waiting one out.
fn touch_ahead(paths: &[&std::path::Path], ahead: std::time::Duration) {
    let when = std::time::SystemTime::now() + ahead;
    for path in paths {
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(when))
            .expect("set the modification time");
    }
}

#[tokio::test]
async fn a_certificate_changed_on_disk_is_served_without_a_restart() {
    logs::capture(tracing::Level::ERROR);
    let failed_reloads = || {
        logs::text()
            .matches("TLS certificates not reloaded")
            .count()
    };
    let origin = MockOrigin::start().await;
    origin.route("/r", Reply::ok("still here"));
    let first = cert_for("edge.test");
    let (cert_path, key_path) = (first.cert_path.clone(), first.key_path.clone());
    let edge = TestEdge::start_with(&origin.url(), |cfg| {
        first.serve_on(cfg);
        cfg.tls.reload_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let second = cert_for("edge.test");
    let both = [&first, &second];
    assert_eq!(presented(&edge, &both, "edge.test").await, first.der);

    // A connection open across the swap keeps working.
    let tcp = TcpStream::connect(edge.tls_addr().expect("tls"))
        .await
        .expect("connect");
    let tls = connector(&first, &[b"http/1.1"])
        .connect(ServerName::try_from("edge.test").expect("name"), tcp)
        .await
        .expect("handshake");
    let (mut open, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1");
    tokio::spawn(conn);

    // Swap the files (the mtime moves forward).
    std::fs::copy(&second.cert_path, &cert_path).expect("swap cert");
    std::fs::copy(&second.key_path, &key_path).expect("swap key");
    touch_ahead(&[&cert_path, &key_path], std::time::Duration::from_secs(10));
    eventually("the new certificate to be served", async || {
        presented(&edge, &both, "edge.test").await == second.der
    })
    .await;
    let req = Request::get("https://edge.test/r")
        .header("host", "edge.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = open
        .send_request(req)
        .await
        .expect("the old connection still serves");
    assert_eq!(resp.status(), 200);

    // A broken certificate keeps the last good one.
    let refused_before = failed_reloads();
    std::fs::write(&cert_path, "garbage").expect("break cert");
    touch_ahead(&[&cert_path], std::time::Duration::from_secs(20));
    eventually(
        "the reloader to refuse the broken certificate",
        async || failed_reloads() > refused_before,
    )
    .await;
    assert_eq!(presented(&edge, &both, "edge.test").await, second.der);
}
