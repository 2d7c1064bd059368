//! The cluster on NATS JetStream, for a fleet that should need no peer
//! lists (issue 22): optional at run time (`--cluster nats://…`); without
//! it, `purge-api`'s HTTP fan-out is the embedded default.
//!
//! - [`bus`]: purges published on a JetStream stream ([`JetStreamBus`],
//!   the purger's [`purge_api::PurgeBus`]), message id = purge id;
//! - [`consumer`]: this node's durable consumer, applying each purge
//!   before acknowledging it;
//! - [`membership`]: one KV entry per node with a heartbeat; the live
//!   members, for the shield ring and `/peers`;
//! - [`metrics`], [`config`], [`error`].
//!
//! Crates point one way: `edge` → `cluster` → `purge-api`. Nothing here
//! blocks a request: publication waits only inside the purge API's own
//! request, and everything else runs on background tasks.
//!
//! ```no_run
//! # async fn run(purger: std::sync::Arc<purge_api::Purger>) -> cluster::Result<()> {
//! use cluster::{Cluster, ClusterConfig, Member, Role};
//! let node = Member {
//!     name: "pop-fra-1".into(),
//!     role: Role::Edge,
//!     url: "http://10.0.0.1:8080".into(),
//!     admin_url: "http://10.0.0.1:9090".into(),
//!     weight: 1,
//! };
//! let config = ClusterConfig::new(vec!["nats://127.0.0.1:4222".into()], node);
//! let cluster = Cluster::start(config, purger, &prometheus::Registry::new()).await?;
//! let members = cluster.members(); // a watch of the live members
//! # drop(members);
//! cluster.leave().await;
//! # Ok(()) }
//! ```

pub mod bus;
pub mod config;
pub mod consumer;
pub mod error;
pub mod membership;
pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use async_nats::ConnectOptions;
use purge_api::Purger;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use bus::JetStreamBus;
pub use config::{ClusterConfig, Member, Role};
pub use error::{Error, Result};
pub use membership::Members;
pub use metrics::Metrics;

/// How long a JetStream API request (not a publish) waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A node's part in the cluster: its connection, consumer, heartbeat.
#[derive(Debug)]
pub struct Cluster {
    client: async_nats::Client,
    members: watch::Receiver<Members>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    metrics: Metrics,
}

/// The longest a starting node holds its listeners for the purge stream's
/// backlog (a stream of `rule_ttl` of purges replays in well under this).
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// The longest a starting node waits for the membership bucket's current
/// entries (one small message per node).
const MEMBERS_WAIT: Duration = Duration::from_secs(3);

