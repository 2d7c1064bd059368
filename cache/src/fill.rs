//! In-flight fills: one origin fetch per cache key, many readers streaming
//! it while it arrives (read-while-write).
//!
//! The first request for a missing key becomes the [`FillLeader`]; requests
//! for the same key that arrive meanwhile wait ([`FillWaiter`]) for the
//! response head. If the response may be stored, the leader publishes it and
//! a feeder task pushes the body into the fill; every reader, the leader's
//! own client included, streams from byte 0 what has arrived, then each new
//! piece as it arrives. The fill does not depend on any client: it runs to
//! the end (or the object's size limit) if they all leave.
//!
//! Memory stays bounded: the fill keeps only the last `window` bytes (two
//! chunks once all fills together hold `total_window`); a
//! reader that falls further behind reads the rest from the store, where
//! the [`ObjectWriter`] has put every full chunk.
//!
//! If the response may not be stored, waiting readers are released to fetch
//! on their own, so nobody is ever handed another client's private
//! response, and the key is remembered as uncacheable for a while
//! ("hit-for-pass") so that later requests do not wait at all.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use crate::CacheKey;
use crate::clock::Clock;
use crate::key::KeyMap;
use crate::meta::ObjectMeta;
use crate::object::ObjectWriter;
use crate::store::{Store, StoreError};

/// Limits of the fill machinery.
#[derive(Debug, Clone)]
pub struct FillConfig {
    /// Body bytes a fill keeps in memory for its readers. Default: 8 MiB.
    pub window: usize,
    /// Body bytes all fills together keep; past it every window shrinks to
    /// two chunks (readers behind read the store). Default: 256 MiB.
    pub total_window: usize,
    /// How long a request waits for another's response head before it goes
    /// to the origin on its own. Default: 5 s.
    pub wait_for_head: Duration,
    /// How long a key whose response could not be stored skips the wait.
    /// Default: 10 s.
    pub hit_for_pass: Duration,
}

impl Default for FillConfig {
    fn default() -> Self {
        FillConfig {
            window: 8 << 20,
            total_window: 256 << 20,
            wait_for_head: Duration::from_secs(5),
            hit_for_pass: Duration::from_secs(10),
        }
    }
}

/// The in-flight fills of one store.
#[derive(Debug)]
pub struct Fills {
    /// Swapped whole by a config reload; fills read it per decision.
    config: ArcSwap<FillConfig>,
    /// Window bytes held by every fill still referenced.
    held: Arc<AtomicU64>,
    store: Store,
    inflight: Mutex<KeyMap<Arc<Shared>>>,
    pass: Mutex<PassList>,
    /// Hit-for-pass marks expire on the cache's clock.
    clock: Clock,
}

/// Keys recently refused, with when their mark expires. Expired marks are
/// swept whenever the list has doubled since the last sweep, so a stream
/// of unique uncacheable URLs costs memory for at most `hit_for_pass`
/// worth of them, not for ever.
#[derive(Debug, Default)]
struct PassList {
    until: KeyMap<SystemTime>,
    sweep_at: usize,
}

impl PassList {
    const MIN_SWEEP: usize = 1024;

    fn insert(&mut self, key: CacheKey, until: SystemTime, now: SystemTime) {
        self.until.insert(key, until);
        if self.until.len() >= self.sweep_at.max(Self::MIN_SWEEP) {
            self.until.retain(|_, until| *until > now);
            self.sweep_at = 2 * self.until.len();
        }
    }
}

/// What a request for a missing object should do.
#[derive(Debug)]
pub enum Join {
    /// Fetch from the origin and publish (or refuse) the response.
    Leader(FillLeader),
    /// Another request is fetching: wait for its response head.
    Waiter(FillWaiter),
    /// Recently uncacheable: fetch on your own, do not wait.
    Bypass,
}

