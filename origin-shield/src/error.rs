//! Errors of the origin-shield crate.

/// Why a peer could not be built or chosen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer URL does not parse as a URI.
    #[error("invalid peer URL {url:?}: {source}")]
    InvalidUri {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    /// The URL parses but cannot name a peer.
    #[error("invalid peer URL {url:?}: {reason}")]
    Unsupported { url: String, reason: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
