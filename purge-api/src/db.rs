//! What must survive a crash exactly: purge records and the fan-out
//! outbox, in RocksDB under `DATA_DIR/purge`. Every write is synced (WAL
//! fsync) before the caller answers, so `kill -9` right after a 200 loses
//! nothing.
//!
//! Layout: `p/{id}` → a [`PurgeRecord`] as JSON; `o/{peer}\0{id}` → an
//! outbox entry (the purge still owed to that peer); `w` → the newest time
//! of forgotten (expired) rules.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rocksdb::{DB, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::PurgeError;
use crate::rules::PurgeRecord;

/// The purge database.
///
/// After a failed write (a full disk) the handle is closed and RocksDB is
/// reopened before the next write: Debian's librocksdb is built with
/// assertions, and writing again through a file writer that saw an error
/// aborts the whole process (`WritableFileWriter::
/// AssertFalseAndGetStatusForPrevError`). A fresh handle has fresh writers.
pub struct Db {
    dir: PathBuf,
    /// `None` after a failed write until a reopen succeeds, and after
    /// [`release`](Db::release).
    db: RwLock<Option<DB>>,
    /// Given to another process ([`release`](Db::release)): no reopening.
    released: AtomicBool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.dir).finish()
    }
}

/// Free space a write needs on the database's file system: a purge record
/// is a few KiB, but RocksDB may start a new WAL or memtable flush.
const MIN_FREE: u64 = 64 << 20;

fn open_rocksdb(dir: &Path) -> Result<DB, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    // Small metadata: keep the footprint small.
    opts.set_max_open_files(64);
    opts.set_keep_log_file_num(2);
    DB::open(&opts, dir)
}

fn synced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

