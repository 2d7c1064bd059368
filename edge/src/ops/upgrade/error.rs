//! Why a binary upgrade did not happen.

use std::path::PathBuf;
use std::time::Duration;

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("upgrade socket {}: {source}", path.display())]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {}: {source}", exe.display())]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the new process exited before taking over ({0})")]
    Exited(String),
    #[error("the new process did not take over within {0:?} (server.upgrade_timeout)")]
    Timeout(Duration),
    #[error("upgrade conversation: {0}")]
    Io(#[from] std::io::Error),
    #[error("the other process closed the upgrade socket")]
    Closed,
    #[error("upgrade protocol: {0}")]
    Protocol(String),
    #[error("pid {peer} connected to the upgrade socket, not the new process {child}")]
    Stranger { peer: i32, child: u32 },
    #[error("cannot release the data directory: {0}")]
    Release(String),
}
