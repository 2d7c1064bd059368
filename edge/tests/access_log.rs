//! `--access-log FILE`: access lines go to the file (text or JSON), other
//! logs stay on stdout; SIGUSR1 reopens the file.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
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
    let (mut child, listen) = logging_edge(
        &origin,
        dir.path(),
        &["--log-format", "json"],
        Stdio::piped(),
    );
    let client = client::http1();
    // The first request the edge answers, once it listens.
    let resp = first_answer(&client, listen, "/logged?x=1").await;
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

/// The edge binary in front of `origin`, with its access log at
/// `DIR/access.log`, its data in `DIR/data` and `args` added; and the port
/// it serves on.
fn logging_edge(
    origin: &MockOrigin,
    dir: &Path,
    args: &[&str],
    stdout: Stdio,
) -> (std::process::Child, u16) {
    let (listen, admin) = (free_port(), free_port());
    let child = edge_command(
        env!("CARGO_BIN_EXE_edge"),
        origin.addr(),
        &dir.join("data"),
        listen,
        admin,
    )
    .arg("--access-log")
    .arg(dir.join("access.log"))
    .args(args)
    .stdout(stdout)
    .stderr(Stdio::null())
    .spawn()
    .expect("edge starts");
    (child, listen)
}

/// Lines of the child's stdout as they come, read on a thread of their own.
fn collect_stdout(child: &mut std::process::Child) -> Arc<Mutex<String>> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut text = sink.lock().expect("stdout buffer");
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

fn send_signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {}", child.id());
}

async fn get_ok(client: &client::TestClient, listen: u16, path: &str) {
    let req = Request::get(format!("http://127.0.0.1:{listen}{path}"))
        .body(Full::default())
        .expect("request");
    let resp = client::try_fetch(client, req, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(resp.status(), 200, "{path}");
}

/// The first answer to `path` once the edge, just started, listens.
async fn first_answer(
    client: &client::TestClient,
    listen: u16,
    path: &str,
) -> http::Response<bytes::Bytes> {
    poll_until("the edge to answer", Duration::from_secs(20), async || {
        let req = Request::get(format!("http://127.0.0.1:{listen}{path}"))
            .body(Full::default())
            .expect("request");
        client::try_fetch(client, req, Duration::from_secs(10))
            .await
            .ok_or("no answer")
    })
    .await
}

/// Waits until the file at `path` has a line containing `needle`.
async fn wait_for_line(path: &Path, needle: &str) {
    poll_until(
        &format!("{needle} in {}", path.display()),
        Duration::from_secs(5),
        async || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(needle) {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
}

/// logrotate without copytruncate: the file is moved, then SIGUSR1; lines
/// from then on go to a new file at the original path.
#[tokio::test]
async fn sigusr1_after_a_move_sends_new_lines_to_a_new_file() {
    let origin = MockOrigin::start_site().await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("access.log");
    let moved = dir.path().join("access.log.1");
    let (mut child, listen) = logging_edge(&origin, dir.path(), &[], Stdio::piped());
    let stdout = collect_stdout(&mut child);
    let client = client::http1();
    first_answer(&client, listen, "/before?n=0").await;
    get_ok(&client, listen, "/before?n=1").await;
    wait_for_line(&log, "/before?n=1").await;

    std::fs::rename(&log, &moved).expect("rotate the log away");
    send_signal(&child, "USR1");
    // The node says so once the new file is the one written to.
    poll_until(
        "the reopen to be logged",
        Duration::from_secs(5),
        async || {
            let text = stdout.lock().expect("stdout buffer").clone();
            if text.contains("access log reopened") {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
    get_ok(&client, listen, "/after?n=1").await;
    get_ok(&client, listen, "/after?n=2").await;
    wait_for_line(&log, "/after?n=2").await;

    let new = std::fs::read_to_string(&log).expect("the new log");
    let old = std::fs::read_to_string(&moved).expect("the moved log");
    assert!(new.contains("/after?n=1"), "new file: {new}");
    assert!(!new.contains("/before"), "new file: {new}");
    assert!(old.contains("/before?n=1"), "moved file: {old}");
    assert!(!old.contains("/after"), "moved file: {old}");
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGUSR1's default action is to terminate: a node without an access-log
/// file (and a logrotate set up anyway) must keep serving.
#[tokio::test]
async fn sigusr1_without_an_access_log_file_keeps_the_node_serving() {
    let origin = MockOrigin::start_site().await;
    let dir = tempfile::tempdir().expect("dir");
    let (listen, admin) = (free_port(), free_port());
    let mut child = edge_command(
        env!("CARGO_BIN_EXE_edge"),
        origin.addr(),
        &dir.path().join("data"),
        listen,
        admin,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("edge starts");
    let stdout = collect_stdout(&mut child);
    let client = client::http1();
    first_answer(&client, listen, "/x").await;
    send_signal(&child, "USR1");
    poll_until("SIGUSR1 to be logged", Duration::from_secs(5), async || {
        let text = stdout.lock().expect("stdout buffer").clone();
        if text.contains("no access log file to reopen") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    get_ok(&client, listen, "/y").await;
    assert!(child.try_wait().expect("wait").is_none(), "still running");
    let _ = child.kill();
    let _ = child.wait();
}

/// `--access-log-format combined`: every line is nginx's `combined`, as a
/// parser of nginx logs (GoAccess, a regex of the format) reads it, with
/// edge's cache status, tier and duration after it.
#[tokio::test]
async fn combined_lines_parse_as_nginx_combined() {
    let origin = MockOrigin::start_site().await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("access.log");
    let (mut child, listen) = logging_edge(
        &origin,
        dir.path(),
        &["--access-log-format", "combined"],
        Stdio::null(),
    );
    let client = client::http1();
    assert_eq!(first_answer(&client, listen, "/c?x=1").await.status(), 200);
    let req = Request::get(format!("http://127.0.0.1:{listen}/c?x=1"))
        .header("referer", "https://shop.example/page")
        .header("user-agent", "curl/8.0 \"quoted\"")
        .body(Full::default())
        .expect("request");
    let resp = client::try_fetch(&client, req, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(resp.status(), 200);
    wait_for_line(&log, "cache=HIT").await;
    let _ = child.kill();
    let _ = child.wait();

    // nginx's `log_format combined`, field by field.
    let combined = regex::Regex::new(
        r#"^(?P<addr>\S+) - (?P<user>\S+) \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"(?P<rest>.*)$"#,
    )
    .expect("regex");
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<_> = text
        .lines()
        .map(|l| {
            combined
                .captures(l)
                .unwrap_or_else(|| panic!("not combined: {l}"))
        })
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let (miss, hit) = (&lines[0], &lines[1]);
    assert_eq!(&miss["addr"], "127.0.0.1");
    assert_eq!(&miss["user"], "-");
    assert_eq!(&miss["request"], "GET /c?x=1 HTTP/1.1");
    assert_eq!(&miss["status"], "200");
    assert_eq!(&miss["referer"], "-");
    assert!(
        miss["rest"].starts_with(" cache=MISS tier=- duration_ms="),
        "{}",
        &miss["rest"]
    );
    assert_eq!(&hit["referer"], "https://shop.example/page");
    // A quote in a field is escaped as nginx does, so the field ends where
    // it should.
    assert_eq!(&hit["agent"], r"curl/8.0 \x22quoted\x22");
    assert!(hit["bytes"].parse::<u64>().expect("bytes") > 0);
    assert!(
        hit["rest"].starts_with(" cache=HIT tier=memory duration_ms="),
        "{}",
        &hit["rest"]
    );
}
