//! Listeners, the accept loop, connection limits and graceful shutdown.
//!
//! Each accepted connection is served by hyper-util's auto builder (HTTP/1.1
//! with keep-alive and upgrades, or HTTP/2 with prior knowledge), wrapped in
//! [`IdleIo`] for the idle timeout, counted against `max_connections`, and
//! watched so that shutdown can let in-flight requests finish; a connection
//! switched to a tunnel is counted by [`Tunnels`] instead, and closed once
//! the grace period is over. HTTP/3 has its own accept loop over QUIC
//! (`h3/`), on the same pipeline, certificates, connection cap and drain.

pub(crate) mod data_dir;
pub(crate) mod error;
pub(crate) mod h3;
pub(crate) mod idle;
pub(crate) mod limits;
pub mod sockets;
pub(crate) mod tls;
pub(crate) mod tunnels;

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cache::Clock;
use cache::store::{Store, StoreConfig};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::admin::{self, AdminState, Live};
use crate::body::ClientBody;
use crate::config::Config;
use crate::hooks::{DefaultHooks, EdgeHooks};
use crate::metrics::Metrics;
use crate::ops::reload::{self, ConfigSource, Reload, Reloader};
use crate::ops::upgrade::{Launch, Successor, UpgradeTrigger, Upgrades};
use crate::proxy::{ConnInfo, Parts as ProxyParts, Proxy};
use crate::sites::Sites;
use crate::upstream::Upstream;
pub use data_dir::DataDirError;
use data_dir::lock_data_dir;
pub use error::ServerError;
use h3::H3Listener;
pub use idle::{ConnActivity, IdleIo, IoTimeouts, RequestActivity};
pub use limits::ConnSlot;
use limits::Limits;
use purge_api::Purger;
use sockets::Role;
use tls::TlsListener;
pub use tunnels::{TunnelGuard, Tunnels};

/// The next TLS connection, or never when there is no TLS listener.
async fn accept_tls(
    tls: &Option<TlsListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match tls {
        Some(tls) => tls.listener.accept().await,
        None => std::future::pending().await,
    }
}

/// A bound, not yet running, edge node.
#[derive(Debug)]
pub struct Server<H = DefaultHooks> {
    config: Config,
    /// The data directory's lock (held for the server's life: one process
    /// per data directory, until an upgrade hands it over) and what an
    /// upgrade needs.
    upgrades: Upgrades,
    listener: TcpListener,
    admin_listener: TcpListener,
    /// The HTTPS listener and its certificates, if configured.
    tls: Option<TlsListener>,
    /// The HTTP/3 (QUIC) listener, if configured.
    h3: Option<H3Listener>,
    proxy: Arc<Proxy<H>>,
    /// The connection settings, which a reload may change.
    limits: Arc<Limits>,
    reloader: Arc<Reloader<H>>,
    metrics: Metrics,
    registry: Registry,
    /// Connections switched to another protocol (WebSocket).
    tunnels: Arc<Tunnels>,
}

impl Server<DefaultHooks> {
    /// Binds the listeners of the stock proxy.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        Server::bind_with_hooks(config, DefaultHooks).await
    }
}

impl<H: EdgeHooks> Server<H> {
    /// Binds the listeners and prepares the pipeline with custom hooks.
    pub async fn bind_with_hooks(config: Config, hooks: H) -> Result<Self, ServerError> {
        Server::bind_with_clock(config, hooks, Clock::system()).await
    }

