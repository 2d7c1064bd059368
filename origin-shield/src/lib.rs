//! Where a miss goes.
//!
//! This crate owns the upstream side of the topology: the [`Peer`]s a node may
//! fetch from (origins and, later, shield nodes), and how one is picked for a
//! request ([`balance`]). It knows nothing of sockets: `edge` asks it for a
//! peer, then connects.
//!
//! Consistent hashing over shield peers and health checking arrive with the
//! origin-shield issue; today the crate provides peers parsed from URLs and
//! round-robin selection across an origin pool.
//!
//! ```
//! use origin_shield::{Peer, balance::RoundRobin};
//!
//! let pool = RoundRobin::new(vec![
//!     "http://127.0.0.1:8001".parse::<Peer>().unwrap(),
//!     "http://127.0.0.1:8002".parse::<Peer>().unwrap(),
//! ]);
//! let first = pool.pick().unwrap().authority().to_string();
//! let second = pool.pick().unwrap().authority().to_string();
//! assert_ne!(first, second);
//! ```

pub mod balance;
mod error;
mod peer;

pub use error::{Error, Result};
pub use peer::{Peer, Role, Scheme};