/// The response a fill is storing, as readers need it.
#[derive(Debug)]
pub struct FillHead {
    /// Status and headers (body layout not yet known).
    pub meta: ObjectMeta,
    /// Key of the object (its variant key when it varies).
    pub object_key: CacheKey,
    object_id: u64,
    chunk_size: u64,
}

#[derive(Debug)]
enum HeadState {
    Waiting,
    Ready(Arc<FillHead>),
    /// Not to be shared (not storable, or stored another way): fetch alone.
    Refused,
    /// The leader's client left before the response head: join again, so
    /// one waiter takes over the fetch.
    Abandoned,
    /// The origin failed before a head, with this status for the client.
    Failed(StatusCode),
}

/// What a waiter should do once its wait is over.
#[derive(Debug)]
pub enum Waited {
    /// Stream the fill.
    Reader(FillReader),
    /// Fetch on your own: the response may not be shared, it varies on
    /// headers this request does not match, or the head took too long.
    Alone,
    /// The leader went away before a head: join the fill again.
    Rejoin,
    /// The origin just failed for the leader: answer with this status
    /// instead of sending it the same request again.
    Failed(StatusCode),
}

#[derive(Debug)]
struct State {
    head: HeadState,
    /// The most recent body bytes, in arrival order.
    window: VecDeque<Bytes>,
    /// Offset of the first byte of `window` in the body.
    window_start: u64,
    /// Bytes received so far.
    received: u64,
    /// `Some` once the body has ended: `Ok` complete, `Err` failed.
    end: Option<Result<(), ()>>,
    /// A purge covered the response mid-fill: it is streamed to the
    /// readers already there but not stored.
    detached: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Bumped on every change; readers wait on it.
    changed: watch::Sender<u64>,
    /// `Fills::held`, given back when the last reader lets go.
    held: Arc<AtomicU64>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = self.lock();
        let window = state.received - state.window_start;
        self.held.fetch_sub(window, Ordering::Relaxed);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.send_modify(|v| *v += 1);
    }
}

impl Fills {
    pub fn new(store: Store, config: FillConfig, clock: Clock) -> Self {
        Fills {
            config: ArcSwap::from_pointee(Fills::clamped(&store, config)),
            held: Arc::new(AtomicU64::new(0)),
            store,
            inflight: Mutex::new(KeyMap::default()),
            pass: Mutex::new(PassList::default()),
            clock,
        }
    }

    /// Bytes leaving the window must already sit in complete chunks in
    /// the store, where readers that fell behind find them.
    fn clamped(store: &Store, mut config: FillConfig) -> FillConfig {
        config.window = config.window.max(2 * store.chunk_size());
        config
    }

    /// The limits in force.
    pub fn config(&self) -> Arc<FillConfig> {
        self.config.load_full()
    }

    /// New limits from a config reload, for the decisions made from now
    /// on (a fill already running keeps growing its window by the new
    /// ones, and a hit-for-pass mark keeps its expiry).
    pub fn reconfigure(&self, config: FillConfig) {
        self.config
            .store(Arc::new(Fills::clamped(&self.store, config)));
    }