impl Cluster {
    /// Connects (in the background: an unreachable NATS is not an error;
    /// purges queue in the outbox until it is back), attaches the purge
    /// bus to `purger`, and starts the consumer and the heartbeat.
    pub async fn start(
        config: ClusterConfig,
        purger: Arc<Purger>,
        registry: &prometheus::Registry,
    ) -> Result<Cluster> {
        let metrics = Metrics::register(registry)?;
        let client = connect(&config, &metrics).await?;
        let config = Arc::new(config);
        let bus = Arc::new(JetStreamBus::new(client.clone(), &config, metrics.clone()));
        if purger.attach_bus(bus).is_err() {
            warn!("the purger already has a purge bus; keeping it");
        }
        let mut js = async_nats::jetstream::new(client.clone());
        // Acks of membership puts: bounded as API requests are (`connect`).
        js.set_timeout(REQUEST_TIMEOUT.max(config.publish_timeout));
        // Best effort, bounded: with NATS up, the stream exists before the
        // first purge is published here (else that one answers 202).
        let ready = tokio::time::timeout(config.publish_timeout, async {
            while client.connection_state() != async_nats::connection::State::Connected {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            bus::ensure_stream(&js, &config).await
        })
        .await;
        let stream_ready = matches!(ready, Ok(Ok(_)));
        match ready {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                warn!(error = %err, "purge stream not ready yet; purges queue until it is")
            }
            Err(_) => warn!("NATS not reachable yet; purges queue until it is"),
        }
        let (stop, stopped) = watch::channel(false);
        let (caught_up_tx, mut caught_up) = watch::channel(false);
        let (members_tx, members) = watch::channel(Members::default());
        let mut tasks = vec![
            tokio::spawn(consumer::run(
                js.clone(),
                config.clone(),
                purger.clone(),
                metrics.clone(),
                caught_up_tx,
                stopped.clone(),
            )),
            tokio::spawn(membership::run(
                js,
                config.clone(),
                members_tx,
                metrics.clone(),
                stopped.clone(),
            )),
        ];
        tasks.push(tokio::spawn(watch_backlog(
            Arc::downgrade(&purger),
            metrics.clone(),
            stopped,
        )));
        // A node that just joined (or was down) must not serve what was
        // purged meanwhile: the listeners accept only once the purges the
        // stream holds are applied here. Bounded, and only when NATS
        // answered: without it the node serves at once, as a lone node.
        if stream_ready {
            // (`is_err` at once: the Ok holds a borrow of the watch.)
            let late = tokio::time::timeout(CATCH_UP_WAIT, caught_up.wait_for(|c| *c))
                .await
                .is_err();
            if late {
                warn!(
                    waited = ?CATCH_UP_WAIT,
                    "purge stream not caught up; serving while the rest is applied"
                );
            }
            // And the members as the bucket holds them (this node among
            // them once loaded): an edge starts with its shield ring
            // rather than sending its first misses straight to the origin.
            let mut loaded = members.clone();
            let late = tokio::time::timeout(MEMBERS_WAIT, loaded.wait_for(|m| !m.is_empty()))
                .await
                .is_err();
            if late {
                warn!(waited = ?MEMBERS_WAIT, "cluster members not loaded yet; serving without them");
            }
        }
        info!(servers = ?config.servers, node = %config.node.name, role = config.node.role.as_str(), "cluster on NATS JetStream");
        Ok(Cluster {
            client,
            members,
            stop,
            tasks,
            metrics,
        })
    }

    /// The live members (this node included), updated as they come and go.
    pub fn members(&self) -> watch::Receiver<Members> {
        self.members.clone()
    }

    /// Whether a NATS server is connected now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A clean stop: the consumer stops (what it has not acked is
    /// redelivered at the next start), this node's membership entry is
    /// deleted so the others drop it at once, and the connection is
    /// flushed.
    pub async fn leave(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
    }
}

async fn connect(config: &ClusterConfig, metrics: &Metrics) -> Result<async_nats::Client> {
    let connected = metrics.connected.clone();
    let mut options = ConnectOptions::new()
        .name(format!("edge {}", config.node.name))
        // Start serving with NATS away; purges queue until it is back.
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        // JetStream API requests (consumer and bucket lookups) go unanswered
        // while a consumer's or stream's leader is re-elected after a server
        // is lost; the client's 10 s default left purges unapplied (and
        // members aged out) that long after one of three servers died. The
        // loops around these requests ask again; 2 s is ample on any link.
        .request_timeout(Some(REQUEST_TIMEOUT))
        .reconnect_delay_callback(|attempts| {
            // Fast at first (a server restart takes a moment), capped low:
            // queued purges go out as soon as NATS is back.
            Duration::from_millis(50 * 2u64.pow(attempts.min(5) as u32)).min(Duration::from_secs(1))
        })
        .event_callback(move |event| {
            let connected = connected.clone();
            async move {
                match event {
                    async_nats::Event::Connected => connected.set(1),
                    async_nats::Event::Disconnected | async_nats::Event::Closed => connected.set(0),
                    _ => {}
                }
            }
        });
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some((user, pass)) = &config.user {
        options = options.user_and_password(user.clone(), pass.clone());
    }
    if let Some(path) = &config.credentials {
        options = options
            .credentials_file(path)
            .await
            .map_err(|source| Error::Credentials {
                path: path.display().to_string(),
                source,
            })?;
    }
    if config.tls {
        options = options.require_tls(true);
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    options
        .connect(config.servers.clone())
        .await
        .map_err(Error::Connect)
}

/// Mirrors the purger's bus backlog into the `queued` gauge.
async fn watch_backlog(
    purger: std::sync::Weak<Purger>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(purger) = purger.upgrade() else {
            return;
        };
        metrics.queued.set(purger.bus_backlog_now() as i64);
    }
}
