//! systemd integration, with real processes: the notify protocol observed
//! on a `NOTIFY_SOCKET` the test binds (READY=1 once listening, RELOADING=1
//! and READY=1 around a SIGHUP reload, MAINPID= and
//! READY=1 from the new process of an upgrade, STOPPING=1 on SIGTERM and
//! never from the old process of an upgrade), and socket activation
//! through `systemd-socket-activate` (by order and by name).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use edge_tests::client::{self, try_fetch};
use edge_tests::process::{Adopted, alive, clean_command, pid_file, signal, wait_exit};
use edge_tests::{MockOrigin, ResponseExt, eventually_within, free_port};
use http::Request;
use http_body_util::Full;
use tokio::net::UnixDatagram;

const EDGE: &str = env!("CARGO_BIN_EXE_edge");
const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// A child killed on drop (if the test fails before stopping it).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGTERM to `child`, and its exit status.
async fn terminate(child: Killed) -> std::process::ExitStatus {
    signal(child.0.id(), "TERM");
    tokio::task::spawn_blocking(move || {
        let mut child = child;
        wait_exit(&mut child.0, Duration::from_secs(30))
    })
    .await
    .expect("waiter")
    .expect("exits")
}

/// The next notification, as its lines.
async fn next_notice(socket: &UnixDatagram) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), socket.recv(&mut buf))
        .await
        .expect("a notification within 30s")
        .expect("recv");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn get(port: u16, path: &str) -> Option<http::Response<bytes::Bytes>> {
    let req = Request::get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", "cdn.test")
        .body(Full::default())
        .expect("request");
    try_fetch(&client::http1(), req, Duration::from_secs(30)).await
}

/// The first answer on `port`, once systemd-socket-activate listens
/// there (it binds in its own time after being started).
async fn served(port: u16, path: &str) -> http::Response<bytes::Bytes> {
    edge_tests::poll_until(
        "an answer on the activated socket",
        Duration::from_secs(30),
        async || get(port, path).await.ok_or("no answer"),
    )
    .await
}

