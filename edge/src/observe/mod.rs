//! What the node tells about itself besides metrics: the buffered access
//! log, the live request log and OpenTelemetry traces (ARCHITECTURE.md's
//! `observe/`).

pub mod access_log;
pub mod live_log;
pub mod log_file;
pub mod trace;
pub mod trace_context;
