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
        .env("EDGE_PURGE_TOKEN", TOKEN)
        // Every object on disk when stored: these tests restart, upgrade
        // and kill edges after one request of an object and expect it
        // back (disk admission by frequency: tests/tests/inspect.rs).
        .env("EDGE_DISK_ADMISSION", "all");
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

/// Sends `signal` (`TERM`, `USR2` …) to `pid` with `kill(1)`: tests stay
/// free of unsafe code, and a process the test did not start (the new
/// process of an upgrade) has no `Child` to call.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Whether `pid` is a live process (a zombie is not).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The pid in `DATA_DIR/edge.pid`, if there is one.
pub fn pid_file(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("edge.pid"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// A process the test did not start but must not leave running (the new
/// process of an upgrade): SIGKILLed on drop if still alive.
#[derive(Debug)]
pub struct Adopted(pub u32);

impl Drop for Adopted {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(self.0.to_string())
                .status();
        }
    }
}
