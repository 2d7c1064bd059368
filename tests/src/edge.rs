//! An edge node started in-process on ephemeral ports.

use std::net::SocketAddr;

use std::time::Duration;

use cache::Clock;
use edge::{Config, EdgeHooks, Server, ServerHandle};
use tempfile::TempDir;

use crate::clocks;

/// A running edge with its own data directory; shut down when dropped.
#[derive(Debug)]
pub struct TestEdge {
    handle: Option<ServerHandle>,
    addr: SocketAddr,
    admin_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    h3_addr: Option<SocketAddr>,
    /// Every age, freshness and purge decision of this edge reads it.
    clock: Clock,
    /// Removed when the edge is dropped, unless the test supplied its own.
    _data_dir: Option<TempDir>,
}

impl TestEdge {
    /// An edge in front of `origin` with default settings.
    pub async fn start(origin: &str) -> TestEdge {
        TestEdge::start_with(origin, |_| {}).await
    }

    /// An edge in front of `origin`, after `tweak` adjusts the config.
    pub async fn start_with(origin: &str, tweak: impl FnOnce(&mut Config)) -> TestEdge {
        TestEdge::start_with_hooks(origin, tweak, edge::DefaultHooks).await
    }

    /// An edge in front of `origin` running custom hooks.
    pub async fn start_with_hooks<H: EdgeHooks>(
        origin: &str,
        tweak: impl FnOnce(&mut Config),
        hooks: H,
    ) -> TestEdge {
        let (mut config, data_dir) = test_config(origin);
        tweak(&mut config);
        let clock = clocks::for_origin(origin);
        TestEdge::launch(config, hooks, Some(data_dir), clock).await
    }

    /// An edge on a data directory the test keeps (to restart on it).
    pub async fn start_in(
        origin: &str,
        data_dir: &std::path::Path,
        tweak: impl FnOnce(&mut Config),
    ) -> TestEdge {
        let (mut config, _) = test_config(origin);
        config.data_dir = data_dir.to_owned();
        tweak(&mut config);
        let clock = clocks::for_origin(origin);
        TestEdge::launch(config, edge::DefaultHooks, None, clock).await
    }

    async fn launch<H: EdgeHooks>(
        config: Config,
        hooks: H,
        data_dir: Option<TempDir>,
        clock: Clock,
    ) -> TestEdge {
        let server = Server::bind_with_clock(config, hooks, clock.clone())
            .await
            .expect("edge binds");
        let handle = server.spawn();
        clocks::register(handle.addr(), &clock);
        TestEdge {
            addr: handle.addr(),
            admin_addr: handle.admin_addr(),
            tls_addr: handle.tls_addr(),
            h3_addr: handle.h3_addr(),
            handle: Some(handle),
            clock,
            _data_dir: data_dir,
        }
    }

    /// Moves this edge's clock forward by `by`: every stored object ages
    /// at once, purge rules and hit-for-pass marks expire, and the mock
    /// origin behind it (which shares the clock) sends later `Date`s. Real
    /// time keeps flowing too, so events keep their order.
    pub fn advance(&self, by: Duration) {
        assert!(
            self.clock.advance(by),
            "test edges run on an adjustable clock"
        );
    }

    /// The clock this edge runs on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The HTTPS listener, if the config asked for one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The HTTP/3 (UDP) listener, if the config asked for one.
    pub fn h3_addr(&self) -> Option<SocketAddr> {
        self.h3_addr
    }

    /// `http://127.0.0.1:PORT{path}` on the client-facing listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:PORT{path}` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// Shuts down gracefully (flushing the cache) and waits.
    pub async fn stop(mut self) {
        self.take_handle().shutdown().await.expect("clean shutdown");
    }

    /// Takes the handle to shut the server down explicitly.
    pub fn take_handle(&mut self) -> ServerHandle {
        self.handle.take().expect("handle already taken")
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        clocks::forget(self.addr);
        if let Some(mut handle) = self.handle.take() {
            handle.begin_shutdown();
        }
    }
}

/// Defaults with ports 0, a temporary data dir and `origin`.
pub fn test_config(origin: &str) -> (Config, TempDir) {
    let data_dir = tempfile::tempdir().expect("temp data dir");
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data_dir.path().to_owned(),
        origins: vec![origin.parse().expect("origin URL")],
        ..Config::default()
    };
    // Small tiers keep tests light; tests that need more say so.
    config.cache.memory = "32MiB".parse().expect("size");
    config.cache.disk = "64MiB".parse().expect("size");
    // Every object on disk when stored, as the restart tests expect after
    // one request (disk admission by frequency: tests/tests/inspect.rs).
    config.cache.disk_admission = edge::config::DiskAdmissionMode::All;
    (config, data_dir)
}
