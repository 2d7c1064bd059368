//! Invalidation: purges by URL, prefix, host and tag, hard or soft, durable
//! in RocksDB and forwarded to the other nodes of a cluster.
//!
//! - [`rules`]: purges as rules applied lazily at lookup ([`Verdict`]);
//! - [`db`]: RocksDB under `DATA_DIR/purge`, every write synced before the
//!   API answers;
//! - [`api`]: the JSON API's parsing, validation and bearer-token check;
//! - [`fanout`]: the durable outbox that delivers purges to peers;
//! - [`bus`]: the seam to a purge bus every node reads (the `cluster`
//!   crate's JetStream stream), fed from the same outbox.
//!
//! [`Purger`] ties them together. It knows no sockets: `edge` mounts
//! [`Purger::handle`] on its admin listener and asks [`Purger::verdict`]
//! about every object it finds.

pub mod api;
pub mod bus;
pub mod db;
pub mod fanout;
pub mod rules;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use cache::store::Store;
use cache::{CacheKey, Clock, KeyRules};
use http::{HeaderMap, Method, Response, StatusCode};
use serde::Serialize;
use tokio::sync::Notify;
use tracing::{error, info, warn};

pub use api::{ApiError, Auth};
use api::{check_token, json_response, parse_request};
pub use bus::{BUS_PEER, BusError, PurgeBus};
use db::Db;
use fanout::{Attempts, Fanout, REPLICATE_PATH};
pub use rules::{PurgeRecord, RuleSet, Verdict};

/// Why the purge store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("cannot open the purge database at {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("purge database: {0}")]
    Db(#[source] rocksdb::Error),
    #[error("purge database closed after a failed write and not reopened yet")]
    Closed,
    #[error("purge database handed to the upgraded process; retry in a moment")]
    Released,
    #[error(
        "purge database: only {free} bytes free on its disk; purges are refused until there is room"
    )]
    NoSpace { free: u64 },
    #[error("cannot encode a purge: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot decode a stored purge: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("purge task failed: {0}")]
    Task(String),
}

/// Settings of the purge machinery.
#[derive(Clone)]
pub struct PurgeConfig {
    /// Bearer token for the API; `None` turns the API off.
    pub token: Option<String>,
    /// Admin URLs of the other nodes (`http://host:port`).
    pub peers: Vec<String>,
    /// How long rules are kept; objects older than this are refetched.
    pub rule_ttl: Duration,
    /// Most items per list in one request.
    pub max_items: usize,
    /// First and longest wait between deliveries to a peer.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl std::fmt::Debug for PurgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token never reaches a log.
        f.debug_struct("PurgeConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("peers", &self.peers)
            .field("rule_ttl", &self.rule_ttl)
            .field("max_items", &self.max_items)
            .finish_non_exhaustive()
    }
}

