//! Where a miss goes.
//!
//! This crate owns the upstream side of the topology: the [`Peer`]s a node
//! may fetch from (origins and shield nodes), the consistent-hash [`ring`]
//! that gives each cache key a home among the shields, the [`balance`]
//! policies of an origin pool, and each peer's [`health`] (probes, passive
//! ejection, concurrency cap, retry budget). It knows nothing of sockets:
//! `edge` asks it for an order of peers, connects, and reports back.
//!
//! ```
//! use origin_shield::balance::{Pick, Policy, Pool};
//! use origin_shield::health::HealthPolicy;
//! use origin_shield::Peer;
//!
//! let pool = Pool::new(
//!     vec![
//!         "http://127.0.0.1:8001".parse::<Peer>().unwrap(),
//!         "http://127.0.0.1:8002".parse::<Peer>().unwrap(),
//!     ],
//!     Policy::RoundRobin,
//!     &HealthPolicy::default(),
//! );
//! let first = pool.order(&Pick::default())[0].peer.to_string();
//! let second = pool.order(&Pick::default())[0].peer.to_string();
//! assert_ne!(first, second);
//! ```

pub mod balance;
mod error;
pub mod health;
mod peer;
pub mod ring;

pub use error::{Error, Result};
pub use peer::{Peer, Role, Scheme, Transport};
