//! The two tiers: foyer's hybrid cache, a memory tier bounded in bytes in
//! front of a disk tier under the data directory that survives restarts.
//!
//! Layout (ARCHITECTURE.md "Storage layout"): an object is one meta entry
//! under its [`CacheKey`] plus, for bodies larger than `inline_max`, chunks
//! of `chunk_size` bytes under keys derived from the object key, the object
//! id and the chunk index. The meta entry is written last, so a reader never
//! finds a meta whose chunks were not all handed to the store; a chunk that
//! is nevertheless missing (evicted, or dropped by foyer under write
//! pressure) makes the object a miss.
//!
//! Choices:
//! - **S3-FIFO** eviction in memory: CDN traffic is full of one-hit wonders,
//!   which S3-FIFO's small probationary queue drops quickly, and a hit only
//!   bumps a counter (no list reordering under a lock as in LRU).
//! - **Write on insertion** (`admission`): an object goes to disk when
//!   stored, not when evicted from memory, so a crash or restart keeps the
//!   cache warm; optionally only once its key has been looked up N times,
//!   so that the disk holds what memory evicts rather than a copy of it,
//!   and one-hit wonders cost no disk write.
//! - **Tombstone log on**: a removed object stays removed after a restart.
//! - **Reinsertion** (`reinsertion`): under frequency admission, an entry
//!   read from disk since it was written survives its block's eviction.
//! - **Chunks of 1 MiB**, well under the disk block size: foyer silently
//!   skips disk writes of entries larger than a block.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, HybridCacheProperties, Location, RecoverMode, S3FifoConfig, Source,
    StorageFilter,
};
use http::HeaderName;

pub mod admission;
pub mod reinsertion;

pub use admission::{DiskAdmission, Placement};

use crate::CacheKey;
use crate::meta::ObjectMeta;
use crate::variants::Variant;

/// Sizes and place of the two tiers.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the disk tier (created if missing).
    pub dir: PathBuf,
    /// Memory tier budget in bytes.
    pub memory_bytes: usize,
    /// Disk tier size in bytes (at least 64 MiB).
    pub disk_bytes: usize,
    /// Body chunk size. Default: 1 MiB.
    pub chunk_size: usize,
    /// Bodies up to this size live inside the meta entry. Default: 64 KiB.
    pub inline_max: usize,
    /// Which new objects are written to disk. Default: on the 3rd request.
    pub disk_admission: DiskAdmission,
}

impl StoreConfig {
    pub fn new(dir: PathBuf, memory_bytes: usize, disk_bytes: usize) -> Self {
        StoreConfig {
            dir,
            memory_bytes,
            disk_bytes,
            chunk_size: 1 << 20,
            inline_max: 64 << 10,
            disk_admission: DiskAdmission::default(),
        }
    }
}

/// Which tier answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Memory,
    Disk,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Disk => "disk",
        }
    }
}

/// What a cache key names.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A stored response.
    Object(Arc<ObjectMeta>),
    /// The response varies: look up the variant key built from these
    /// request header names.
    Vary(Arc<[HeaderName]>),
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the cache under {}: {source}", dir.display())]
    Open {
        dir: PathBuf,
        #[source]
        source: foyer::Error,
    },
    #[error(
        "the disk tier does not fit under {}: {source} (free space, or lower cache.disk)",
        dir.display()
    )]
    NoSpace {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache read failed: {0}")]
    Read(#[source] foyer::Error),
}

/// Keys as foyer sees them: 32 bytes of blake3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey([u8; 32]);

impl StoreKey {
    /// The key's slot hash in the lookup-count sketch: its first 8 bytes,
    /// the keys being blake3 hashes already (free on the hit path, where
    /// foyer's own hash of the key would be computed a second time).
    fn sketch_hash(&self) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(word)
    }
}

impl Code for StoreKey {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        writer.write_all(&self.0).map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        let mut key = [0u8; 32];
        reader
            .read_exact(&mut key)
            .map_err(foyer::Error::io_error)?;
        Ok(StoreKey(key))
    }

    fn estimated_size(&self) -> usize {
        32
    }
}

/// Values as foyer sees them.
#[derive(Debug, Clone)]
pub enum StoreValue {
    Meta(Arc<ObjectMeta>),
    Vary(Arc<[HeaderName]>),
    Chunk(Bytes),
    /// The variant index of a URL (`crate::variants`), for the inspector.
    Variants(Arc<[Variant]>),
    /// Written over a key to remove it: foyer's own removal can lose a race
    /// with a disk write still in flight, an overwrite cannot.
    Removed,
}