    /// Joins the fill of `key`, starting one if none is in flight.
    pub fn join(self: &Arc<Self>, key: CacheKey) -> Join {
        {
            let mut pass = self.pass.lock().unwrap_or_else(|p| p.into_inner());
            match pass.until.get(&key) {
                Some(until) if *until > self.clock.now() => return Join::Bypass,
                Some(_) => {
                    pass.until.remove(&key);
                }
                None => {}
            }
        }
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = inflight.get(&key) {
            return Join::Waiter(FillWaiter {
                key,
                shared: shared.clone(),
                fills: self.clone(),
            });
        }
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                head: HeadState::Waiting,
                window: VecDeque::new(),
                window_start: 0,
                received: 0,
                end: None,
                detached: false,
            }),
            changed,
            held: self.held.clone(),
        });
        inflight.insert(key, shared.clone());
        Join::Leader(FillLeader {
            key,
            shared,
            fills: self.clone(),
            settled: false,
        })
    }

    /// Waits on the fill of `key` if one is in flight; never starts one.
    pub fn waiter(self: &Arc<Self>, key: CacheKey) -> Option<FillWaiter> {
        let inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        let shared = inflight.get(&key)?.clone();
        Some(FillWaiter {
            key,
            shared,
            fills: self.clone(),
        })
    }

    /// Remembers `key` as uncacheable for `hit_for_pass`.
    fn mark_pass(&self, key: CacheKey) {
        let now = self.clock.now();
        let until = now + self.config.load().hit_for_pass;
        self.pass
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, until, now);
    }

    /// Forgets a hit-for-pass mark (the key turned out cacheable after all).
    pub fn clear_pass(&self, key: &CacheKey) {
        self.pass
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .until
            .remove(key);
    }

    /// Keys currently remembered as uncacheable (expired ones included
    /// until the next sweep).
    pub fn pass_marks(&self) -> usize {
        self.pass
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .until
            .len()
    }

    /// Body bytes held in memory by fills for their readers.
    pub fn window_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Number of fills in flight.
    pub fn in_flight(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Closes the fill `reader` streams to newcomers: a purge has since
    /// covered its response, so the next request for `key` starts another
    /// fill. Readers already there stream on. It is not stored either: it
    /// would only replace a newer copy with one the purge rules hide.
    pub fn detach(&self, key: &CacheKey, reader: &FillReader) {
        self.retire(key, &reader.shared);
        reader.shared.lock().detached = true;
    }

    fn retire(&self, key: &CacheKey, shared: &Arc<Shared>) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if inflight.get(key).is_some_and(|s| Arc::ptr_eq(s, shared)) {
            inflight.remove(key);
        }
    }
}

/// The request that fetches for everyone. Dropping it without publishing
/// (the origin failed before a head) releases the waiters to fetch alone.
#[derive(Debug)]
pub struct FillLeader {
    key: CacheKey,
    shared: Arc<Shared>,
    fills: Arc<Fills>,
    /// Published or refused: nothing left for `drop` to do.
    settled: bool,
}

impl FillLeader {
    /// The response will be stored: readers may stream it. Returns the
    /// feeder that pushes the body in.
    pub fn publish(mut self, writer: ObjectWriter) -> FillFeeder {
        self.settled = true;
        let head = Arc::new(FillHead {
            meta: writer.meta().clone(),
            object_key: writer.object_key(),
            object_id: writer.object_id(),
            chunk_size: self.fills.store.chunk_size() as u64,
        });
        self.shared
            .update(|s| s.head = HeadState::Ready(head.clone()));
        FillFeeder {
            key: self.key,
            shared: self.shared.clone(),
            fills: self.fills.clone(),
            writer: Some(writer),
            head,
            oversize: false,
        }
    }

    /// The response may not be stored: waiters fetch on their own, and so
    /// will requests for the next `hit_for_pass`.
    pub fn refuse(self) {
        self.fills.mark_pass(self.key);
        self.settle(HeadState::Refused);
    }

    /// The response will not be shared, but may be stored some other way
    /// (or needs validation on every use): waiters look in the store, then
    /// fetch on their own. No hit-for-pass mark.
    pub fn release(self) {
        self.settle(HeadState::Refused);
    }

    /// The origin failed before sending a head: the waiters answer `status`
    /// rather than repeat the request at once.
    pub fn fail(self, status: StatusCode) {
        self.settle(HeadState::Failed(status));
    }

    fn settle(mut self, head: HeadState) {
        self.settled = true;
        self.fills.retire(&self.key, &self.shared);
        self.shared.update(|s| s.head = head);
    }
}

impl Drop for FillLeader {
    fn drop(&mut self) {
        if !self.settled {
            // The leader's request ended without a word (its client left):
            // a waiter takes over.
            self.fills.retire(&self.key, &self.shared);
            self.shared.update(|s| s.head = HeadState::Abandoned);
        }
    }
}

