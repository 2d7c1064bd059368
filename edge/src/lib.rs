//! `edge`: a CDN edge caching node — the server binary and request pipeline.
//!
//! This crate owns everything with a socket: the client-facing listener
//! ([`server`]), one request's phases ([`proxy`]), the programmable surface
//! ([`hooks`]), compression ([`transform`]), where misses go ([`routing`]: shields, origin pools, health
//! probes; [`discovery`]: shields from cluster membership), the pooled client to peers ([`upstream`]), the admin listener
//! ([`admin`]), configuration ([`config`], [`cli`]), and the binary's logging
//! ([`logging`]), man page ([`man`]) and `edge inspect` view ([`inspect`]).
//! Cache semantics live in
//! the `cache` crate, peer choice in `origin-shield`, invalidation in
//! `purge-api`.
//!
//! Embedding, as the end-to-end tests do:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = edge::Config::default();
//! config.origins = vec!["http://127.0.0.1:8000".parse()?];
//! config.listen = "127.0.0.1:0".parse()?;
//! config.admin = "127.0.0.1:0".parse()?;
//! let server = edge::Server::bind(config).await?.spawn();
//! println!("proxying on {}", server.addr());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod access;
pub mod admin;
pub mod body;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod error;
pub mod headers;
pub mod hooks;
pub mod inspect;
pub mod logging;
pub mod man;
pub mod metrics;
pub mod observe;
pub mod ops;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod sites;
pub mod stats;
pub mod transform;
pub mod upstream;

pub use config::Config;
pub use error::ProxyError;
pub use hooks::{DefaultHooks, EdgeHooks, Session};
pub use server::{Server, ServerError, ServerHandle};