const TAG_META: u8 = 1;
const TAG_VARY: u8 = 2;
const TAG_CHUNK: u8 = 3;
const TAG_REMOVED: u8 = 4;
/// Added within the store's format: older binaries never read it (its
/// key is one they do not derive).
const TAG_VARIANTS: u8 = 5;

impl StoreValue {
    /// Bytes the entry holds in memory, key and foyer's record included.
    fn memory_size(&self) -> usize {
        const RECORD: usize = 128;
        RECORD
            + match self {
                StoreValue::Meta(meta) => meta.memory_size(),
                StoreValue::Vary(names) => names.iter().map(|n| n.as_str().len() + 48).sum(),
                StoreValue::Chunk(bytes) => bytes.len(),
                StoreValue::Variants(list) => crate::variants::memory_size(list),
                StoreValue::Removed => 0,
            }
    }
}

impl Code for StoreValue {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        let mut buf = Vec::with_capacity(self.estimated_size());
        match self {
            StoreValue::Meta(meta) => {
                buf.push(TAG_META);
                meta.encode(&mut buf);
            }
            StoreValue::Vary(names) => {
                buf.push(TAG_VARY);
                for name in names.iter() {
                    buf.extend_from_slice(name.as_str().as_bytes());
                    buf.push(b'\n');
                }
            }
            StoreValue::Chunk(bytes) => {
                buf.push(TAG_CHUNK);
                buf.extend_from_slice(bytes);
            }
            StoreValue::Variants(list) => {
                buf.push(TAG_VARIANTS);
                crate::variants::encode(list, &mut buf);
            }
            StoreValue::Removed => buf.push(TAG_REMOVED),
        }
        writer
            .write_all(&(buf.len() as u64).to_le_bytes())
            .and_then(|()| writer.write_all(&buf))
            .map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        let mut len = [0u8; 8];
        reader
            .read_exact(&mut len)
            .map_err(foyer::Error::io_error)?;
        let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
        // Bounded so that a corrupt length cannot ask for gigabytes.
        let mut buf = Vec::with_capacity(len.min(64 << 20));
        reader
            .take(len as u64)
            .read_to_end(&mut buf)
            .map_err(foyer::Error::io_error)?;
        let invalid = |what: &str| {
            foyer::Error::io_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                what.to_owned(),
            ))
        };
        let (&tag, payload) = buf
            .split_first()
            .ok_or_else(|| invalid("empty cache value"))?;
        match tag {
            TAG_META => ObjectMeta::decode(payload)
                .map(|m| StoreValue::Meta(Arc::new(m)))
                .map_err(|e| invalid(&e.to_string())),
            TAG_VARY => payload
                .split(|b| *b == b'\n')
                .filter(|n| !n.is_empty())
                .map(|n| HeaderName::from_bytes(n).map_err(|_| invalid("vary name")))
                .collect::<foyer::Result<Vec<_>>>()
                .map(|names| StoreValue::Vary(names.into())),
            TAG_CHUNK => Ok(StoreValue::Chunk(Bytes::from(buf).slice(1..))),
            TAG_REMOVED => Ok(StoreValue::Removed),
            TAG_VARIANTS => crate::variants::decode(payload)
                .map(|list| StoreValue::Variants(list.into()))
                .ok_or_else(|| invalid("variant index")),
            _ => Err(invalid("unknown cache value tag")),
        }
    }

    fn estimated_size(&self) -> usize {
        9 + match self {
            StoreValue::Meta(meta) => meta.estimated_size(),
            StoreValue::Vary(names) => names.iter().map(|n| n.as_str().len() + 1).sum(),
            StoreValue::Chunk(bytes) => bytes.len(),
            StoreValue::Variants(list) => crate::variants::memory_size(list),
            StoreValue::Removed => 0,
        }
    }
}

