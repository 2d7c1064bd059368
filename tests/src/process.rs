//! The `edge` binary as a child process, for what only a real process
//! shows (`kill -9`, signals, the command line). The binary's path is the
//! caller's: `env!("CARGO_BIN_EXE_edge")` exists only in edge's own
//! integration tests.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;

use crate::client;
use crate::wait::eventually_within;

/// The purge token of every [`edge_command`] and [`Node`].
pub const TOKEN: &str = "durable-purge-token";

/// The binary at `bin` without the caller's `EDGE_*` variables, so the
/// developer's environment stays out of the test.
pub fn clean_command(bin: impl AsRef<Path>) -> Command {
    let mut cmd = Command::new(bin.as_ref());
    for (key, _) in std::env::vars() {
        if key.starts_with("EDGE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The binary at `bin` for `origin` on `dir`, listening on `listen` and
/// `admin` (127.0.0.1), with the purge token [`TOKEN`] and none of the
/// caller's `EDGE_*` variables; logging and stdio are the caller's.
pub fn edge_command(
    bin: impl AsRef<Path>,
    origin: SocketAddr,
    dir: &Path,
    listen: u16,
    admin: u16,
) -> Command {
    let mut cmd = clean_command(bin);
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
#[derive(Debug)]
pub struct Node {
    child: Child,
    pub listen: u16,
    pub admin: u16,
}

impl Node {
    /// Starts the binary at `bin` on `dir` with the purge token [`TOKEN`],
    /// logging warnings only; `extra` flags are appended.
    pub fn spawn(
        bin: impl AsRef<Path>,
        origin: SocketAddr,
        dir: &Path,
        listen: u16,
        admin: u16,
        extra: &[&str],
    ) -> Node {
        let child = edge_command(bin, origin, dir, listen, admin)
            .args(extra)
            .env("EDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("edge binary starts");
        Node {
            child,
            listen,
            admin,
        }
    }

    /// Waits until the node's `/healthz` answers 200 (a process starts in
    /// its own time: recovering a data directory can take seconds).
    pub async fn wait_ready(&self) {
        let client = client::http1();
        let url = format!("http://127.0.0.1:{}/healthz", self.admin);
        eventually_within(
            "the edge to become ready",
            Duration::from_secs(30),
            async || {
                let req = Request::get(&url).body(Full::default()).expect("request");
                client::try_fetch(&client, req, Duration::from_secs(2))
                    .await
                    .is_some_and(|r| r.status() == 200)
            },
        )
        .await;
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

/// Waits for `child` to exit, at most `limit`; `None` if it is still
/// running then. Polls: std has no wait with a timeout.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
