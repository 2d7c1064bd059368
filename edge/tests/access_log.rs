//! `--access-log FILE`: access lines go to the file (text or JSON), other
//! logs stay on stdout.

use std::process::Stdio;
use std::time::Duration;

use edge_tests::process::edge_command;
use edge_tests::{MockOrigin, client, free_port, poll_until};
use http::Request;
use http_body_util::Full;

#[tokio::test]
async fn access_lines_go_to_the_file_in_json() {
    let origin = MockOrigin::start_site().await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("access.log");
    let (listen, admin) = (free_port(), free_port());
    let data = dir.path().join("data");
    let mut child = edge_command(
        env!("CARGO_BIN_EXE_edge"),
        origin.addr(),
        &data,
        listen,
        admin,
    )
    .arg("--access-log")
    .arg(&log)
    .args(["--log-format", "json"])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("edge starts");
    let client = client::http1();
    // The first request the edge answers, once it listens.
    let resp = poll_until("the edge to answer", Duration::from_secs(20), async || {
        let req = Request::get(format!("http://127.0.0.1:{listen}/logged?x=1"))
            .body(Full::default())
            .expect("request");
        client::try_fetch(&client, req, Duration::from_secs(10))
            .await
            .ok_or("no answer")
    })
    .await;
    assert_eq!(resp.status(), 200);
    let line = poll_until(
        &format!("an access line in {}", log.display()),
        Duration::from_secs(5),
        async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let line = text.lines().find(|l| l.contains("/logged?x=1"));
            line.map(str::to_owned).ok_or(text)
        },
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(json["method"], "GET");
    assert_eq!(json["status"], 200);
    assert_eq!(json["cache"], "MISS");
    assert_eq!(json["peer"], origin.addr().to_string());
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