/// Gives every file of the disk tier its blocks now. foyer creates them
/// sparse, so a disk filled by something else made its writes fail later,
/// and foyer 0.22 panics on a failed write (its flusher and tombstone log
/// unwrap the buffer the failed write did not hand back). Allocated up
/// front, the tier's writes never need new blocks: a full disk no longer
/// touches it. Blocks already allocated (a restart) cost nothing. File
/// systems without `fallocate` keep sparse files.
fn preallocate(dir: &std::path::Path) -> Result<(), StoreError> {
    let no_space = |source| StoreError::NoSpace {
        dir: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(no_space)? {
        let path = entry.map_err(no_space)?.path();
        if !path.is_file() {
            continue;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(no_space)?;
        let len = file.metadata().map_err(no_space)?.len();
        match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => {}
            Err(rustix::io::Errno::OPNOTSUPP) => return Ok(()),
            Err(errno) => return Err(no_space(errno.into())),
        }
    }
    Ok(())
}

/// The two-tier object store.
#[derive(Debug, Clone)]
pub struct Store {
    cache: HybridCache<StoreKey, StoreValue>,
    /// Set by [`Store::release_disk`]: from then on only the memory tier
    /// is read and written. Shared by every clone.
    memory_only: Arc<AtomicBool>,
    chunk_size: usize,
    inline_max: usize,
    disk_bytes: usize,
    disk_admission: DiskAdmission,
    /// Lookups per key, for [`DiskAdmission::Frequency`].
    frequency: Arc<admission::Frequency>,
    /// Reads from disk per key, for [`reinsertion`] (under `Frequency`).
    disk_hits: Arc<admission::Frequency>,
    /// Serialises updates of variant indexes (a read, a merge, a write):
    /// two fills of different variants must not lose each other's entry.
    /// Held only around synchronous memory-tier calls, never an await.
    variant_index: Arc<std::sync::Mutex<()>>,
}

/// An entry of the memory tier as foyer hands it out.
type MemoryEntry =
    foyer::CacheEntry<StoreKey, StoreValue, foyer::DefaultHasher, HybridCacheProperties>;

/// How full the memory tier is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes held, as weighed (see `ObjectMeta::memory_size`).
    pub bytes: usize,
    pub capacity: usize,
    /// Entries: object heads, Vary records and body chunks.
    pub entries: usize,
}

impl Store {
    /// Opens (or creates) the store, recovering what the disk tier holds.
    /// foyer's metrics go into `registry` when one is given.
    pub async fn open(
        config: &StoreConfig,
        registry: Option<prometheus::Registry>,
    ) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            dir: config.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(|e| open_err(foyer::Error::io_error(e)))?;
        // A block must hold a whole chunk. Some 64 blocks a tier: foyer keeps
        // one clean and one being written, which hold no objects (on a
        // 320 MiB tier, 64 blocks of 5 MiB gave the Zipf run 0.5 pp more
        // hits than 20 of 16 MiB).
        let block_size = (config.disk_bytes / 64).clamp(4 << 20, 16 << 20) & !0xfff;
        let device = FsDeviceBuilder::new(&config.dir)
            .with_capacity(config.disk_bytes)
            .build()
            .map_err(open_err)?;
        let mut builder = HybridCacheBuilder::new()
            .with_name("edge_cache")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(true);
        if let Some(registry) = registry {
            builder = builder.with_metrics_registry(Box::new(
                mixtrics::registry::prometheus_0_14::PrometheusMetricsRegistry::new(registry),
            ));
        }
        // The smallest sketches when nothing reads them.
        let (frequency, disk_hits) = match config.disk_admission {
            DiskAdmission::All => (0, 0),
            DiskAdmission::Frequency { .. } => (
                sketch_objects(config.memory_bytes.saturating_add(config.disk_bytes)),
                sketch_objects(config.disk_bytes),
            ),
        };
        let frequency = Arc::new(admission::Frequency::new(frequency));
        let disk_hits = Arc::new(admission::Frequency::new(disk_hits));
        let mut engine = BlockEngineConfig::new(device)
            .with_block_size(block_size)
            .with_buffer_pool_size(4 * block_size)
            .with_submit_queue_size_threshold(8 * block_size)
            .with_tombstone_log(true);
        if config.disk_admission != DiskAdmission::All {
            // (Under `All` disk hits are copied into memory: the disk copy
            // is not where they are wanted.)
            engine = engine.with_reinsertion_filter(StorageFilter::new().with_condition(
                reinsertion::DiskHits {
                    hits: disk_hits.clone(),
                    min_hits: 1,
                },
            ));
        }
        let cache = builder
            .memory(config.memory_bytes)
            .with_eviction_config(S3FifoConfig::default())
            .with_weighter(|_key: &StoreKey, value: &StoreValue| value.memory_size())
            .storage()
            .with_engine_config(engine)
            .with_recover_mode(RecoverMode::Quiet)
            .build()
            .await
            .map_err(open_err)?;
        preallocate(&config.dir)?;
        Ok(Store {
            cache,
            memory_only: Arc::new(AtomicBool::new(false)),
            chunk_size: config.chunk_size,
            inline_max: config.inline_max,
            disk_bytes: config.disk_bytes,
            disk_admission: config.disk_admission,
            frequency,
            disk_hits,
            variant_index: Arc::default(),
        })
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    pub fn inline_max(&self) -> usize {
        self.inline_max
    }

