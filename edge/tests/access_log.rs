//! `--access-log FILE`: access lines go to the file (text or JSON), other
//! logs stay on stdout.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::test]
async fn access_lines_go_to_the_file_in_json() {
    let (origin, _) = common::origin().await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("access.log");
    let (listen, admin) = (common::free_port(), common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge"))
        .env_remove("EDGE_LOG")
        .args(["--origin", &format!("http://{origin}")])
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--access-log")
        .arg(&log)
        .args(["--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("edge starts");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let req = Request::get(format!("http://127.0.0.1:{listen}/logged?x=1"))
            .body(Full::default())
            .expect("request");
        if let Ok(resp) = client.request(req).await {
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.expect("body");
            break;
        }
        assert!(Instant::now() < deadline, "edge never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("/logged?x=1")) {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no access line in {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(json["method"], "GET");
    assert_eq!(json["status"], 200);
    assert_eq!(json["cache"], "MISS");
    assert_eq!(json["peer"], origin.to_string());
    let _ = child.kill();
    let out = child.wait_with_output().expect("stdout");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("edge serving"),
        "other logs on stdout: {stdout}"
    );
    assert!(
        !stdout.contains("/logged"),
        "no access lines on stdout: {stdout}"
    );
}
