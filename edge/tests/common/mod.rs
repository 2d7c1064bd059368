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