impl Default for PurgeConfig {
    fn default() -> Self {
        PurgeConfig {
            token: None,
            peers: Vec::new(),
            rule_ttl: Duration::from_secs(7 * 86_400),
            max_items: 1000,
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// The purge machinery of one node.
#[derive(Debug)]
pub struct Purger {
    db: Arc<Db>,
    rules: RuleSet,
    store: Store,
    /// Swapped whole by a reload, as are the settings.
    key_rules: ArcSwap<KeyRules>,
    config: ArcSwap<PurgeConfig>,
    fanout: Fanout,
    /// Wakes the courier when a purge is accepted.
    wake: Arc<Notify>,
    /// Purges accepted since start, by kind, for metrics.
    pub counts: PurgeCounts,
    /// Outbox entries at the courier's last pass.
    backlog: AtomicU64,
    /// Of those, purges still to publish on the bus.
    bus_backlog: AtomicU64,
    /// The cluster's purge bus, once attached (never detached: a node
    /// leaves a cluster by restarting without one).
    bus: OnceLock<Arc<dyn PurgeBus>>,
    /// Orders writes that change the rules (new purges, the expiry sweep),
    /// so a sweep never rebuilds the index from a read older than a purge.
    apply: tokio::sync::Mutex<()>,
    /// Purge times and rule expiry run on the cache's clock: a purge must
    /// compare with the request times of stored objects on one timeline.
    clock: Clock,
}

/// Purges accepted since start.
#[derive(Debug, Default)]
pub struct PurgeCounts {
    pub urls: AtomicU64,
    pub prefixes: AtomicU64,
    pub hosts: AtomicU64,
    pub tags: AtomicU64,
    pub replicated: AtomicU64,
    /// What [`export`](PurgeCounts::export) has reported so far.
    exported: [AtomicU64; 5],
}

impl PurgeCounts {
    /// Calls `add(kind, n)` with what was counted since the last call, for
    /// a metrics counter.
    pub fn export(&self, mut add: impl FnMut(&'static str, u64)) {
        let kinds = [
            ("url", &self.urls),
            ("prefix", &self.prefixes),
            ("host", &self.hosts),
            ("tag", &self.tags),
            ("replicated", &self.replicated),
        ];
        for ((kind, count), exported) in kinds.into_iter().zip(&self.exported) {
            let now = count.load(Ordering::Relaxed);
            let before = exported.swap(now, Ordering::Relaxed);
            if now > before {
                add(kind, now - before);
            }
        }
    }
}

/// One peer's delivery state, in `GET /purge/{id}`.
#[derive(Debug, Serialize)]
struct PeerDelivery {
    peer: String,
    state: &'static str,
    #[serde(flatten)]
    attempts: Attempts,
}

/// What the purge database held at start.
struct Loaded {
    records: Vec<PurgeRecord>,
    /// Ids of records that did not decode.
    broken: Vec<String>,
    watermark: u64,
}

/// Opens the purge database and reads it whole. A database RocksDB cannot
/// open or read (a damaged file, a truncated manifest) is moved aside to
/// `purge.unreadable-SECS` beside it and replaced by an empty one. The loss
/// is reported as a broken record, so the caller treats the whole cache as
/// purged: the lost records might have covered anything. Only when even
/// the move fails does the node refuse to start.
fn open_db(dir: &Path) -> Result<(Db, Loaded), PurgeError> {
    let load = |db: &Db| -> Result<Loaded, PurgeError> {
        let (records, broken) = db.records()?;
        Ok(Loaded {
            records,
            broken,
            watermark: db.watermark()?,
        })
    };
    let err = match Db::open(dir).and_then(|db| load(&db).map(|loaded| (db, loaded))) {
        Ok(opened) => return Ok(opened),
        Err(err) => err,
    };
    // A file name, not cache semantics: the system clock.
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = dir.with_file_name(format!("purge.unreadable-{secs}"));
    if std::fs::rename(dir, &aside).is_err() {
        return Err(err);
    }
    error!(
        error = %err,
        moved_to = %aside.display(),
        "purge database unreadable; starting a new one and treating the whole cache as purged \
         (purges still owed to peers are lost)"
    );
    let db = Db::open(dir)?;
    let loaded = Loaded {
        records: Vec::new(),
        broken: vec!["(the whole database)".to_owned()],
        watermark: 0,
    };
    Ok((db, loaded))
}

impl Purger {
    /// Opens the purge database under `dir` and loads the rules in force.
    pub fn open(
        dir: &Path,
        config: PurgeConfig,
        store: Store,
        key_rules: KeyRules,
        clock: Clock,
    ) -> Result<Arc<Purger>, PurgeError> {
        let (
            db,
            Loaded {
                records,
                broken,
                watermark,
            },
        ) = open_db(dir)?;
        let rules = RuleSet::new(config.rule_ttl);
        if !broken.is_empty() {
            // A purge we cannot read might cover anything. Refusing to
            // start would keep the node down for a metadata glitch; the safe
            // choice is a durable purge of everything stored before now.
            warn!(ids = ?broken, "unreadable purge records; treating the whole cache as purged");
            let recovery = PurgeRecord {
                id: format!("recovery-{}", new_id()),
                at: rules::millis(clock.now()),
                soft: false,
                url_keys: Vec::new(),
                urls: Vec::new(),
                prefixes: Vec::new(),
                hosts: Vec::new(),
                tags: Vec::new(),
                all: true,
            };
            db.put(&recovery, &[])?;
            rules.insert(&recovery);
        }
        let now = clock.now();
        let (live, expired): (Vec<_>, Vec<_>) =
            records.into_iter().partition(|r| !rules.expired(r, now));
        forget(&db, &expired)?;
        rules.forget_before(watermark);
        for record in &live {
            rules.insert(record);
        }
        info!(
            rules = live.len(),
            expired = expired.len(),
            "purge rules loaded"
        );
        Ok(Arc::new(Purger {
            db: Arc::new(db),
            rules,
            store,
            key_rules: ArcSwap::from_pointee(key_rules),
            config: ArcSwap::from_pointee(config),
            fanout: Fanout::new(),
            wake: Arc::new(Notify::new()),
            counts: PurgeCounts::default(),
            backlog: AtomicU64::new(0),
            bus_backlog: AtomicU64::new(0),
            bus: OnceLock::new(),
            apply: tokio::sync::Mutex::new(()),
            clock,
        }))
    }

    /// The settings in force.
    pub fn config(&self) -> Arc<PurgeConfig> {
        self.config.load_full()
    }

    /// New settings and cache-key rules from a config reload, for the
    /// requests and deliveries that start from now on. `rule_ttl` stays
    /// (rules already stored were judged by it; it needs a restart).
    pub fn reconfigure(&self, mut config: PurgeConfig, key_rules: KeyRules) {
        config.rule_ttl = self.config.load().rule_ttl;
        self.config.store(Arc::new(config));
        self.key_rules.store(Arc::new(key_rules));
    }

    /// Rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Checks a request's bearer token.
    pub fn auth(&self, headers: &HeaderMap) -> Auth {
        check_token(headers, self.config.load().token.as_deref())
    }

    /// The admin API's check (the purge routes, and the cache inspector
    /// beside them): the bearer token, or why not (401 without one, 403
    /// with a wrong one, 403 when no token is configured: the API is off).
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self.auth(headers) {
            Auth::Granted => Ok(()),
            Auth::Missing => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "purge needs Authorization: Bearer <token>",
            )),
            Auth::Wrong => Err(ApiError::new(StatusCode::FORBIDDEN, "wrong purge token")),
            Auth::Disabled => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the purge API is off: start edge with --purge-token",
            )),
        }
    }

    /// Serves the admin routes under `/purge`: `POST /purge`,
    /// `POST /purge/replicate` (from peers) and `GET /purge/{id}`.
    pub async fn handle(
        self: &Arc<Self>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Bytes> {
        if let Err(refused) = self.authorize(headers) {
            return refused.to_response();
        }
        let result = match (method, path) {
            (&Method::POST, "/purge") => self.api_purge(&body).await,
            (&Method::POST, REPLICATE_PATH) => self.api_replicate(&body).await,
            (&Method::GET, p) if p.starts_with("/purge/") => self.api_status(&p[7..]).await,
            (_, "/purge") | (_, REPLICATE_PATH) => {
                Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use POST"))
            }
            _ => Err(ApiError::new(StatusCode::NOT_FOUND, "no such purge route")),
        };
        result.unwrap_or_else(|err| err.to_response())
    }

    async fn api_purge(self: &Arc<Self>, body: &[u8]) -> Result<Response<Bytes>, ApiError> {
        let record = parse_request(body, &self.key_rules.load(), self.config.load().max_items)?;
        let record = self.accept(record).await?;
        let Some(bus) = self.bus.get() else {
            return Ok(json_response(StatusCode::OK, &self.summary(&record)));
        };
        // In force here and durable (with its outbox entry) already; the
        // 200 also promises the bus holds it, so every node will apply it.
        let mut summary = self.summary(&record);
        match bus.publish(&forwarded(&record)).await {
            Ok(()) => {
                self.bus_published(&record.id).await;
                summary["cluster"] = "published".into();
                Ok(json_response(StatusCode::OK, &summary))
            }
            Err(err) => {
                warn!(id = %record.id, error = %err, "purge applied here, queued for the cluster");
                self.bus_backlog.fetch_add(1, Ordering::Relaxed);
                self.wake.notify_one();
                summary["cluster"] = "queued".into();
                Ok(json_response(StatusCode::ACCEPTED, &summary))
            }
        }
    }

    /// Attaches the cluster's purge bus: from now on every purge accepted
    /// here is published on it (queued in the outbox while it is away).
    /// A second bus is refused (returned).
    pub fn attach_bus(&self, bus: Arc<dyn PurgeBus>) -> Result<(), Arc<dyn PurgeBus>> {
        self.bus.set(bus)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Purges accepted here and not yet acknowledged by the bus, as of the
    /// courier's last pass (no I/O).
    pub fn bus_backlog_now(&self) -> usize {
        self.bus_backlog.load(Ordering::Relaxed) as usize
    }

    /// The bus acknowledged purge `id`: its outbox entry goes.
    async fn bus_published(&self, id: &str) {
        if let Err(err) = self.delivered(BUS_PEER, id).await {
            // The courier publishes it again; receivers skip the duplicate.
            warn!(id, error = %err, "cannot update the purge outbox");
        }
    }

    /// Applies a purge another node published on the bus: checked as a
    /// forwarded purge, dated by this node's clock, stored (synced) and in
    /// force before this returns, so the caller may acknowledge it. One
    /// already held (this node's own, a redelivery) changes nothing.
    pub async fn apply_replicated(
        self: &Arc<Self>,
        record: PurgeRecord,
    ) -> Result<Replicated, ApiError> {
        let mut record =
            api::check_forwarded(record, &self.key_rules.load(), self.config.load().max_items)?;
        if self.record(&record.id).await.is_some() {
            return Ok(Replicated::Known);
        }
        record.at = rules::millis(self.clock.now());
        self.store_record(record, false).await?;
        self.counts.replicated.fetch_add(1, Ordering::Relaxed);
        Ok(Replicated::Applied)
    }

    /// Purges one URL (the `PURGE` method of the main listener).
    pub async fn purge_url(self: &Arc<Self>, url: &str) -> Result<Response<Bytes>, ApiError> {
        let body = serde_json::json!({ "urls": [url] }).to_string();
        self.api_purge(body.as_bytes()).await
    }

    async fn api_replicate(self: &Arc<Self>, body: &[u8]) -> Result<Response<Bytes>, ApiError> {
        let record: PurgeRecord = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad(format!("invalid forwarded purge: {e}")))?;
        let mut record =
            api::check_forwarded(record, &self.key_rules.load(), self.config.load().max_items)?;
        if self.record(&record.id).await.is_some() {
            // Delivered before: acknowledged, nothing changes.
            return Ok(json_response(StatusCode::OK, &self.summary(&record)));
        }
        // This node's clock: everything it stored before the purge reached
        // it is covered, whatever the sender's clock said.
        record.at = rules::millis(self.clock.now());
        self.store_record(record.clone(), false).await?;
        self.counts.replicated.fetch_add(1, Ordering::Relaxed);
        Ok(json_response(StatusCode::OK, &self.summary(&record)))
    }

    async fn api_status(&self, id: &str) -> Result<Response<Bytes>, ApiError> {
        let record = self
            .record(id)
            .await
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no purge {id:?}")))?;
        let owed = self.outbox().await.map_err(|e| internal(&e))?;
        let config = self.config.load();
        let fanout: Vec<PeerDelivery> = config
            .peers
            .iter()
            .map(|peer| {
                let pending = owed.iter().any(|(p, i)| p == peer && i == id);
                let attempts = self.fanout.attempts(peer, id);
                let state = if pending {
                    "pending"
                } else if attempts.refused {
                    "refused"
                } else {
                    "delivered"
                };
                PeerDelivery {
                    peer: peer.clone(),
                    state,
                    attempts,
                }
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({
                "id": record.id,
                "at_ms": record.at,
                "soft": record.soft,
                "urls": record.urls,
                "prefixes": record.prefixes.iter().map(|(h, p)| format!("{h}{p}")).collect::<Vec<_>>(),
                "hosts": record.hosts,
                "tags": record.tags,
                "fanout": fanout,
            }),
        ))
    }

    /// Gives a new purge its id and time, stores it (synced) with its
    /// outbox entries, then applies it.
    async fn accept(self: &Arc<Self>, mut record: PurgeRecord) -> Result<PurgeRecord, ApiError> {
        record.id = new_id();
        record.at = rules::millis(self.clock.now());
        self.store_record(record.clone(), true).await?;
        let add = |counter: &AtomicU64, n: usize| counter.fetch_add(n as u64, Ordering::Relaxed);
        add(&self.counts.urls, record.urls.len());
        add(&self.counts.prefixes, record.prefixes.len());
        add(&self.counts.hosts, record.hosts.len());
        add(&self.counts.tags, record.tags.len());
        Ok(record)
    }

    /// Stores a purge (synced) and puts it in force. Runs on a task of its
    /// own: once started it completes even if the client leaves or the
    /// server stops, so a purge on disk is always a purge in force.
    async fn store_record(
        self: &Arc<Self>,
        record: PurgeRecord,
        forward: bool,
    ) -> Result<(), ApiError> {
        let purger = self.clone();
        tokio::spawn(async move { purger.apply(record, forward).await })
            .await
            .map_err(|e| internal(&PurgeError::Task(e.to_string())))?
    }

    async fn apply(self: Arc<Self>, record: PurgeRecord, forward: bool) -> Result<(), ApiError> {
        let _order = self.apply.lock().await;
        let mut peers = if forward {
            self.config.load().peers.clone()
        } else {
            Vec::new()
        };
        if forward && self.bus.get().is_some() {
            // Owed to the bus until it acknowledges: a crash before the
            // ack, or NATS away, leaves it for the courier.
            peers.push(BUS_PEER.to_owned());
        }
        let db = self.db.clone();
        let stored = record.clone();
        // A synced RocksDB write blocks for an fsync: off the async threads.
        tokio::task::spawn_blocking(move || db.put(&stored, &peers))
            .await
            .map_err(|e| internal(&PurgeError::Task(e.to_string())))?
            .map_err(|e| internal(&e))?;
        // Durable first, then in force: a crash in between leaves a rule
        // that is loaded at start.
        self.rules.insert(&record);
        // A soft purge keeps the object: it is served stale and revalidated.
        let evict = if record.soft {
            &[][..]
        } else {
            &record.url_keys[..]
        };
        for hex in evict {
            if let Ok(hash) = blake3::Hash::from_hex(hex) {
                // Eager eviction of the exact URL (its Vary record too;
                // variants become unreachable, and the rule keeps them out).
                self.store.remove(&CacheKey::from_bytes(*hash.as_bytes()));
            }
        }
        let peers = self.config.load().peers.len();
        if forward && peers > 0 {
            self.backlog.fetch_add(peers as u64, Ordering::Relaxed);
            self.wake.notify_one();
        }
        info!(id = %record.id, soft = record.soft, urls = record.urls.len(), prefixes = record.prefixes.len(), hosts = record.hosts.len(), tags = record.tags.len(), "purge accepted");
        Ok(())
    }

    fn summary(&self, record: &PurgeRecord) -> serde_json::Value {
        serde_json::json!({
            "id": record.id,
            "soft": record.soft,
            "accepted": {
                "urls": record.urls.len(),
                "prefixes": record.prefixes.len(),
                "hosts": record.hosts.len(),
                "tags": record.tags.len(),
            },
            "peers": self.config.load().peers.len(),
        })
    }

    pub(crate) async fn record(&self, id: &str) -> Option<PurgeRecord> {
        let db = self.db.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || db.get(&id).ok().flatten())
            .await
            .ok()
            .flatten()
    }

    pub(crate) async fn outbox(&self) -> Result<Vec<(String, String)>, PurgeError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.outbox())
            .await
            .map_err(|e| PurgeError::Task(e.to_string()))?
    }

    pub(crate) async fn delivered(&self, peer: &str, id: &str) -> Result<(), PurgeError> {
        let db = self.db.clone();
        let (peer, id) = (peer.to_owned(), id.to_owned());
        tokio::task::spawn_blocking(move || db.delivered(&peer, &id))
            .await
            .map_err(|e| PurgeError::Task(e.to_string()))?
    }

    pub(crate) fn set_backlog(&self, n: usize, bus: usize) {
        self.backlog.store(n as u64, Ordering::Relaxed);
        self.bus_backlog.store(bus as u64, Ordering::Relaxed);
    }

    pub(crate) fn bus(&self) -> Option<&Arc<dyn PurgeBus>> {
        self.bus.get()
    }

    pub(crate) fn delivered_one(&self, peer: &str) {
        let less = |n: u64| n.checked_sub(1);
        let _ = self
            .backlog
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less);
        if peer == BUS_PEER {
            let _ = self
                .bus_backlog
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less);
        }
    }

    /// Closes the purge database for the process taking over the data
    /// directory (a binary upgrade). Purges applying now finish first; the
    /// rules in force stay in memory and keep applying to lookups. Later
    /// purges are answered 503 with `Retry-After` (never accepted and then
    /// lost): the client, or a peer's courier, retries and reaches the new
    /// process once it serves.
    pub async fn release_db(&self) -> Result<(), PurgeError> {
        let _order = self.apply.lock().await;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.release())
            .await
            .map_err(|e| PurgeError::Task(e.to_string()))
    }

    /// Opens the database again when the upgrade it was released for
    /// failed.
    pub async fn reacquire_db(&self) -> Result<(), PurgeError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.reacquire())
            .await
            .map_err(|e| PurgeError::Task(e.to_string()))?
    }

    /// Deliveries owed to peers as of the courier's last pass (no I/O).
    pub fn backlog_now(&self) -> usize {
        self.backlog.load(Ordering::Relaxed) as usize
    }

    /// Runs the courier (fan-out) and the expiry sweep until the purger is
    /// dropped.
    pub fn spawn_background(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(purger) = weak.upgrade() else {
                    return;
                };
                let wait = if purger.config.load().peers.is_empty() && purger.bus.get().is_none() {
                    None
                } else {
                    purger.fanout.deliver_due(&purger).await
                };
                let wait = wait
                    .unwrap_or(Duration::from_secs(60))
                    .min(Duration::from_secs(60));
                // Only a weak reference while idle: the database closes as
                // soon as the server lets the purger go.
                let wake = purger.wake.clone();
                drop(purger);
                let _ = tokio::time::timeout(wait, wake.notified()).await;
            }
        });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(purger) = weak.upgrade() else {
                    return;
                };
                if let Err(err) = purger.sweep().await {
                    warn!(error = %err, "purge rule sweep failed");
                }
            }
        });
    }

    /// Forgets expired rules, leaving their time as the watermark below
    /// which every object counts as purged.
    async fn sweep(&self) -> Result<(), PurgeError> {
        let _order = self.apply.lock().await;
        let db = self.db.clone();
        let ttl = self.config.load().rule_ttl;
        let now = self.clock.now();
        let (live, watermark) =
            tokio::task::spawn_blocking(move || -> Result<(Vec<PurgeRecord>, u64), PurgeError> {
                let (records, _) = db.records()?;
                let probe = RuleSet::new(ttl);
                let (live, expired): (Vec<_>, Vec<_>) =
                    records.into_iter().partition(|r| !probe.expired(r, now));
                forget(&db, &expired)?;
                Ok((live, db.watermark()?))
            })
            .await
            .map_err(|e| PurgeError::Task(e.to_string()))??;
        if live.len() != self.rules.len() {
            self.rules.rebuild(&live, watermark);
        }
        Ok(())
    }
}

