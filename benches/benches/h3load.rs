//! Load generator of `benches/h3.sh`: GETs of one URL as fast as the edge
//! answers, over HTTP/3 (the quinn + h3 client of `edge_tests::h3`) or h2
//! over TLS (hyper + tokio-rustls), with the same shape either way: CONNS
//! connections, STREAMS requests in flight on each, for SECS seconds.
//! Prints `proto requests seconds req/s errors`.
//!
//!   cargo bench -p edge-benches --bench h3load -- \
//!     h3|h2 ADDR NAME PATH CA_PEM CONNS STREAMS SECS

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use edge_tests::h3::H3Client;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

fn tls(ca: &str, alpn: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("CA file")? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    errors: AtomicU64,
}

async fn h3_conn(
    addr: SocketAddr,
    name: String,
    path: String,
    ca: String,
    streams: usize,
    until: Instant,
    counts: Arc<Counts>,
) -> anyhow::Result<()> {
    let client = H3Client::connect_with(addr, tls(&ca, b"h3")?, &name).await?;
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (client, path, counts) = (client.clone(), path.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                match client.get(&path).await {
                    Ok(r) if r.status.is_success() => counts.ok.fetch_add(1, Ordering::Relaxed),
                    _ => counts.errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

async fn h2_conn(
    addr: SocketAddr,
    name: String,
    path: String,
    ca: String,
    streams: usize,
    until: Instant,
    counts: Arc<Counts>,
) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(tls(&ca, b"h2")?)
        .connect(ServerName::try_from(name.clone())?, tcp)
        .await?;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (mut sender, counts) = (sender.clone(), counts.clone());
        let uri = format!("https://{name}{path}");
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let req = http::Request::get(&uri)
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let ok = match sender.send_request(req).await {
                    Ok(resp) if resp.status().is_success() => {
                        resp.into_body().collect().await.is_ok()
                    }
                    _ => false,
                };
                let counter = if ok { &counts.ok } else { &counts.errors };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [proto, addr, name, path, ca, conns, streams, secs] = &args[..] else {
        bail!("usage: h3load h3|h2 ADDR NAME PATH CA_PEM CONNS STREAMS SECS (got {args:?})");
    };
    let addr: SocketAddr = addr.parse()?;
    let (conns, streams): (usize, usize) = (conns.parse()?, streams.parse()?);
    let duration = Duration::from_secs_f64(secs.parse()?);
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (name, path, ca, counts) = (name.clone(), path.clone(), ca.clone(), counts.clone());
        tasks.push(match proto.as_str() {
            "h3" => tokio::spawn(h3_conn(addr, name, path, ca, streams, until, counts)),
            "h2" => tokio::spawn(h2_conn(addr, name, path, ca, streams, until, counts)),
            other => bail!("protocol {other}: h3 or h2"),
        });
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = counts.ok.load(Ordering::Relaxed);
    println!(
        "{proto} {ok} {elapsed:.2} {:.0} {}",
        ok as f64 / elapsed,
        counts.errors.load(Ordering::Relaxed)
    );
    Ok(())
}
