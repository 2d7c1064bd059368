//! Helpers shared by the binary's integration tests.

// Each test binary uses some of them.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A tiny origin: every path is a cacheable 200 naming itself.
pub async fn origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test setup");
    let addr = listener.local_addr().expect("test setup");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let path = req.uri().path().to_owned();
                    let body = format!("object {path}");
                    // One tag per first path segment: /keep/1 → tag-keep.
                    let tag = format!("tag-{}", path.split('/').nth(1).unwrap_or(""));
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("cache-control", "max-age=3600")
                                .header("surrogate-key", tag)
                                .body(Full::new(Bytes::from(body)))
                                .expect("test setup"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("test setup")
        .local_addr()
        .expect("test setup")
        .port()
}

/// The `edge` binary for `origin` on `dir`, listening on `listen` and
/// `admin` (127.0.0.1), with the purge token [`TOKEN`] and none of the
/// caller's `EDGE_*` variables; logging and stdio are the caller's.
pub fn edge_command(
    origin: SocketAddr,
    dir: &std::path::Path,
    listen: u16,
    admin: u16,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge"));
    for (key, _) in std::env::vars() {
        if key.starts_with("EDGE_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--origin")
        .arg(format!("http://{origin}"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{listen}"))
        .arg("--admin")
        .arg(format!("127.0.0.1:{admin}"))
        .arg("--data-dir")
        .arg(dir)
        .env("EDGE_PURGE_TOKEN", TOKEN);
    cmd
}

/// The `edge` binary as a child process, killed (if still running) on drop.
pub struct Node {
    child: std::process::Child,
    pub listen: u16,
    pub admin: u16,
}

impl Node {
    /// Starts the binary on `dir` with the purge token [`TOKEN`], logging
    /// warnings only; `extra` flags are appended.
    pub fn spawn(
        origin: SocketAddr,
        dir: &std::path::Path,
        listen: u16,
        admin: u16,
        extra: &[&str],
    ) -> Node {
        let child = edge_command(origin, dir, listen, admin)
            .args(extra)
            .env("EDGE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("edge binary starts");
        Node {
            child,
            listen,
            admin,
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The purge token of every [`Node`].
pub const TOKEN: &str = "durable-purge-token";

pub type TestClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

pub fn client() -> TestClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// Sends `req` and reads the whole answer; `None` if the node did not
/// answer within `timeout`.
pub async fn send(
    client: &TestClient,
    req: Request<Full<Bytes>>,
    timeout: std::time::Duration,
) -> Option<Response<Bytes>> {
    use http_body_util::BodyExt;
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .ok()?
        .ok()?;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(timeout, body.collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    Some(Response::from_parts(parts, body))
}

/// Waits until the node's `/healthz` answers 200.
pub async fn wait_ready(client: &TestClient, node: &Node) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let req = Request::get(format!("http://127.0.0.1:{}/healthz", node.admin))
            .body(Full::default())
            .expect("test setup");
        let answer = send(client, req, std::time::Duration::from_secs(2)).await;
        if answer.is_some_and(|r| r.status() == 200) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "edge never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