/// What [`Purger::apply_replicated`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicated {
    /// Stored and in force now.
    Applied,
    /// Held already (this node's own purge, or delivered before).
    Known,
}

/// A purge as another node receives it: without URL keys, which each node
/// derives under its own key rules.
pub fn forwarded(record: &PurgeRecord) -> PurgeRecord {
    PurgeRecord {
        url_keys: Vec::new(),
        ..record.clone()
    }
}

/// Deletes expired records, raising the watermark to the newest of them
/// first (a crash in between forgets nothing it should not).
fn forget(db: &Db, expired: &[PurgeRecord]) -> Result<(), PurgeError> {
    let Some(newest) = expired.iter().map(|r| r.at).max() else {
        return Ok(());
    };
    db.raise_watermark(newest)?;
    db.delete(&expired.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
}

fn internal(err: &PurgeError) -> ApiError {
    if let PurgeError::Released = err {
        info!("purge refused while the data directory is handed to the upgraded process");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "a binary upgrade is taking over the purge database; nothing was applied, retry",
        );
    }
    warn!(error = %err, "purge failed");
    if let PurgeError::NoSpace { .. } = err {
        return ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "the disk of the purge database is full; nothing was applied",
        );
    }
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "purge could not be stored; nothing was applied",
    )
}

/// A fresh purge id: 16 hex digits from the time and a counter (unique
/// per node; peers keep the sender's id).
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    // Uniqueness, not cache semantics: the system clock.
    h.update(&rules::millis(SystemTime::now()).to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    h.update(&nanos.to_le_bytes());
    h.finalize().to_hex()[..16].to_owned()
}

