//! HTTP cache semantics and storage for `edge`; knows nothing of sockets.
//!
//! This crate owns what makes `edge` a cache rather than a proxy: the
//! [`CacheKey`] that names an object, and (with the cache issue) the RFC 9111
//! policy, object metadata, the two-tier foyer store and in-flight fills. The
//! request pipeline in `edge` computes a key in its `cache_key` phase and will
//! look it up here.
//!
//! ```
//! use cache::CacheKey;
//! use http::Method;
//!
//! let a = CacheKey::for_request(&Method::GET, "http", "Example.COM", "/a?b=1").unwrap();
//! let b = CacheKey::for_request(&Method::HEAD, "http", "example.com", "/a?b=1").unwrap();
//! assert_eq!(a, b); // GET and HEAD share an entry; the host is case-insensitive
//! assert!(CacheKey::for_request(&Method::POST, "http", "example.com", "/a").is_none());
//! ```

pub mod cache_control;
mod key;
pub mod meta;
pub mod object;
pub mod policy;
mod status;
pub mod store;
pub mod validation;

pub use cache_control::CacheControl;
pub use key::{CacheKey, KeyRules};
pub use status::CacheStatus;
