//! The data directory's lock: one edge process per data directory.

use std::path::PathBuf;

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data directory {} is in use by another edge process (lock file {})",
        dir.display(),
        dir.join(LOCK_FILE).display()
    )]
    InUse { dir: PathBuf },
    #[error("cannot create data directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Name of the lock file in the data directory.
const LOCK_FILE: &str = "edge.lock";

/// Takes the data directory's lock: two processes writing one disk cache
/// would corrupt each other's view of it.
pub(crate) fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, DataDirError> {
    let data_dir_err = |source| DataDirError::Io {
        path: dir.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(data_dir_err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::InUse {
            dir: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(err)) => Err(data_dir_err(err)),
    }
}
