//! What the node tells about itself besides metrics: the buffered access
//! log and the live request log (ARCHITECTURE.md's `observe/`).

pub mod access_log;
pub mod live_log;
pub mod log_file;
