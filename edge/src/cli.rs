//! Command-line flags. Each overrides the matching key of the TOML file; each
//! can also be set through an `EDGE_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use origin_shield::balance::Policy;
use origin_shield::{Peer, Role};

use crate::config::{ByteSize, Config, LogFormat, Secret, ShieldPeer};

/// A CDN edge caching node.
///
/// Runs with embedded defaults; only an origin is required:
/// `edge --origin http://127.0.0.1:8000`
#[derive(Debug, Parser)]
#[command(
    name = "edge",
    version,
    after_help = "Logging: EDGE_LOG (or RUST_LOG) sets verbosity, e.g. EDGE_LOG=debug or \
EDGE_LOG=warn,access=info. Access lines use the `access` target.\n\
Every key of the config file is documented in examples/edge.toml."
)]
pub struct Cli {
    /// Origin server URL, `http://HOST[:PORT]`; repeat for several.
    #[arg(
        long = "origin",
        value_name = "URL",
        env = "EDGE_ORIGIN",
        value_delimiter = ','
    )]
    pub origins: Vec<Peer>,

    /// Shield node (another edge), `http://HOST:PORT` or `NAME=http://HOST:PORT`
    /// (NAME is its --node-name, so a node recognises itself); repeat for
    /// several. Give every node of a tier the same list.
    #[arg(
        long = "shield",
        value_name = "[NAME=]URL",
        env = "EDGE_SHIELD",
        value_delimiter = ','
    )]
    pub shields: Vec<ShieldArg>,

    /// How requests are spread over the origins: round_robin, weighted,
    /// least_conn, p2c, hash_key, hash_ip [default: round_robin]
    #[arg(long, value_name = "POLICY", env = "EDGE_BALANCE")]
    pub balance: Option<Policy>,

    /// Bearer token for the purge API and the PURGE method (at least 8
    /// characters); prefer EDGE_PURGE_TOKEN, which stays out of `ps`
    #[arg(
        long,
        value_name = "TOKEN",
        env = "EDGE_PURGE_TOKEN",
        hide_env_values = true
    )]
    pub purge_token: Option<String>,

    /// Admin URL of another node of the cluster, `http://HOST:PORT`; purges
    /// received here are forwarded to it. Repeat for several.
    #[arg(
        long = "peer",
        value_name = "URL",
        env = "EDGE_PEER",
        value_delimiter = ','
    )]
    pub peers: Vec<String>,

    /// Also serve HTTPS on this address (needs --tls-cert and --tls-key)
    #[arg(long, value_name = "ADDR", env = "EDGE_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,

    /// PEM certificate chain for the TLS listener
    #[arg(long, value_name = "FILE", env = "EDGE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for the TLS listener
    #[arg(long, value_name = "FILE", env = "EDGE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Client-facing listen address [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR", env = "EDGE_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Admin listen address for /healthz and /metrics [default: 127.0.0.1:9090]
    #[arg(long, value_name = "ADDR", env = "EDGE_ADMIN")]
    pub admin: Option<SocketAddr>,

    /// Directory for the disk cache and durable metadata [default: ./edge-data]
    #[arg(long, value_name = "DIR", env = "EDGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Memory tier size, e.g. 256MiB [default: 256MiB]
    #[arg(long, value_name = "SIZE", env = "EDGE_MEMORY")]
    pub memory: Option<ByteSize>,

    /// Disk tier size, e.g. 4GiB [default: 1GiB]
    #[arg(long, value_name = "SIZE", env = "EDGE_DISK")]
    pub disk: Option<ByteSize>,

    /// This node's name in Via and CDN-Loop headers; give each node of a
    /// tier its own [default: edge]
    #[arg(long, value_name = "NAME", env = "EDGE_NODE_NAME")]
    pub node_name: Option<String>,

    /// TOML configuration file (see examples/edge.toml)
    #[arg(long, value_name = "FILE", env = "EDGE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Validate FILE (with any other flags applied) and exit; takes the place of --config
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<PathBuf>,

    /// Log format [default: text]
    #[arg(long, value_name = "FORMAT", env = "EDGE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Append access lines to FILE instead of stdout [default: stdout]
    #[arg(long, value_name = "FILE", env = "EDGE_ACCESS_LOG")]
    pub access_log: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands other than serving.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Live view of a running node (like varnishstat): hit ratios, req/s,
    /// bytes, tiers, peers. Reads ADMIN/stats.json.
    Stats {
        /// The node's admin address
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
        admin: String,
        /// Print one snapshot and exit
        #[arg(long)]
        once: bool,
        /// Seconds between refreshes
        #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
        interval: f64,
    },
}

/// `--shield [NAME=]URL`.
#[derive(Debug, Clone)]
pub struct ShieldArg {
    pub name: Option<String>,
    pub peer: Peer,
}

impl std::str::FromStr for ShieldArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, url) = match s.split_once('=') {
            Some((name, url)) if !name.contains("://") => (Some(name.trim().to_owned()), url),
            _ => (None, s),
        };
        let peer = url.trim().parse::<Peer>().map_err(|e| e.to_string())?;
        Ok(ShieldArg { name, peer })
    }
}