fn edge_args(cmd: &mut Command, origin: &MockOrigin, dir: &Path, listen: u16, admin: u16) {
    cmd.arg("--origin")
        .arg(origin.url())
        .arg("--listen")
        .arg(format!("127.0.0.1:{listen}"))
        .arg("--admin")
        .arg(format!("127.0.0.1:{admin}"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--memory", "16MiB", "--disk", "64MiB"])
        // On disk after one request, for the HIT after an upgrade.
        .args(["--disk-admission", "all"])
        .env("EDGE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
}

#[tokio::test]
async fn notify_says_ready_once_listening_follows_an_upgrade_and_says_stopping() {
    let origin = MockOrigin::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let notify_path = tmp.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    origin.route(
        "/ready",
        edge_tests::Reply::ok("ready").header("cache-control", "max-age=600"),
    );
    let (listen, admin) = (free_port(), free_port());
    let data = tmp.path().join("data");
    let mut cmd = clean_command(EDGE);
    edge_args(&mut cmd, &origin, &data, listen, admin);
    let old = Killed(
        cmd.env("NOTIFY_SOCKET", &notify_path)
            .spawn()
            .expect("edge starts"),
    );

    assert_eq!(next_notice(&notify).await, ["READY=1"]);
    // Ready means listening: served at once, no retry.
    let resp = get(listen, "/ready")
        .await
        .expect("served right after READY=1");
    assert_eq!(resp.status(), 200);

    // A reload (SIGHUP): RELOADING=1 with the time, then READY=1.
    signal(old.0.id(), "HUP");
    let reloading = next_notice(&notify).await;
    assert_eq!(reloading[0], "RELOADING=1", "{reloading:?}");
    assert!(reloading[1].starts_with("MONOTONIC_USEC="), "{reloading:?}");
    assert_eq!(next_notice(&notify).await, ["READY=1"]);

    // An upgrade: the old process names the new main pid, the new one
    // says so too, with READY=1; no STOPPING=1 from the old one.
    signal(old.0.id(), "USR2");
    let mut notices = Vec::new();
    let new = loop {
        let notice = next_notice(&notify).await;
        assert!(
            !notice.iter().any(|l| l == "STOPPING=1"),
            "the service goes on: {notices:?} {notice:?}"
        );
        notices.push(notice.clone());
        if notice.iter().any(|l| l == "READY=1") {
            let pid = notice
                .iter()
                .find_map(|l| l.strip_prefix("MAINPID="))
                .expect("MAINPID with READY=1");
            break Adopted(pid.parse().expect("a pid"));
        }
        assert!(notices.len() < 10, "{notices:?}");
    };
    assert_ne!(new.0, old.0.id());
    let status = tokio::task::spawn_blocking(move || {
        let mut old = old;
        wait_exit(&mut old.0, Duration::from_secs(40))
    })
    .await
    .expect("waiter")
    .expect("old exits");
    assert!(status.success());
    // The old process's own MAINPID= notice may come before or after the
    // new one's READY=1; any notice left is a MAINPID naming the new pid.
    assert_eq!(pid_file(&data), Some(new.0));
    assert_eq!(
        get(listen, "/ready").await.expect("served").x_cache(),
        "HIT"
    );

    signal(new.0, "TERM");
    loop {
        let notice = next_notice(&notify).await;
        if notice.iter().any(|l| l == "STOPPING=1") {
            break;
        }
        assert_eq!(
            notice,
            [format!("MAINPID={}", new.0)],
            "only the old one's MAINPID"
        );
    }
    eventually_within(
        "the new process to exit",
        Duration::from_secs(30),
        async || !alive(new.0),
    )
    .await;
}

#[tokio::test]
async fn a_socket_from_systemd_is_the_listen_socket() {
    let origin = MockOrigin::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (activated, configured, admin) = (free_port(), free_port(), free_port());
    let mut cmd = Command::new(ACTIVATE);
    cmd.arg("-l")
        .arg(format!("127.0.0.1:{activated}"))
        .arg(EDGE);
    edge_args(&mut cmd, &origin, tmp.path(), configured, admin);
    let child = Killed(cmd.spawn().expect("systemd-socket-activate starts"));
    // systemd-socket-activate starts edge on the first connection; the
    // request waits in the socket's backlog meanwhile.
    let resp = served(activated, "/activated").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(origin.hits("/activated"), 1);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", configured)).is_err(),
        "the configured listen address is not bound: the passed socket replaces it"
    );
    let health = get(admin, "/healthz")
        .await
        .expect("admin bound from the config");
    assert_eq!(health.status(), 200);
    assert!(terminate(child).await.success());
}

#[tokio::test]
async fn systemd_sockets_go_by_their_names() {
    let origin = MockOrigin::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (first, second) = (free_port(), free_port());
    let (configured_listen, configured_admin) = (free_port(), free_port());
    let mut cmd = Command::new(ACTIVATE);
    cmd.arg("-l")
        .arg(format!("127.0.0.1:{first}"))
        .arg("-l")
        .arg(format!("127.0.0.1:{second}"))
        .arg("--fdname=admin:listen")
        .arg(EDGE);
    edge_args(
        &mut cmd,
        &origin,
        tmp.path(),
        configured_listen,
        configured_admin,
    );
    let child = Killed(cmd.spawn().expect("systemd-socket-activate starts"));
    // The first connection starts edge; it lands on the admin socket.
    let health = served(first, "/healthz").await;
    assert_eq!(health.status(), 200);
    let resp = get(second, "/named")
        .await
        .expect("listen on the second socket");
    assert_eq!(resp.status(), 200);
    assert_eq!(origin.hits("/named"), 1);
    for port in [configured_listen, configured_admin] {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
    assert!(terminate(child).await.success());
}
