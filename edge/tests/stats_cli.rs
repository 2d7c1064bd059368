//! `edge stats --once` against a running node prints what it served.

mod common;

use std::process::Command;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::test]
async fn stats_once_prints_the_numbers_of_a_running_node() {
    let (origin, _hits) = common::origin().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut config = edge::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_owned(),
        node_name: "stats-node".into(),
        origins: vec![format!("http://{origin}").parse().expect("peer")],
        ..edge::Config::default()
    };
    config.cache.memory = "32MiB".parse().expect("size");
    config.cache.disk = "64MiB".parse().expect("size");
    let server = edge::Server::bind(config).await.expect("bind").spawn();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // 2 objects × 5 requests: 2 MISS, 8 HIT.
    for path in ["/a", "/b"] {
        for _ in 0..5 {
            let req = Request::get(format!("http://{}{path}", server.addr()))
                .body(Full::default())
                .expect("request");
            let resp = client.request(req).await.expect("response");
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.expect("body");
        }
    }
    let admin = server.admin_addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_edge"))
            .args(["stats", "--once", "--admin", &admin])
            .output()
    })
    .await
    .expect("join")
    .expect("edge stats runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("edge stats-node"), "{text}");
    assert!(text.contains("80.0% of requests"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("HIT") && l.contains(" 8 ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("MISS") && l.contains(" 2 ")),
        "{text}"
    );
    assert!(text.contains("peer"), "{text}");

    // A node that is not there: a clear error, not a hang.
    let dead = common::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(["stats", "--once", "--admin", &format!("127.0.0.1:{dead}")])
        .output()
        .expect("edge stats runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
    server.shutdown().await.expect("shutdown");
}