impl Cli {
    /// The flag that sets a config key, for error messages.
    pub fn flag_for(key: &str) -> Option<&'static str> {
        Some(match key {
            "origins" => "--origin",
            "shields" => "--shield",
            "upstream.balance" => "--balance",
            "purge.token" => "--purge-token",
            "tls.listen" => "--tls-listen",
            "tls.cert" => "--tls-cert",
            "tls.key" => "--tls-key",
            "purge.peers" => "--peer",
            "listen" => "--listen",
            "admin" => "--admin",
            "data_dir" => "--data-dir",
            "cache.memory" => "--memory",
            "cache.disk" => "--disk",
            "node_name" => "--node-name",
            "log_format" => "--log-format",
            "access_log" => "--access-log",
            _ => return None,
        })
    }

    /// Whether this command line (or its `EDGE_*` variables) sets `key`.
    pub fn overrides(&self, key: &str) -> bool {
        match key {
            "origins" => !self.origins.is_empty(),
            "shields" => !self.shields.is_empty(),
            "upstream.balance" => self.balance.is_some(),
            "purge.token" => self.purge_token.is_some(),
            "tls.listen" => self.tls_listen.is_some(),
            "tls.cert" => self.tls_cert.is_some(),
            "tls.key" => self.tls_key.is_some(),
            "purge.peers" => !self.peers.is_empty(),
            "listen" => self.listen.is_some(),
            "admin" => self.admin.is_some(),
            "data_dir" => self.data_dir.is_some(),
            "cache.memory" => self.memory.is_some(),
            "cache.disk" => self.disk.is_some(),
            "node_name" => self.node_name.is_some(),
            "log_format" => self.log_format.is_some(),
            "access_log" => self.access_log.is_some(),
            _ => false,
        }
    }

    /// Overwrites the keys this command line sets.
    pub fn apply_to(&self, config: &mut Config) {
        if !self.origins.is_empty() {
            config.origins = self.origins.clone();
        }
        if !self.shields.is_empty() {
            config.shields = self
                .shields
                .iter()
                .map(|arg| ShieldPeer {
                    peer: arg.peer.clone().with_role(Role::Shield),
                    name: arg.name.clone(),
                })
                .collect();
        }
        if let Some(v) = self.balance {
            config.upstream.balance = v;
        }
        if let Some(v) = self.tls_listen {
            config.tls.listen = Some(v);
        }
        if let Some(v) = &self.tls_cert {
            config.tls.cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            config.tls.key = Some(v.clone());
        }
        if let Some(token) = &self.purge_token {
            config.purge.token = Some(Secret(token.clone()));
        }
        if !self.peers.is_empty() {
            config.purge.peers = self.peers.clone();
        }
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.admin {
            config.admin = v;
        }
        if let Some(v) = &self.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = self.memory {
            config.cache.memory = v;
        }
        if let Some(v) = self.disk {
            config.cache.disk = v;
        }
        if let Some(v) = &self.node_name {
            config.node_name = v.clone();
        }
        if let Some(v) = &self.access_log {
            config.access_log = Some(v.clone());
        }
        if let Some(v) = self.log_format {
            config.log_format = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "listen = \"127.0.0.1:1111\"\nadmin = \"127.0.0.1:2222\"\norigins = [\"http://127.0.0.1:3333\"]"
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let cli =
            Cli::try_parse_from(["edge", "--config", path, "--listen", "127.0.0.1:4444"]).unwrap();
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.listen.port(), 4444, "flag beats file");
        assert_eq!(c.admin.port(), 2222, "file beats default");
        assert_eq!(c.cache.disk, ByteSize::gib(1), "default kept");
        assert_eq!(c.origins[0].authority().as_str(), "127.0.0.1:3333");

        let cli = Cli::try_parse_from([
            "edge",
            "--config",
            path,
            "--origin",
            "http://a:1",
            "--origin",
            "http://b:2",
            "--memory",
            "64MiB",
        ])
        .unwrap();
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.origins.len(), 2, "--origin replaces the file's list");
        assert_eq!(c.cache.memory, ByteSize::mib(64));
    }

    #[test]
    fn bad_flags_are_refused_by_clap() {
        assert!(Cli::try_parse_from(["edge", "--origin", "ftp://x"]).is_err());
        assert!(Cli::try_parse_from(["edge", "--memory", "lots"]).is_err());
        assert!(Cli::try_parse_from(["edge", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn missing_origin_is_a_clear_error() {
        let cli = Cli::try_parse_from(["edge"]).unwrap();
        let err = Config::load(&cli).unwrap_err().to_string();
        assert!(err.starts_with("`origins` (--origin): no origin"), "{err}");
    }

    #[test]
    fn validation_errors_say_where_the_value_came_from() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "origins = [\"http://127.0.0.1:1\"]\n[cache]\ndisk = \"1MiB\""
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let cli = Cli::try_parse_from(["edge", "--config", path]).unwrap();
        let err = Config::load(&cli).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{path}:3: `cache.disk` (--disk): must be at least 64MiB")
        );
        let cli = Cli::try_parse_from(["edge", "--config", path, "--disk", "2MiB"]).unwrap();
        let err = Config::load(&cli).unwrap_err().to_string();
        assert!(
            err.starts_with("command line: `cache.disk` (--disk)"),
            "{err}"
        );
    }

    /// Both limits were once reported as `server`, which has no line of its
    /// own, so the error named no line.
    #[test]
    fn a_zero_server_limit_names_its_own_key_and_line() {
        for (limits, key, line) in [
            ("max_connections = 0\nmax_headers = 5", "max_connections", 3),
            ("max_connections = 5\nmax_headers = 0", "max_headers", 4),
        ] {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            writeln!(
                file,
                "origins = [\"http://127.0.0.1:1\"]\n[server]\n{limits}"
            )
            .unwrap();
            let path = file.path().to_str().unwrap();
            let cli = Cli::try_parse_from(["edge", "--config", path]).unwrap();
            let err = Config::load(&cli).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{path}:{line}: `server.{key}`")),
                "{err}"
            );
        }
    }
}
