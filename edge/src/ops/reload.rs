//! Live configuration reload (SIGHUP, `POST /reload`): the config file is
//! read again and checked whole (parse, validation, sites compiled, TLS
//! certificates loaded, the upstream CA read), and only then swapped in.
//! A file that fails any check changes nothing: the error names the file
//! and line, and the running configuration keeps serving.
//!
//! What the swap changes: the request pipeline (sites and rules, origins
//! and shields, balance and health, cache policy knobs, header and purge
//! settings), the TLS certificates, the purge API's token and peers, and,
//! when `[upstream]` changed, the connections to peers. Peers that stay
//! keep their health. Keys a running process cannot change (listeners,
//! data directory, tier sizes, threads, logging) keep their value and are
//! reported (`config::changes::live_part`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tracing::{error, info, warn};

use crate::config::changes::{self, Changes};
use crate::config::{Config, ConfigError};
use crate::hooks::EdgeHooks;
use crate::metrics::Metrics;
use crate::proxy::{Pipeline, Proxy};
use crate::server::limits::Limits;
use crate::server::tls::{CertFiles, Certs, TlsError};
use crate::sites::{Sites, SitesError};
use crate::upstream::{CaError, Upstream};

/// Where a reload reads the configuration: the files and flags given at
/// start, read again.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Sites(#[from] SitesError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    UpstreamCa(#[from] CaError),
}

/// A reload that applied.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    /// The generation now in force (1 at start).
    pub generation: u64,
    #[serde(flatten)]
    pub changes: Changes,
    /// Reading, checking and swapping, in milliseconds.
    pub took_ms: f64,
}

/// A node that can reload its configuration (for the admin listener and
/// the signal handler, which do not know the hooks type).
pub trait Reload: Send + Sync + std::fmt::Debug {
    /// Reads the configuration again and applies it, or changes nothing.
    /// Blocking (file reads, certificate parsing): call it off the
    /// runtime's worker threads, e.g. with `spawn_blocking`.
    fn reload(&self) -> Result<Reloaded, ReloadError>;

    /// The generation in force.
    fn generation(&self) -> u64;
}

/// Reloads one server's configuration.
pub(crate) struct Reloader<H> {
    source: Mutex<ConfigSource>,
    /// The configuration in force; held for the whole reload so that two
    /// reloads never interleave (no await while it is held).
    applied: Mutex<Config>,
    proxy: Arc<Proxy<H>>,
    /// The TLS listener's certificates, if there is one.
    certs: Option<Arc<Certs>>,
    limits: Arc<Limits>,
    metrics: Metrics,
    generation: AtomicU64,
}

impl<H> std::fmt::Debug for Reloader<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<H: EdgeHooks> Reloader<H> {
    pub fn new(
        source: ConfigSource,
        applied: Config,
        proxy: Arc<Proxy<H>>,
        certs: Option<Arc<Certs>>,
        limits: Arc<Limits>,
        metrics: Metrics,
    ) -> Self {
        Reloader {
            source: Mutex::new(source),
            applied: Mutex::new(applied),
            proxy,
            certs,
            limits,
            metrics,
            generation: AtomicU64::new(1),
        }
    }

    /// Reloads read the configuration from `source` from now on.
    pub fn read_from(&self, source: ConfigSource) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = source;
    }

    /// Reads and checks everything, then swaps; returns the configuration
    /// now in force and what changed.
    fn apply(&self, applied: &Config) -> Result<(Config, Changes), ReloadError> {
        let source = self
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let read = source()?;
        let (next, kept) = changes::live_part(applied, read);
        let mut sites = Sites::compile(&next)?;
        sites.keep_limits_of(&self.proxy.sites());
        let sites = Arc::new(sites);
        // Certificates are read on every reload, changed or not: renewing
        // them in place and sending SIGHUP is the usual way.
        let certs = match (&self.certs, CertFiles::from_settings(&next.tls)) {
            (Some(certs), Some(files)) => Some((certs, Certs::stage(files)?)),
            _ => None,
        };
        let upstream = if next.upstream == applied.upstream
            && next.server.max_header_bytes == applied.server.max_header_bytes
        {
            None
        } else {
            Some(Upstream::new(
                next.upstream.clone(),
                next.server.max_header_bytes.as_usize(),
                self.metrics.clone(),
            )?)
        };
        let changes = changes::between(applied, &next, kept);

        // Everything checked: from here on nothing can fail.
        let pipeline = self.proxy.prepare(&next, sites, upstream);
        if let Some((certs, staged)) = certs {
            certs.install(staged);
        }
        self.proxy
            .purger()
            .reconfigure(next.purge.for_purger(), next.cache.key_rules());
        spawn_peer_tasks(&pipeline, &next);
        self.proxy.install(pipeline);
        self.limits.set(&next.server);
        Ok((next, changes))
    }
}

impl<H: EdgeHooks> Reload for Reloader<H> {
    fn reload(&self) -> Result<Reloaded, ReloadError> {
        let started = Instant::now();
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        // systemd: RELOADING=1 now, READY=1 once done either way (a bad
        // file leaves the node serving the running config).
        crate::ops::notify::reloading();
        let result = self.apply(&applied);
        crate::ops::notify::ready();
        match result {
            Ok((next, changes)) => {
                *applied = next;
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                self.metrics
                    .config_generation
                    .set(i64::try_from(generation).unwrap_or(i64::MAX));
                let took_ms = started.elapsed().as_secs_f64() * 1000.0;
                info!(
                    generation,
                    took_ms,
                    sites_added = ?changes.sites_added,
                    sites_removed = ?changes.sites_removed,
                    sites_changed = ?changes.sites_changed,
                    peers_added = ?changes.peers_added,
                    peers_removed = ?changes.peers_removed,
                    sections_changed = ?changes.sections_changed,
                    "configuration reloaded"
                );
                if !changes.needs_restart.is_empty() {
                    warn!(
                        keys = ?changes.needs_restart,
                        "changed keys that need a restart keep their running values"
                    );
                }
                Ok(Reloaded {
                    generation,
                    changes,
                    took_ms,
                })
            }
            Err(err) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                error!(error = %err, "configuration not reloaded; the running one is unchanged");
                Err(err)
            }
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// Starts the health probes and DNS re-resolution of a pipeline's peers;
/// they stop by themselves once the pipeline is gone.
pub(crate) fn spawn_peer_tasks<H: EdgeHooks>(pipeline: &Pipeline<H>, config: &Config) {
    for (site, routing) in pipeline.sites().all().iter().zip(pipeline.routings()) {
        crate::routing::spawn_probes(routing, pipeline.upstream(), config);
        crate::routing::spawn_resolver(routing, &site.origins, config);
    }
}
