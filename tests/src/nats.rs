//! A real `nats-server` (JetStream on) started by the test itself, on a
//! free 127.0.0.1 port with its store in a temporary directory; killed
//! when dropped. No test depends on a server the machine happens to run.
//! `scripts/setup.sh --test` installs the binary (Debian's `nats-server`).
//! [`NatsServer::cluster`] starts several routed into one JetStream
//! cluster (for replicated streams and failover).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// One JetStream server.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    /// The HTTP monitoring port (`/healthz`, `/connz`).
    monitor: u16,
    store: TempDir,
    /// In a cluster: this server's name, its route port and the others'.
    cluster: Option<(String, u16, Vec<u16>)>,
}

fn binary() -> PathBuf {
    // Debian puts it in /usr/sbin, which a test's PATH may lack.
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> NatsServer {
        let mut server = NatsServer::unstarted(None);
        server.restart();
        server
    }

    fn unstarted(cluster: Option<(String, u16, Vec<u16>)>) -> NatsServer {
        NatsServer {
            child: None,
            port: crate::free_port(),
            monitor: crate::free_port(),
            store: tempfile::tempdir().expect("nats store dir"),
            cluster,
        }
    }

    /// `n` servers routed into one JetStream cluster (`server_name`
    /// `n0`, `n1` …), each with its own store; returns once every one
    /// reports itself healthy (JetStream's meta leader elected).
    pub async fn cluster(n: usize) -> Vec<NatsServer> {
        let routes: Vec<u16> = (0..n).map(|_| crate::free_port()).collect();
        let mut servers: Vec<NatsServer> = (0..n)
            .map(|i| {
                let others = routes
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| *p)
                    .collect();
                NatsServer::unstarted(Some((format!("n{i}"), routes[i], others)))
            })
            .collect();
        for server in &mut servers {
            server.restart();
        }
        for server in &servers {
            server.wait_healthy().await;
        }
        servers
    }

    /// Waits until `/healthz` answers 200: in a cluster, once JetStream
    /// has a meta leader and this server is current with it.
    pub async fn wait_healthy(&self) {
        let url = format!("http://127.0.0.1:{}/healthz", self.monitor);
        crate::wait::eventually_within(
            &format!("nats-server {} healthy", self.port),
            Duration::from_secs(20),
            async || {
                let req = http::Request::get(&url)
                    .body(http_body_util::Full::default())
                    .expect("request");
                crate::client::try_fetch(&crate::client::http1(), req, Duration::from_secs(1))
                    .await
                    .is_some_and(|r| r.status() == 200)
            },
        )
        .await;
    }

    /// Whether a client connection named `name` is on this server now
    /// (its `/connz`).
    pub async fn has_client(&self, name: &str) -> bool {
        let url = format!("http://127.0.0.1:{}/connz?limit=1024", self.monitor);
        let req = http::Request::get(&url)
            .body(http_body_util::Full::default())
            .expect("request");
        let Some(resp) =
            crate::client::try_fetch(&crate::client::http1(), req, Duration::from_secs(1)).await
        else {
            return false;
        };
        let connz: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        connz["connections"]
            .as_array()
            .is_some_and(|conns| conns.iter().any(|c| c["name"] == name))
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its store stays for [`restart`](Self::restart)).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        let mut command = Command::new(binary());
        command
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-m")
            .arg(self.monitor.to_string())
            .arg("-sd")
            .arg(self.store.path());
        if let Some((name, route, others)) = &self.cluster {
            let routes: Vec<String> = others
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            command
                .args(["--server_name", name, "--cluster_name", "edge-tests"])
                .arg("--cluster")
                .arg(format!("nats://127.0.0.1:{route}"))
                .arg("--routes")
                .arg(routes.join(","));
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (scripts/setup.sh --test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server never listened on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
