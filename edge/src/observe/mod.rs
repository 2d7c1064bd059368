//! What the node tells about itself besides metrics: today the buffered
//! access log (ARCHITECTURE.md's `observe/`).

pub mod access_log;
pub mod log_file;
