//! The `edge` binary under test: its configuration, start-up, shutdown
//! and logs, and the sampling of its resident memory and open
//! descriptors against their bounds.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::common;
use crate::conn::{Conn, get_request};
use crate::model::{
    DISK, KIB, MAX_OBJECT, MEMORY, MIB, POOL_IDLE, SAMPLE_EVERY, SLICE, UPSTREAM_TIMEOUT_MS,
};

pub struct EdgeProcess {
    pub child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl EdgeProcess {
    pub fn spawn(origin: SocketAddr, dir: &Path) -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let config = dir.join("edge.toml");
        std::fs::write(&config, edge_config()).expect("config written");
        let (stdout, stderr) = (dir.join("edge.stdout"), dir.join("edge.stderr"));
        let child = common::edge_command(origin, &dir.join("data"), listen.port(), admin.port())
            .arg("--config")
            .arg(&config)
            .env(
                "EDGE_LOG",
                std::env::var("SOAK_EDGE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("edge binary starts");
        EdgeProcess {
            child,
            listen,
            admin,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = Conn::new(self.admin);
        loop {
            let made = || get_request("/healthz", &self.admin.to_string());
            if let Ok(resp) = conn.send(&made).await
                && resp.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("edge exited at start-up ({status}): {}", self.logs());
            }
            assert!(Instant::now() < deadline, "edge never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit status (SIGKILL after the grace period).
    pub async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.stdout), read(&self.stderr))
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn edge_config() -> String {
    let timeout = format!("{UPSTREAM_TIMEOUT_MS}ms");
    format!(
        "[cache]\n\
         memory = \"{}MiB\"\n\
         disk = \"{}MiB\"\n\
         max_object_size = \"{}KiB\"\n\
         slice_size = \"{}KiB\"\n\
         [server]\n\
         shutdown_grace = \"5s\"\n\
         [upstream]\n\
         connect_timeout = \"{timeout}\"\n\
         header_timeout = \"{timeout}\"\n\
         read_timeout = \"{timeout}\"\n\
         pool_idle_timeout = \"{}s\"\n\
         pool_max_idle_per_host = 32\n",
        MEMORY / MIB,
        DISK / MIB,
        MAX_OBJECT / KIB,
        SLICE / KIB,
        POOL_IDLE.as_secs(),
    )
}

/// The edge's resident memory (KiB) and open descriptors.
pub fn sample(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Samples the edge's RSS and descriptors every `SAMPLE_EVERY` until the
/// task is aborted or the process is gone.
pub fn spawn_sampler(pid: u32, begin: Instant) -> (Arc<Mutex<Vec<Sample>>>, JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let task = {
        let samples = samples.clone();
        tokio::spawn(async move {
            while let Some((rss_kib, fds)) = sample(pid) {
                let at = begin.elapsed();
                let sample = Sample { at, rss_kib, fds };
                samples.lock().expect("samples lock").push(sample);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    (samples, task)
}

/// What the edge process used, against its bounds.
#[derive(Debug)]
pub struct Resources {
    pub idle_rss: u64,
    pub idle_fds: usize,
    pub rss_bound: u64,
    pub fds_bound: usize,
    pub samples: Vec<Sample>,
    /// Once the clients were gone and the upstream pool idle.
    pub after: Option<(u64, usize)>,
}

impl Resources {
    pub fn peak_rss(&self) -> u64 {
        self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)
    }

    pub fn peak_fds(&self) -> usize {
        self.samples.iter().map(|s| s.fds).max().unwrap_or(0)
    }

    pub fn print(&self) {
        println!(
            "edge: peak RSS {:.1} MiB (bound {:.1}), peak fds {} (bound {}); after idle {:?} \
             (idle at start {:.1} MiB, {} fds)",
            mib(self.peak_rss()),
            mib(self.rss_bound),
            self.peak_fds(),
            self.fds_bound,
            self.after
                .map(|(r, f)| format!("{:.1} MiB, {f} fds", mib(r))),
            mib(self.idle_rss),
            self.idle_fds,
        );
        let trend: Vec<String> = self
            .samples
            .iter()
            .step_by((self.samples.len() / 12).max(1))
            .map(|s| format!("{}s:{:.0}MiB/{}", s.at.as_secs(), mib(s.rss_kib), s.fds))
            .collect();
        println!("samples (t:RSS/fds): {}", trend.join(" "));
    }
}
