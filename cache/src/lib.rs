//! HTTP cache semantics and storage for `edge`; knows nothing of sockets.
//!
//! This crate owns what makes `edge` a cache rather than a proxy:
//!
//! - [`CacheKey`] (`key.rs`): the blake3 name of an object and its Vary
//!   variants, with configurable query rules ([`KeyRules`]);
//! - [`policy`]: RFC 9111 as pure functions of headers and an explicit
//!   clock: storable?, freshness lifetime, Age, reuse, stale-if-error;
//! - [`decision`]: what to do with a request given the lookup, the
//!   request's directives, the purge verdict and `now` (serve, revalidate,
//!   fill, 504), as data;
//! - [`validation`]: what a revalidation's answer comes to (refreshed,
//!   replaced, unusable), 304 merging, client conditionals, invalidation
//!   after unsafe methods;
//! - [`encoding`]: content codings and `Accept-Encoding` (negotiation and
//!   the normal form that keys variants);
//! - [`date`]: HTTP-dates in all three forms, any case;
//! - [`targeted`]: `CDN-Cache-Control` (a Structured Field) and
//!   `Surrogate-Control`, ignored whole when malformed;
//! - [`Clock`]: the one injected source of "now";
//! - [`NoCacheReason`]: why a response is not stored, typed end to end;
//! - [`meta`]: `ObjectMeta` and its versioned encoding;
//! - [`store`]: foyer's memory + disk tiers, chunked bodies;
//! - [`slice`]: large objects kept as Range-fetched slices;
//! - [`variants`]: the index of stored Vary variants, and [`inspect`]:
//!   what the cache holds for one URL, for the admin inspector;
//! - [`object`]: lookup through Vary records and the chunk-by-chunk
//!   `ObjectWriter` that commits an object only once its body is complete.
//!
//! `edge` calls these in the cache phases of a request (`edge/src/proxy/cached.rs`).
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
mod clock;
pub mod date;
pub mod decision;
pub mod encoding;
pub mod fill;
pub mod inspect;
mod key;
pub mod meta;
pub mod object;
pub mod policy;
pub mod range;
mod reason;
pub mod slice;
mod status;
pub mod store;
pub mod targeted;
pub mod validation;
pub mod variants;

pub use cache_control::CacheControl;
pub use clock::Clock;
pub use key::{CacheKey, KeyMap, KeyRules};
pub use reason::NoCacheReason;
pub use status::CacheStatus;