    /// The memory tier's fill; cheap (a few atomic reads).
    pub fn memory_usage(&self) -> MemoryUsage {
        let memory = self.cache.memory();
        MemoryUsage {
            bytes: memory.usage(),
            capacity: memory.capacity(),
            entries: memory.entries(),
        }
    }

    /// The disk tier's size.
    pub fn disk_capacity(&self) -> usize {
        self.disk_bytes
    }

    /// What `key` names, and which tier had it; `None` when absent.
    /// Reading from disk happens on foyer's I/O threads, never on the
    /// caller's.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<(Entry, Tier)>, StoreError> {
        let key = StoreKey(*key.as_bytes());
        if self.disk_admission != DiskAdmission::All {
            self.frequency.record(key.sketch_hash());
        }
        // The memory tier first, synchronously: a hit there is most
        // lookups, and foyer's hybrid get sets up a disk fetch (an Arc'd
        // context, clones, a timer) before it even looks. A removal marker
        // there answers too: the disk may hold an older version.
        if let Some(entry) = self.cache.memory().get(&key) {
            if entry.properties().location() == Location::InMem {
                self.admit_on_hit(key, &entry);
            }
            return Ok(entry_of(entry.value(), Tier::Memory));
        }
        if self.disk_released() {
            return Ok(None);
        }
        if self.disk_admission != DiskAdmission::All {
            // Read from disk without a copy into memory: the tiers hold
            // different objects, memory what was filled from the origin,
            // disk what memory evicted since. (A copy evicts a hotter
            // object for one already held: see the Zipf runs in
            // admission.rs.)
            let value = self.disk_hit(&key).await?;
            return Ok(value.and_then(|v| entry_of(&v, Tier::Disk)));
        }
        let Some(entry) = self.cache.get(&key).await.map_err(StoreError::Read)? else {
            return Ok(None);
        };
        let tier = match entry.source() {
            Source::Disk => Tier::Disk,
            Source::Memory | Source::Outer => Tier::Memory,
        };
        Ok(entry_of(entry.value(), tier))
    }

    /// Whether [`release_disk`](Store::release_disk) was called: one
    /// atomic load on the hit path.
    pub fn disk_released(&self) -> bool {
        self.memory_only.load(Ordering::Acquire)
    }

    /// Gives up the disk tier for another process (a binary upgrade): from
    /// now on lookups see only the memory tier and stores stay in memory.
    /// Returns once every disk write already queued is done, so the next
    /// owner of the directory recovers all of them. Memory is kept: the old
    /// process keeps serving its hot set while the new one opens the disk.
    pub async fn release_disk(&self) -> Result<(), StoreError> {
        self.memory_only.store(true, Ordering::Release);
        // The storage engine alone, not `HybridCache::close`: that one
        // empties the memory tier first (its flush-on-close evicts all).
        self.cache.storage().close().await.map_err(StoreError::Read)
    }

    /// Where a new object under `key` goes (see [`admission`]): decided
    /// once per fill, so that its chunks and its meta share one placement.
    pub fn placement(&self, key: &CacheKey) -> Placement {
        let key = StoreKey(*key.as_bytes());
        admission::placement(
            self.disk_admission,
            self.frequency.estimate(key.sketch_hash()),
            self.cache.memory().contains(&key),
        )
    }

    /// A memory-only object (`entry`, under `key`) was hit: on the lookup
    /// that brings its key to the admission count, it goes to disk, chunks
    /// first and its meta last as in a fill, so that what stays hot in
    /// memory also survives a restart or an upgrade. Only at that count
    /// (not above it), because the memory entry keeps its memory-only
    /// mark: replacing it to clear the mark could put this version back
    /// over a newer one stored meanwhile. An object whose chunks memory no
    /// longer all holds stays where it is.
    fn admit_on_hit(&self, key: StoreKey, entry: &MemoryEntry) {
        let StoreValue::Meta(meta) = entry.value() else {
            return;
        };
        let DiskAdmission::Frequency { min_requests } = self.disk_admission else {
            return;
        };
        let requests = self.frequency.estimate(key.sketch_hash());
        if self.disk_released() || requests != min_requests {
            return;
        }
        if let crate::meta::BodyLayout::Chunked {
            object_id,
            len,
            chunk_size,
        } = meta.body
        {
            let chunks = len.div_ceil(u64::from(chunk_size.max(1)));
            let object = CacheKey::from_bytes(key.0);
            let pieces: Option<Vec<_>> = (0..chunks)
                .map(|index| {
                    self.cache
                        .memory()
                        .get(&chunk_key(&object, object_id, index))
                        .map(|chunk| chunk.piece())
                })
                .collect();
            let Some(pieces) = pieces else {
                return;
            };
            for piece in pieces {
                self.cache.storage().enqueue(piece, false);
            }
        }
        self.cache.storage().enqueue(entry.piece(), false);
    }

    /// Stores an object's meta: the commit point of a fill.
    pub fn put_object(&self, key: &CacheKey, meta: ObjectMeta) {
        let placement = self.placement(key);
        self.put_object_placed(key, meta, placement);
    }

    /// [`put_object`](Store::put_object) with the placement its fill was
    /// given.
    pub fn put_object_placed(&self, key: &CacheKey, mut meta: ObjectMeta, placement: Placement) {
        meta.headers = crate::meta::owned_headers(&meta.headers);
        self.insert(
            StoreKey(*key.as_bytes()),
            StoreValue::Meta(Arc::new(meta)),
            placement,
        );
    }

    /// Records that the response under `key` varies on `names`.
    pub fn put_vary(&self, key: &CacheKey, names: Vec<HeaderName>) {
        self.replace(key, StoreValue::Vary(names.into()));
    }

    /// Writes `value` over whatever `key` held. This is deliberately not
    /// foyer's remove-then-insert: foyer replays its tombstone log after
    /// the data blocks on restart, so a key removed once would lose every
    /// later version at the next restart (seen in
    /// `the_cache_survives_a_restart_on_the_same_data_dir`).
    fn replace(&self, key: &CacheKey, value: StoreValue) {
        self.insert(StoreKey(*key.as_bytes()), value, Placement::BothTiers);
    }

    /// Into the tiers `placement` says, only memory once the disk is
    /// released. (foyer writes nothing on eviction under write-on-insertion,
    /// so a memory-only entry never reaches the disk.)
    fn insert(&self, key: StoreKey, value: StoreValue, placement: Placement) {
        if self.disk_released() {
            self.cache.memory().insert(key, value);
        } else if placement == Placement::MemoryOnly {
            // Marked, so that a hit can tell it is not on disk.
            self.cache.memory().insert_with_properties(
                key,
                value,
                HybridCacheProperties::default().with_location(Location::InMem),
            );
        } else {
            self.cache.insert(key, value);
        }
    }

    /// One body chunk of a fill placed at `placement`.
    pub fn put_chunk(
        &self,
        key: &CacheKey,
        object_id: u64,
        index: u64,
        bytes: Bytes,
        placement: Placement,
    ) {
        self.insert(
            chunk_key(key, object_id, index),
            StoreValue::Chunk(bytes),
            placement,
        );
    }

    /// One body chunk; `None` if it is gone.
    pub async fn get_chunk(
        &self,
        key: &CacheKey,
        object_id: u64,
        index: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        let key = chunk_key(key, object_id, index);
        let chunk = |value: &StoreValue| match value {
            StoreValue::Chunk(bytes) => Some(bytes.clone()),
            _ => None,
        };
        if let Some(entry) = self.cache.memory().get(&key) {
            return Ok(chunk(entry.value()));
        }
        if self.disk_released() {
            return Ok(None);
        }
        if self.disk_admission != DiskAdmission::All {
            // Not copied into memory, as `get` does not copy metas.
            return Ok(self.disk_hit(&key).await?.as_ref().and_then(chunk));
        }
        let entry = self.cache.get(&key).await.map_err(StoreError::Read)?;
        Ok(entry.and_then(|e| chunk(e.value())))
    }

    /// Records that the variant `variant` of the response under `primary`
    /// is stored, in the index the inspector lists variants from: merged
    /// at once with the index in the memory tier. When memory does not
    /// hold it (evicted, or not read since a restart), the new variant is
    /// the index at once, and a task reads the disk's copy and merges the
    /// variants recorded before it back in, so the fill never waits for a
    /// disk read. The index is advisory: lookups never read it.
    pub fn record_variant(&self, primary: &CacheKey, variant: Variant) {
        let key = StoreKey(*primary.variant_index().as_bytes());
        {
            let _guard = self.variant_index.lock().unwrap_or_else(|p| p.into_inner());
            let known = self.memory_variants(&key);
            let in_memory = known.is_some();
            let list = crate::variants::merged(&known.unwrap_or_default(), variant.clone());
            let runtime = tokio::runtime::Handle::try_current().ok();
            match runtime {
                Some(runtime) if !in_memory && !self.disk_released() => {
                    // Memory only for now: written to disk too, it would
                    // replace the copy the task is about to read.
                    self.cache
                        .memory()
                        .insert(key, StoreValue::Variants(list.into()));
                    self.spawn_variant_merge(&runtime, key, variant);
                }
                _ => {
                    self.insert(key, StoreValue::Variants(list.into()), Placement::BothTiers);
                }
            }
        }
    }

    /// Merges the disk's copy of the variant index `key` (from before a
    /// restart or an eviction from memory) with what memory holds, and
    /// writes the result to both tiers.
    fn spawn_variant_merge(
        &self,
        runtime: &tokio::runtime::Handle,
        key: StoreKey,
        variant: Variant,
    ) {
        let store = self.clone();
        runtime.spawn(async move {
            let on_disk = match store.cache.storage().load(&key).await {
                Ok(foyer::Load::Entry { value, .. }) => Some(value),
                Ok(foyer::Load::Piece { piece, .. }) => Some(piece.value().clone()),
                _ => None,
            };
            let on_disk = match on_disk {
                Some(StoreValue::Variants(list)) => list.to_vec(),
                _ => Vec::new(),
            };
            let _guard = store
                .variant_index
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // What memory holds now is the newest; then this variant (if
            // memory lost it meanwhile); then what the disk remembered.
            let mut list = store.memory_variants(&key).unwrap_or_default();
            for v in std::iter::once(&variant).chain(on_disk.iter()) {
                if !list.iter().any(|known| known.key == v.key) {
                    list.push(v.clone());
                }
            }
            list.truncate(crate::variants::MAX_VARIANTS);
            store.insert(key, StoreValue::Variants(list.into()), Placement::BothTiers);
        });
    }

    /// The variant index under `key` in the memory tier, if it holds one.
    fn memory_variants(&self, key: &StoreKey) -> Option<Vec<Variant>> {
        let entry = self.cache.memory().get(key)?;
        match entry.value() {
            StoreValue::Variants(list) => Some(list.to_vec()),
            _ => None,
        }
    }

    /// The variants recorded for the response under `primary` (see
    /// [`record_variant`](Store::record_variant)), read without promoting
    /// the index into memory.
    pub async fn variants(&self, primary: &CacheKey) -> Result<Vec<Variant>, StoreError> {
        let key = StoreKey(*primary.variant_index().as_bytes());
        let (memory, disk) = self.peek_value(&key).await?;
        Ok(match memory.or(disk) {
            Some(StoreValue::Variants(list)) => list.to_vec(),
            _ => Vec::new(),
        })
    }

    /// What `key` names as a lookup would see it, and every tier holding
    /// that same version, for the inspector: unlike [`get`](Store::get) a
    /// disk read does not insert the entry into memory. foyer 0.22 has no
    /// way to read a memory entry without counting an access, so an entry
    /// found in memory gets one S3-FIFO frequency bump (a counter, no
    /// reordering), as one hit would.
    pub async fn peek(&self, key: &CacheKey) -> Result<Option<(Entry, Vec<Tier>)>, StoreError> {
        let key = StoreKey(*key.as_bytes());
        let (memory, disk) = self.peek_value(&key).await?;
        let mut tiers = Vec::new();
        let entry = match (&memory, &disk) {
            (Some(m), disk) => {
                tiers.push(Tier::Memory);
                if disk.as_ref().is_some_and(|d| same_version(m, d)) {
                    tiers.push(Tier::Disk);
                }
                entry_of(m, Tier::Memory)
            }
            (None, Some(d)) => {
                tiers.push(Tier::Disk);
                entry_of(d, Tier::Disk)
            }
            (None, None) => None,
        };
        Ok(entry.map(|(entry, _)| (entry, tiers)))
    }

    /// The value of `key` in memory and on disk, touching neither's order.
    async fn peek_value(
        &self,
        key: &StoreKey,
    ) -> Result<(Option<StoreValue>, Option<StoreValue>), StoreError> {
        let memory = self
            .cache
            .memory()
            .contains(key)
            .then(|| self.cache.memory().get(key))
            .flatten()
            .map(|entry| entry.value().clone());
        if self.disk_released() {
            return Ok((memory, None));
        }
        Ok((memory, self.disk_value(key).await?))
    }

    /// The value of `key` on disk (or in its write queue), read on foyer's
    /// I/O threads and not put into memory.
    async fn disk_value(&self, key: &StoreKey) -> Result<Option<StoreValue>, StoreError> {
        match self.cache.storage().load(key).await {
            Ok(foyer::Load::Entry { value, .. }) => Ok(Some(value)),
            Ok(foyer::Load::Piece { piece, .. }) => Ok(Some(piece.value().clone())),
            Ok(_) => Ok(None),
            Err(err) => Err(StoreError::Read(err)),
        }
    }

    /// [`disk_value`](Store::disk_value) for a lookup: one found is counted
    /// as a disk hit, so that it outlives its block's eviction
    /// ([`reinsertion`]), under foyer's hash of the key: the one its
    /// reinsertion filter is given.
    async fn disk_hit(&self, key: &StoreKey) -> Result<Option<StoreValue>, StoreError> {
        let value = self.disk_value(key).await?;
        if value.is_some() {
            self.disk_hits.record(self.cache.memory().hash(key));
        }
        Ok(value)
    }

    /// Removes what `key` names from both tiers (its chunks become
    /// unreachable and age out). The removal is a marker written over the
    /// key, ordered after any earlier write of it, so it survives a restart
    /// without poisoning later versions of the key. Like any foyer write,
    /// its disk copy can be dropped under extreme write pressure; durable
    /// purge rules (checked on lookup) are what guarantee removal.
    pub fn remove(&self, key: &CacheKey) {
        self.replace(key, StoreValue::Removed);
    }

    /// Flushes pending disk writes; call before exit to keep the cache warm.
    /// After [`release_disk`](Store::release_disk) there is nothing to
    /// flush (and the directory is someone else's).
    pub async fn close(&self) -> Result<(), StoreError> {
        if self.disk_released() {
            return Ok(());
        }
        self.cache.close().await.map_err(StoreError::Read)
    }
}