#[cfg(test)]
mod release_tests {
    use super::*;
    use cache::store::StoreConfig;

    const TOKEN: &str = "t";

    async fn purge(purger: &Arc<Purger>, body: &str) -> Response<Bytes> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer t"),
        );
        purger
            .handle(
                &Method::POST,
                "/purge",
                &headers,
                Bytes::from(body.to_owned()),
            )
            .await
    }

    /// A binary upgrade's window between the old process releasing the
    /// database and the new one serving: purges are refused with a retry
    /// hint (never accepted and then lost), and accepted again if the
    /// upgrade fails and the database comes back.
    #[tokio::test]
    async fn purges_are_refused_with_retry_after_while_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &StoreConfig::new(dir.path().join("c"), 16 << 20, 64 << 20),
            None,
        )
        .await
        .unwrap();
        let purger = Purger::open(
            &dir.path().join("purge"),
            PurgeConfig {
                token: Some(TOKEN.into()),
                ..PurgeConfig::default()
            },
            store,
            KeyRules::default(),
            Clock::system(),
        )
        .unwrap();
        let body = r#"{"hosts": ["example.com"]}"#;
        assert_eq!(purge(&purger, body).await.status(), StatusCode::OK);
        purger.release_db().await.unwrap();
        let refused = purge(&purger, body).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_eq!(purger.rules().len(), 1, "the refused purge is not in force");
        purger.reacquire_db().await.unwrap();
        assert_eq!(purge(&purger, body).await.status(), StatusCode::OK);
        assert_eq!(purger.rules().len(), 2);
    }
}