fn outbox_key(peer: &str, id: &str) -> Vec<u8> {
    let mut key = format!("o/{peer}").into_bytes();
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

impl Db {
    /// Opens (or creates) the database in `dir`. A directory RocksDB
    /// cannot open is an error naming it, never silently replaced: it may
    /// hold purges that must stay in force (the purger replaces it only
    /// together with a purge of everything).
    pub fn open(dir: &Path) -> Result<Db, PurgeError> {
        let db = open_rocksdb(dir).map_err(|source| PurgeError::Open {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Db {
            dir: dir.to_owned(),
            db: RwLock::new(Some(db)),
            released: AtomicBool::new(false),
        })
    }

    /// Closes RocksDB for another process to open (a binary upgrade).
    /// Waits for reads and writes in progress (they hold the lock); every
    /// later one fails with [`PurgeError::Released`] until
    /// [`reacquire`](Db::reacquire).
    pub fn release(&self) {
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        self.released.store(true, Ordering::Release);
        // Dropping the handle closes the database and its LOCK file.
        *guard = None;
    }

    /// Opens the database again after [`release`](Db::release), when the
    /// process it was given to did not take it after all.
    pub fn reacquire(&self) -> Result<(), PurgeError> {
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(open_rocksdb(&self.dir).map_err(|source| PurgeError::Open {
                path: self.dir.clone(),
                source,
            })?);
        }
        self.released.store(false, Ordering::Release);
        Ok(())
    }

    /// Runs a read on the open handle, reopening first if a write failed.
    fn read<T>(&self, f: impl FnOnce(&DB) -> Result<T, PurgeError>) -> Result<T, PurgeError> {
        self.reopen_if_closed()?;
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(PurgeError::Closed),
        }
    }

    /// Runs a write; a failure closes the handle (see [`Db`]). Refused
    /// while the file system has less than [`MIN_FREE`] left: the same
    /// assertions abort the process when a write runs out of space.
    fn write(&self, f: impl FnOnce(&DB) -> Result<(), rocksdb::Error>) -> Result<(), PurgeError> {
        if let Ok(stat) = rustix::fs::statvfs(&self.dir) {
            let free = stat.f_bavail.saturating_mul(stat.f_frsize);
            if free < MIN_FREE {
                return Err(PurgeError::NoSpace { free });
            }
        }
        // The read lock is released when `read` returns, before the
        // failure path below takes the write lock.
        let result = self.read(|db| Ok(f(db)))?;
        result.map_err(|err| {
            // Closed now, under the write lock: no other write can reach
            // the failed writer in between.
            let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
            *guard = None;
            PurgeError::Db(err)
        })
    }

    fn reopen_if_closed(&self) -> Result<(), PurgeError> {
        if self.db.read().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(());
        }
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        if self.released.load(Ordering::Acquire) {
            return Err(PurgeError::Released);
        }
        if guard.is_none() {
            *guard = Some(open_rocksdb(&self.dir).map_err(PurgeError::Db)?);
        }
        Ok(())
    }

    /// Stores `record` and, in the same synced batch, an outbox entry for
    /// each of `peers`.
    pub fn put(&self, record: &PurgeRecord, peers: &[String]) -> Result<(), PurgeError> {
        let mut batch = WriteBatch::default();
        let value = serde_json::to_vec(record).map_err(PurgeError::Encode)?;
        batch.put(format!("p/{}", record.id), value);
        for peer in peers {
            batch.put(outbox_key(peer, &record.id), b"");
        }
        self.write(|db| db.write_opt(batch, &synced()))
    }

    pub fn get(&self, id: &str) -> Result<Option<PurgeRecord>, PurgeError> {
        let Some(value) = self.read(|db| db.get(format!("p/{id}")).map_err(PurgeError::Db))? else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(PurgeError::Decode)
    }

    /// Every stored record; unreadable ones are skipped with their ids.
    pub fn records(&self) -> Result<(Vec<PurgeRecord>, Vec<String>), PurgeError> {
        self.read(|db| {
            let mut records = Vec::new();
            let mut broken = Vec::new();
            for item in db.prefix_iterator(b"p/") {
                let (key, value) = item.map_err(PurgeError::Db)?;
                if !key.starts_with(b"p/") {
                    break;
                }
                match serde_json::from_slice(&value) {
                    Ok(record) => records.push(record),
                    Err(_) => broken.push(String::from_utf8_lossy(&key[2..]).into_owned()),
                }
            }
            Ok((records, broken))
        })
    }

    /// Removes expired records (their outbox entries go with them).
    pub fn delete(&self, ids: &[String]) -> Result<(), PurgeError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for id in ids {
            batch.delete(format!("p/{id}"));
        }
        for (peer, id) in self.outbox()? {
            if ids.contains(&id) {
                batch.delete(outbox_key(&peer, &id));
            }
        }
        self.write(|db| db.write_opt(batch, &synced()))
    }

    /// The newest purge time of rules that were forgotten (0 if none).
    pub fn watermark(&self) -> Result<u64, PurgeError> {
        Ok(self
            .read(|db| db.get(b"w").map_err(PurgeError::Db))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// Raises the watermark to `at` (synced).
    pub fn raise_watermark(&self, at: u64) -> Result<(), PurgeError> {
        if at <= self.watermark()? {
            return Ok(());
        }
        self.write(|db| db.put_opt(b"w", at.to_le_bytes(), &synced()))
    }

    /// `(peer, purge id)` pairs still to deliver.
    pub fn outbox(&self) -> Result<Vec<(String, String)>, PurgeError> {
        self.read(|db| {
            let mut owed = Vec::new();
            for item in db.iterator(IteratorMode::From(b"o/", rocksdb::Direction::Forward)) {
                let (key, _) = item.map_err(PurgeError::Db)?;
                let Some(rest) = key.strip_prefix(b"o/") else {
                    break;
                };
                if let Some(split) = rest.iter().position(|b| *b == 0) {
                    owed.push((
                        String::from_utf8_lossy(&rest[..split]).into_owned(),
                        String::from_utf8_lossy(&rest[split + 1..]).into_owned(),
                    ));
                }
            }
            Ok(owed)
        })
    }

    /// `peer` acknowledged purge `id`.
    pub fn delivered(&self, peer: &str, id: &str) -> Result<(), PurgeError> {
        self.write(|db| db.delete_opt(outbox_key(peer, id), &synced()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> PurgeRecord {
        PurgeRecord {
            id: id.into(),
            at: 1,
            soft: false,
            url_keys: vec![],
            urls: vec![],
            prefixes: vec![],
            hosts: vec!["example.com".into()],
            tags: vec![],
            all: false,
        }
    }

    #[test]
    fn records_and_outbox_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            db.put(
                &record("a"),
                &["http://n2:9090".into(), "http://n3:9090".into()],
            )
            .unwrap();
            db.put(&record("b"), &[]).unwrap();
            db.delivered("http://n2:9090", "a").unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        let (records, broken) = db.records().unwrap();
        assert_eq!(records.len(), 2);
        assert!(broken.is_empty());
        assert_eq!(db.get("a").unwrap(), Some(record("a")));
        assert_eq!(
            db.outbox().unwrap(),
            [("http://n3:9090".to_owned(), "a".to_owned())]
        );
        db.delete(&["a".into()]).unwrap();
        assert!(db.get("a").unwrap().is_none());
        assert!(db.outbox().unwrap().is_empty());
    }

    #[test]
    fn a_released_database_refuses_until_reacquired_and_is_the_next_owners() {
        let dir = tempfile::tempdir().unwrap();
        let old = Db::open(dir.path()).unwrap();
        old.put(&record("a"), &[]).unwrap();
        old.release();
        assert!(matches!(
            old.put(&record("b"), &[]),
            Err(PurgeError::Released)
        ));
        assert!(matches!(old.records(), Err(PurgeError::Released)));
        {
            // Another process (here another handle) can open it now.
            let new = Db::open(dir.path()).unwrap();
            assert_eq!(new.get("a").unwrap(), Some(record("a")));
            assert!(new.get("b").unwrap().is_none(), "refused, not lost");
        }
        old.reacquire().unwrap();
        old.put(&record("c"), &[]).unwrap();
        assert_eq!(old.records().unwrap().0.len(), 2);
    }
}