/// Pushes the origin's body into a fill (and the store). Dropping it before
/// [`finish`](FillFeeder::finish) fails the fill: readers see a truncated
/// body, nothing is stored.
#[derive(Debug)]
pub struct FillFeeder {
    key: CacheKey,
    shared: Arc<Shared>,
    fills: Arc<Fills>,
    writer: Option<ObjectWriter>,
    head: Arc<FillHead>,
    /// The body outgrew the object size limit; the fill was retired.
    oversize: bool,
}

impl FillFeeder {
    /// A reader from byte 0 (for the leader's own client).
    pub fn reader(&self) -> FillReader {
        FillReader::new(
            self.shared.clone(),
            self.head.clone(),
            self.fills.store.clone(),
        )
    }

    /// Appends body bytes.
    pub fn push(&mut self, data: Bytes) {
        if let Some(writer) = self.writer.as_mut() {
            writer.write(&data);
            if writer.is_abandoned() && !self.oversize {
                // Too large to store: the readers already here stream on,
                // but nobody new joins a fill whose start is going away.
                self.oversize = true;
                self.fills.retire(&self.key, &self.shared);
                self.fills.mark_pass(self.key);
            }
        }
        let config = self.fills.config.load();
        let held = &self.fills.held;
        let len = data.len() as u64;
        let total = held.fetch_add(len, Ordering::Relaxed) + len;
        // Past the shared budget, keep only what the store may not have
        // yet: the chunk being written and the one before it. (Not for a
        // fill that stopped storing: its readers have only the window.)
        let window = if total > config.total_window as u64 && !self.oversize {
            2 * self.head.chunk_size
        } else {
            config.window as u64
        };
        self.shared.update(|s| {
            s.received += len;
            s.window.push_back(data);
            while let Some(front) = s.window.front()
                && s.received - s.window_start - front.len() as u64 >= window
            {
                let dropped = front.len() as u64;
                s.window_start += dropped;
                s.window.pop_front();
                held.fetch_sub(dropped, Ordering::Relaxed);
            }
        });
    }

    /// Whether anyone still wants the bytes: readers, or the store.
    pub fn is_wanted(&self) -> bool {
        let storing = self.writer.as_ref().is_some_and(|w| !w.is_abandoned());
        storing || self.shared.changed.receiver_count() > 0
    }

    /// The whole body arrived: commit the object, end every reader cleanly.
    pub fn finish(mut self) {
        let (received, detached) = {
            let state = self.shared.lock();
            (state.received, state.detached)
        };
        if let Some(writer) = self.writer.take()
            && !detached
            && writer.finish()
            && received > self.fills.store.inline_max() as u64
        {
            // Every byte now sits in stored chunks: readers still behind
            // read them from the store, and the window's memory goes back
            // to the budget at once instead of when the last reader leaves.
            let held = &self.fills.held;
            self.shared.update(|s| {
                held.fetch_sub(s.received - s.window_start, Ordering::Relaxed);
                s.window.clear();
                s.window_start = s.received;
            });
        }
        // Retire first: a request arriving now finds the stored object, not
        // a fill that has already ended.
        self.fills.retire(&self.key, &self.shared);
        self.shared.update(|s| s.end = Some(Ok(())));
    }
}

impl Drop for FillFeeder {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            // Not finished: never store what did not fully arrive. Retired
            // first, so nobody joins a fill that has already failed.
            self.fills.retire(&self.key, &self.shared);
            self.shared.update(|s| s.end = Some(Err(())));
        }
    }
}

/// A request waiting for another request's response head.
#[derive(Debug)]
pub struct FillWaiter {
    key: CacheKey,
    shared: Arc<Shared>,
    fills: Arc<Fills>,
}

