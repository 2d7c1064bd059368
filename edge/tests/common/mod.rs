//! What `soak.rs` takes from `mod common`. The helpers live in the shared
//! harness (`edge_tests`); this shim only fills in the binary's path, which
//! `CARGO_BIN_EXE_edge` gives edge's own integration tests alone.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

pub use edge_tests::free_port;
// Not every test file that includes this module uses every helper.
#[allow(unused_imports)]
pub use edge_tests::process::TOKEN;

/// The `edge` binary for `origin` on `dir`, listening on `listen` and
/// `admin` (127.0.0.1), with the purge token [`TOKEN`] and none of the
/// caller's `EDGE_*` variables; logging and stdio are the caller's.
pub fn edge_command(origin: SocketAddr, dir: &Path, listen: u16, admin: u16) -> Command {
    edge_tests::process::edge_command(env!("CARGO_BIN_EXE_edge"), origin, dir, listen, admin)
}
