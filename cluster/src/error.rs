//! Why the cluster could not do something: one enum for the crate, each
//! variant keeping async-nats' own error as its source.

/// A cluster failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Credentials {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
    #[error("NATS is not connected")]
    NotConnected,
    #[error("JetStream stream {stream}: {source}")]
    Stream {
        stream: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("JetStream publish: {0}")]
    Publish(#[source] async_nats::jetstream::context::PublishError),
    #[error("JetStream did not acknowledge the purge within {0:?}")]
    AckTimeout(std::time::Duration),
    #[error("JetStream consumer {name}: {source}")]
    Consumer {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("KV bucket {bucket}: {source}")]
    Bucket {
        bucket: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot encode a cluster message: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