impl FillWaiter {
    /// Waits (at most `wait_for_head`) for the head, and says what to do.
    pub async fn wait(self, request: &HeaderMap) -> Waited {
        let mut changed = self.shared.changed.subscribe();
        // A timeout, not cache semantics: tokio's monotonic clock.
        let deadline = tokio::time::Instant::now() + self.fills.config.load().wait_for_head;
        let head = loop {
            let head = match &self.shared.lock().head {
                HeadState::Ready(head) => Some(head.clone()),
                HeadState::Refused => return Waited::Alone,
                HeadState::Abandoned => return Waited::Rejoin,
                HeadState::Failed(status) => return Waited::Failed(*status),
                HeadState::Waiting => None,
            };
            if let Some(head) = head {
                break head;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the fill vanished.
                Ok(Err(_)) | Err(_) => return Waited::Alone,
            }
        };
        let vary = &head.meta.vary;
        if !vary.is_empty() && self.key.variant(vary, request) != head.object_key {
            return Waited::Alone;
        }
        Waited::Reader(FillReader::new(
            self.shared.clone(),
            head,
            self.fills.store.clone(),
        ))
    }

    /// [`wait`](FillWaiter::wait), with every outcome but a reader as
    /// `None`.
    pub async fn reader(self, request: &HeaderMap) -> Option<FillReader> {
        match self.wait(request).await {
            Waited::Reader(reader) => Some(reader),
            _ => None,
        }
    }
}

/// Why a fill reader stopped early.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("the origin response failed before it was complete")]
    Failed,
    #[error("a part of the body is no longer held by the fill or the store")]
    Behind,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Streams one fill from byte 0.
#[derive(Debug)]
pub struct FillReader {
    shared: Arc<Shared>,
    head: Arc<FillHead>,
    store: Store,
    changed: watch::Receiver<u64>,
    pos: u64,
}

enum Next {
    Bytes(Bytes),
    FromStore(u64),
    Wait,
    End,
    Failed,
}

impl FillReader {
    fn new(shared: Arc<Shared>, head: Arc<FillHead>, store: Store) -> Self {
        let changed = shared.changed.subscribe();
        FillReader {
            shared,
            head,
            store,
            changed,
            pos: 0,
        }
    }

    /// The response being streamed.
    pub fn head(&self) -> &Arc<FillHead> {
        &self.head
    }

    /// The next piece of the body, `None` at its clean end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FillError> {
        loop {
            let next = {
                let state = self.shared.lock();
                if self.pos < state.window_start {
                    Next::FromStore(self.pos / self.head.chunk_size)
                } else if self.pos < state.received {
                    let mut offset = state.window_start;
                    let mut found = Next::Wait;
                    for piece in &state.window {
                        let end = offset + piece.len() as u64;
                        if self.pos < end {
                            let from = usize::try_from(self.pos - offset).unwrap_or(0);
                            found = Next::Bytes(piece.slice(from..));
                            break;
                        }
                        offset = end;
                    }
                    found
                } else {
                    match state.end {
                        Some(Ok(())) => Next::End,
                        Some(Err(())) => Next::Failed,
                        None => Next::Wait,
                    }
                }
            };
            match next {
                Next::Bytes(bytes) => {
                    self.pos += bytes.len() as u64;
                    return Ok(Some(bytes));
                }
                Next::FromStore(index) => {
                    let chunk = self
                        .store
                        .get_chunk(&self.head.object_key, self.head.object_id, index)
                        .await?
                        .ok_or(FillError::Behind)?;
                    let start = index * self.head.chunk_size;
                    let from = usize::try_from(self.pos - start).unwrap_or(usize::MAX);
                    if from >= chunk.len() {
                        return Err(FillError::Behind);
                    }
                    let bytes = chunk.slice(from..);
                    self.pos += bytes.len() as u64;
                    return Ok(Some(bytes));
                }
                Next::End => return Ok(None),
                Next::Failed => return Err(FillError::Failed),
                Next::Wait => {
                    if self.changed.changed().await.is_err() {
                        // The fill is gone; whatever it left decides.
                        let state = self.shared.lock();
                        if state.end.is_none() {
                            return Err(FillError::Failed);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