/// What a stored value names as an [`Entry`], found in `tier`.
fn entry_of(value: &StoreValue, tier: Tier) -> Option<(Entry, Tier)> {
    match value {
        StoreValue::Meta(meta) => Some((Entry::Object(meta.clone()), tier)),
        StoreValue::Vary(names) => Some((Entry::Vary(names.clone()), tier)),
        // A chunk under an object key cannot happen (different key
        // derivations); treat it as absent.
        StoreValue::Chunk(_) | StoreValue::Variants(_) | StoreValue::Removed => None,
    }
}

/// Whether two values of one key are the same version (the disk may hold
/// an older one, or a removal marker). Response times in milliseconds: the
/// disk's copy keeps no finer ones, memory's does.
fn same_version(a: &StoreValue, b: &StoreValue) -> bool {
    use crate::meta::millis;
    match (a, b) {
        (StoreValue::Meta(a), StoreValue::Meta(b)) => {
            a.body_id == b.body_id && millis(a.response_time) == millis(b.response_time)
        }
        (StoreValue::Vary(a), StoreValue::Vary(b)) => a == b,
        _ => false,
    }
}

/// Objects a frequency sketch is sized for: `bytes` of 16 KiB objects.
fn sketch_objects(bytes: usize) -> usize {
    bytes / (16 << 10)
}

fn chunk_key(key: &CacheKey, object_id: u64, index: u64) -> StoreKey {
    let mut h = blake3::Hasher::new();
    h.update(b"chunk");
    h.update(key.as_bytes());
    h.update(&object_id.to_le_bytes());
    h.update(&index.to_le_bytes());
    StoreKey(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests;
