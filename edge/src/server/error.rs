//! Why the server could not start.

use std::net::SocketAddr;

use super::data_dir::DataDirError;
use crate::sites::SitesError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} (the {role} address): {source}")]
    Bind {
        addr: SocketAddr,
        /// `listen` or `admin`.
        role: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Cache(#[from] cache::store::StoreError),
    #[error(transparent)]
    Sites(#[from] SitesError),
    #[error(transparent)]
    Purge(#[from] purge_api::PurgeError),
    #[error(transparent)]
    Cluster(#[from] cluster::Error),
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    #[error(transparent)]
    H3(#[from] super::h3::H3Error),
    #[error(transparent)]
    UpstreamCa(#[from] crate::upstream::CaError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("binary upgrade: {0}")]
    Upgrade(#[from] crate::ops::upgrade::error::UpgradeError),
}