    /// [`bind_with_hooks`](Self::bind_with_hooks) on a given clock: every
    /// age, freshness and purge decision reads `clock` (tests advance it).
    pub async fn bind_with_clock(
        config: Config,
        hooks: H,
        clock: Clock,
    ) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| DataDirError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        // The new process of an upgrade gets its sockets from the old one
        // now and the data directory only once everything else is built
        // (see `upgrade`); otherwise: the lock first, then the sockets
        // (from systemd, or bound).
        let (mut successor, mut inherited) =
            match Successor::from_env(config.server.upgrade_timeout).await? {
                Some((successor, sockets)) => (Some(successor), Some(sockets)),
                None => (None, sockets::take_systemd()),
            };
        let early_lock = match successor {
            None => Some(lock_data_dir(&config.data_dir)?),
            Some(_) => None,
        };
        let listener = sockets::listener(Role::Listen, config.listen, inherited.as_mut()).await?;
        let admin_listener =
            sockets::listener(Role::Admin, config.admin, inherited.as_mut()).await?;
        let tls = match (
            &config.tls.listen,
            tls::CertFiles::from_settings(&config.tls),
        ) {
            (Some(addr), Some(files)) => {
                let (acceptor, certs) = tls::acceptor(files)?;
                Some(TlsListener {
                    listener: sockets::listener(Role::Tls, *addr, inherited.as_mut()).await?,
                    acceptor,
                    certs,
                })
            }
            _ => None,
        };
        // HTTP/3 shares the TLS listener's certificates (one resolver, one
        // reload), or has its own set when it is the only TLS listener.
        let (h3, h3_certs) = match (
            &config.tls.h3_listen,
            tls::CertFiles::from_settings(&config.tls),
        ) {
            (Some(addr), Some(files)) => {
                let (certs, own) = match &tls {
                    Some(tls) => (tls.certs.clone(), None),
                    None => {
                        let (_, certs) = tls::acceptor(files)?;
                        (certs.clone(), Some(certs))
                    }
                };
                let listener = H3Listener::bind(*addr, certs, &config.tls, &config.server)?;
                (Some(listener), own)
            }
            _ => (None, None),
        };
        sockets::leftovers(inherited);
        let registry = Registry::new();
        if let Some(log) = crate::observe::access_log::installed() {
            // Once per process: a second server in it shares the log.
            let _ = registry.register(Box::new(log.dropped()));
        }
        let sites = Arc::new(Sites::compile(&config)?);
        let site_names: Vec<String> = sites.all().iter().map(|s| s.name.clone()).collect();
        let metrics = Metrics::register_for_sites(&registry, &site_names)?;
        // Before the data directory: an upgrade's new process proves its
        // whole config (CA files included) before the old one gives it up.
        let upstream = Upstream::new(
            config.upstream.clone(),
            config.server.max_header_bytes.as_usize(),
            metrics.clone(),
        )?;
        let data_lock = match (early_lock, successor.as_mut()) {
            (Some(lock), _) => lock,
            (None, Some(successor)) => successor.take_data_dir(&config.data_dir).await?,
            (None, None) => lock_data_dir(&config.data_dir)?,
        };
        let store_config = StoreConfig {
            disk_admission: config.cache.disk_admission(),
            ..StoreConfig::new(
                config.data_dir.join("cache"),
                config.cache.memory.as_usize(),
                config.cache.disk.as_usize(),
            )
        };
        let store = Store::open(&store_config, Some(registry.clone())).await?;
        let mut passed = vec![
            (Role::Listen, listener.as_fd()),
            (Role::Admin, admin_listener.as_fd()),
        ];
        if let Some(tls) = &tls {
            passed.push((Role::Tls, tls.listener.as_fd()));
        }
        let upgrades = Upgrades::new(
            successor,
            &passed,
            store.clone(),
            data_lock,
            config.data_dir.clone(),
            config.server.upgrade_timeout,
        )?;
        drop(passed);
        let purger = Purger::open(
            &config.data_dir.join("purge"),
            config.purge.for_purger(),
            store.clone(),
            config.cache.key_rules(),
            clock.clone(),
        )?;
        let listen = listener.local_addr().unwrap_or(config.listen);
        let parts = ProxyParts {
            hooks,
            metrics: metrics.clone(),
            store,
            purger,
            upstream,
            listen,
            clock,
            sites,
        };
        let proxy = Arc::new(Proxy::new(&config, parts));
        // Until an embedder says where the config comes from, a reload
        // re-applies the one the server started with.
        let start = config.clone();
        let source: ConfigSource = Arc::new(move || Ok(start.clone()));
        let limits = Arc::new(Limits::new(&config.server));
        let reloader = Arc::new(Reloader::new(
            source,
            config.clone(),
            proxy.clone(),
            tls.as_ref().map(|t| t.certs.clone()).or(h3_certs.clone()),
            limits.clone(),
            metrics.clone(),
        ));
        let tunnels = Tunnels::new(metrics.open_tunnels.clone());
        if let Some(certs) = &h3_certs {
            // Only HTTP/3 uses them: watched here, as `run` watches the
            // TLS listener's.
            tls::spawn_reloader(certs, config.tls.reload_interval);
        }
        Ok(Server {
            config,
            h3,
            tunnels,
            limits,
            upgrades,
            reloader,
            listener,
            admin_listener,
            tls,
            proxy,
            metrics,
            registry,
        })
    }

    /// The HTTPS address actually bound, if there is a TLS listener.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|t| t.listener.local_addr().ok())
    }

    /// The HTTP/3 (UDP) address actually bound, if there is one.
    pub fn h3_addr(&self) -> Option<SocketAddr> {
        self.h3.as_ref().and_then(H3Listener::local_addr)
    }

    /// The client-facing address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The admin address actually bound.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.config.admin)
    }

    /// Turns on binary upgrades: [`UpgradeTrigger::request`] (what SIGUSR2
    /// does) starts `launch` and hands this server over to it.
    pub fn enable_upgrade(&mut self, launch: Launch) -> UpgradeTrigger {
        self.upgrades.enable(launch)
    }

    /// Reloads read the configuration from `source` (the binary passes
    /// the files and flags it started with).
    pub fn reload_from(&mut self, source: ConfigSource) {
        self.reloader.read_from(source);
    }

    /// Reloads this server's configuration (for SIGHUP).
    pub fn reloader(&self) -> Arc<dyn Reload> {
        self.reloader.clone()
    }

    /// The registry behind `/metrics`, for other crates to register into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish for up to `server.shutdown_grace`, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Server {
            config,
            upgrades,
            listener,
            admin_listener,
            tls,
            h3,
            proxy,
            limits,
            reloader,
            metrics,
            registry,
            tunnels,
        } = self;
        // `Alt-Svc` on the TLS listener's answers: HTTP/3 is for https
        // origins only (RFC 9114 §3.1), so the plain listener has none.
        let alt_svc = h3
            .as_ref()
            .and_then(H3Listener::local_addr)
            .filter(|_| config.tls.alt_svc)
            .and_then(|addr| {
                let value = format!(
                    "h3=\":{}\"; ma={}",
                    addr.port(),
                    config.tls.alt_svc_max_age.as_secs()
                );
                http::HeaderValue::from_str(&value).ok()
            });
        let mut h3 = h3.map(|listener| {
            listener.spawn(
                proxy.clone(),
                limits.clone(),
                metrics.clone(),
                tunnels.clone(),
            )
        });
        info!(
            listen = %listener.local_addr().unwrap_or(config.listen),
            admin = %admin_listener.local_addr().unwrap_or(config.admin),
            origins = ?config.origins.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "edge serving"
        );
        reload::spawn_peer_tasks(&proxy.pipeline(), &config);
        if let Some(tls) = &tls {
            tls::spawn_reloader(&tls.certs, config.tls.reload_interval);
        }
        proxy.purger().spawn_background();
        // After the purger's courier: the bus it attaches is fed from the
        // outbox. Connecting never waits for NATS (it may be down).
        let cluster = match config.cluster.for_cluster(
            &config.node_name,
            listener.local_addr().unwrap_or(config.listen),
            admin_listener.local_addr().unwrap_or(config.admin),
            config.purge.rule_ttl,
        ) {
            Some(settings) => {
                let cluster =
                    cluster::Cluster::start(settings, proxy.purger().clone(), &registry).await?;
                // Live shields join every site's ring, beside the static ones.
                crate::discovery::spawn(cluster.members(), proxy.clone());
                Some(cluster)
            }
            None => None,
        };
        let admin_state = Arc::new(AdminState::new(
            registry,
            proxy.purger(),
            proxy.clone(),
            reloader,
            config.node_name.clone(),
        ));
        let (stop_admin, admin_stopped) = watch::channel(false);
        let admin_task = tokio::spawn(admin::serve(
            admin_listener,
            admin_state.clone(),
            admin_stopped,
        ));

        let graceful = GracefulShutdown::new();
        let mut hand_over = upgrades.serving(proxy.purger().clone()).await;
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = hand_over.done() => break,
                permit = limits.permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (stream, client_addr, secure) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = hand_over.done() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => (stream, addr, false),
                    Err(err) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning, keep serving who we have.
                        warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                accepted = accept_tls(&tls) => match accepted {
                    Ok((stream, addr)) => (stream, addr, true),
                    Err(err) => {
                        warn!(error = %err, "TLS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let activity = ConnActivity::new();
            metrics.connections.inc();
            let slot = ConnSlot::new(permit, metrics.open_connections.clone());
            let conn_info = ConnInfo {
                client_addr,
                scheme: if secure { "https" } else { "http" },
                activity: activity.clone(),
                slot: slot.clone(),
                tunnels: tunnels.clone(),
            };
            let proxy = proxy.clone();
            let closing = hand_over.closing();
            let alt_svc = alt_svc.clone().filter(|_| secure);
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let h1 = req.version() <= http::Version::HTTP_11;
                let (proxy, conn_info) = (proxy.clone(), conn_info.clone());
                let (closing, alt_svc) = (closing.clone(), alt_svc.clone());
                // The request's future is made inside this one, not passed
                // in: captured, it would be held twice and copied with it.
                async move {
                    let mut response = proxy.handle(req.map(ClientBody::from), conn_info).await?;
                    closing.mark(h1, &mut response);
                    if let Some(value) = alt_svc {
                        response.headers_mut().insert(http::header::ALT_SVC, value);
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let watcher = graceful.watcher();
            let settings = limits.now();
            // Only TLS connections need the acceptor.
            let acceptor = tls.as_ref().filter(|_| secure).map(|t| t.acceptor.clone());
            tokio::spawn(async move {
                let (builder, timeouts) = (&settings.builder, settings.timeouts);
                let result = match acceptor {
                    None => {
                        let io = TokioIo::new(IdleIo::new(stream, timeouts, activity));
                        watcher
                            .watch(
                                builder
                                    .serve_connection_with_upgrades(io, service)
                                    .into_owned(),
                            )
                            .await
                    }
                    Some(acceptor) => {
                        // The handshake shares the first request's deadline.
                        let handshake = acceptor.accept(stream);
                        match tokio::time::timeout(settings.handshake_timeout, handshake).await {
                            Ok(Ok(tls)) => {
                                let io = TokioIo::new(IdleIo::new(tls, timeouts, activity));
                                watcher
                                    .watch(
                                        builder
                                            .serve_connection_with_upgrades(io, service)
                                            .into_owned(),
                                    )
                                    .await
                            }
                            Ok(Err(err)) => {
                                debug!(client = %client_addr, error = %err, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => {
                                debug!(client = %client_addr, "TLS handshake timed out");
                                Ok(())
                            }
                        }
                    }
                };
                if let Err(err) = result {
                    debug!(client = %client_addr, error = %err, "connection ended with error");
                }
                // A tunnel the connection became holds its own clone.
                drop(slot);
            });
        }

        hand_over.stopping();
        drop(listener);
        drop(tls);
        if let Some(h3) = &h3 {
            // GOAWAY on every HTTP/3 connection; their requests finish.
            h3.stop();
        }
        admin_state.draining.store(true, Ordering::Relaxed);
        let mut grace = limits.now().shutdown_grace;
        info!(open = graceful.count(), grace = ?grace, "shutting down: no longer accepting");
        if let Some(linger) = hand_over.linger(grace) {
            // Handed over: HTTP/1.1 connections close after their next
            // response (`Connection: close`) rather than under a client
            // that may be sending on them; all permits back = all closed.
            let all = u32::try_from(limits.max_connections()).unwrap_or(u32::MAX);
            let _ = tokio::time::timeout(linger, limits.permits.acquire_many(all)).await;
            grace = grace.saturating_sub(linger);
        }
        let finished = async {
            graceful.shutdown().await;
            tunnels.drained().await;
            if let Some(h3) = h3.as_mut() {
                h3.drained().await;
            }
        };
        match tokio::time::timeout(grace, finished).await {
            Ok(()) => info!("all connections finished"),
            Err(_) => {
                warn!(
                    tunnels = tunnels.count(),
                    "grace period over, dropping the remaining connections"
                );
                // Tunnels have no request to finish: they only close.
                // Waited for (briefly), so their ends are counted.
                tunnels.close_all();
                let _ = tokio::time::timeout(Duration::from_secs(1), tunnels.drained()).await;
            }
        }
        if let Some(h3) = &h3 {
            h3.close().await;
        }
        if let Some(cluster) = cluster {
            // Deletes this node's membership entry: the others drop it now
            // rather than after the heartbeat TTL.
            cluster.leave().await;
        }
        let _ = stop_admin.send(true);
        admin_task.await?;
        proxy.close().await;
        hand_over.exited();
        Ok(())
    }

    /// Runs on a background task; the handle stops it. Used by tests and
    /// embedders that manage their own runtime.
    pub fn spawn(self) -> ServerHandle {
        let addr = self.local_addr();
        let admin_addr = self.admin_addr();
        let tls_addr = self.tls_addr();
        let h3_addr = self.h3_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            let _ = rx.await;
        }));
        ServerHandle {
            addr,
            admin_addr,
            tls_addr,
            h3_addr,
            stop: Some(tx),
            task,
        }
    }
}

/// A server running on a background task.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    h3_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The HTTPS address, if there is a TLS listener.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The HTTP/3 (UDP) address, if there is an HTTP/3 listener.
    pub fn h3_addr(&self) -> Option<SocketAddr> {
        self.h3_addr
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down gracefully and waits until the server has stopped.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.begin_shutdown();
        self.wait().await
    }

    /// Waits for the server to stop (after [`begin_shutdown`](Self::begin_shutdown)).
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task.await?
    }
}

impl<H: EdgeHooks> Live for Proxy<H> {
    fn export_gauges(&self) {
        Proxy::export_gauges(self);
    }

    fn peers(&self) -> Vec<crate::routing::PeerView> {
        self.pipeline().routing().snapshot()
    }

    fn sites(&self) -> Arc<Sites> {
        Proxy::sites(self)
    }

    fn body_timeout(&self) -> Duration {
        self.pipeline().client_body_timeout()
    }

    fn inspect<'a>(&'a self, url: &'a str) -> crate::admin::Inspecting<'a> {
        // The generation in force now, kept for the whole inspection.
        let pipeline = self.pipeline();
        Box::pin(async move { pipeline.inspect(url).await })
    }

    fn live_log(&self) -> Arc<crate::observe::live_log::LiveLog> {
        Proxy::live_log(self)
    }
}
