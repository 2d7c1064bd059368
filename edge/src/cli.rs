//! Command-line flags. Each overrides the matching key of the TOML file; each
//! can also be set through an `EDGE_*` environment variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use origin_shield::balance::Policy;
use origin_shield::{Peer, Role};

use crate::config::{AccessLogFormat, ByteSize, Config, LogFormat, Overrides, Secret, ShieldPeer};

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

    /// NATS server of the cluster, `nats://HOST:PORT` (JetStream on):
    /// purges and membership go through it instead of --peer lists.
    /// Repeat for several servers of one NATS cluster.
    #[arg(
        long = "cluster",
        value_name = "URL",
        env = "EDGE_CLUSTER",
        value_delimiter = ','
    )]
    pub cluster: Vec<String>,

    /// This node's role in the cluster: edge or shield [default: edge]
    #[arg(long, value_name = "ROLE", env = "EDGE_ROLE")]
    pub role: Option<ClusterRole>,

    /// Token for NATS; from the environment, so it stays out of `ps`
    #[arg(
        long,
        value_name = "TOKEN",
        env = "EDGE_CLUSTER_TOKEN",
        hide_env_values = true
    )]
    pub cluster_token: Option<String>,

    /// Also serve HTTPS on this address (needs --tls-cert and --tls-key)
    #[arg(long, value_name = "ADDR", env = "EDGE_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,

    /// Also serve HTTP/3 over QUIC on this UDP address (needs --tls-cert and --tls-key)
    #[arg(long, value_name = "ADDR", env = "EDGE_H3_LISTEN")]
    pub h3_listen: Option<SocketAddr>,

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

    /// Which new objects go to disk: frequency (on their 3rd request) or
    /// all (when stored) [default: frequency]
    #[arg(long, value_name = "MODE", env = "EDGE_DISK_ADMISSION")]
    pub disk_admission: Option<crate::config::DiskAdmissionMode>,

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

    /// Access line format: combined (nginx's), json or text [default: as --log-format]
    #[arg(long, value_name = "FORMAT", env = "EDGE_ACCESS_LOG_FORMAT")]
    pub access_log_format: Option<AccessLogFormat>,

    /// Append access lines to FILE instead of stdout [default: stdout]
    #[arg(long, value_name = "FILE", env = "EDGE_ACCESS_LOG")]
    pub access_log: Option<PathBuf>,

    /// Send trace spans to this OTLP/HTTP collector (http://HOST:4318) and take part in W3C trace context [default: off]
    #[arg(long, value_name = "URL", env = "EDGE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Share of new traces recorded and exported, 0.0 to 1.0 [default: 0]
    #[arg(long, value_name = "RATIO", env = "EDGE_TRACE_SAMPLING")]
    pub trace_sampling: Option<f64>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands other than serving.
/// `--role`: clap's view of [`cluster::Role`] (that crate knows no clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterRole {
    /// Serves clients, fetching misses through the shields.
    Edge,
    /// A member of the edges' ring.
    Shield,
}

impl ClusterRole {
    fn role(self) -> cluster::Role {
        match self {
            ClusterRole::Edge => cluster::Role::Edge,
            ClusterRole::Shield => cluster::Role::Shield,
        }
    }
}

/// How a subcommand reaches a running node's admin listener.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminAccess {
    /// The node's admin address
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    pub admin: String,
    /// The purge token (prefer EDGE_PURGE_TOKEN, which stays out of `ps`)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "EDGE_PURGE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

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
    /// What the cache holds for URL (docs/inspect.md): variants,
    /// encodings, tiers, size, age, freshness, stale windows, validators,
    /// tags, slices and the purge rules covering it. Reads
    /// ADMIN/cache/inspect with the purge token.
    Inspect {
        /// The URL as clients ask for it: `http://example.com/a.css`
        url: String,
        #[command(flatten)]
        node: AdminAccess,
        /// Print the JSON answer as it is
        #[arg(long)]
        json: bool,
    },
    /// Follow the node's requests as they happen, like varnishlog: one
    /// line per request from ADMIN/log (Server-Sent Events)
    Log {
        /// Keep following (the only mode; accepted for tail -f habits)
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only requests matching every term: status:5xx, status:400-499,
        /// cache:MISS, host:NAME, path:/PREFIX, client:IP or CIDR
        /// (repeatable, or comma-separated)
        #[arg(long, value_name = "TERMS")]
        filter: Vec<String>,
        #[command(flatten)]
        node: AdminAccess,
        /// Print each record's JSON as it came
        #[arg(long)]
        json: bool,
    },
    /// Print a signed link for a site with `signed_urls` (docs/access.md):
    /// URL (a path or a full URL) with the expiry and HMAC-SHA256
    /// signature parameters added, signed with the secret in $ENV.
    Sign {
        /// The link to sign: `/video/a.mp4` or `https://host/video/a.mp4`
        url: String,
        /// How long the link stays valid (`1h`, `7d`)
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::config::parse_duration)]
        expires: std::time::Duration,
        /// The environment variable with the secret (as `signed_urls.secret_env`)
        #[arg(long, value_name = "ENV", default_value = "EDGE_URL_SECRET")]
        secret_env: String,
        /// The expiry parameter (as `signed_urls.expires_param`)
        #[arg(long, value_name = "NAME", default_value = "expires")]
        expires_param: String,
        /// The signature parameter (as `signed_urls.signature_param`)
        #[arg(long, value_name = "NAME", default_value = "sig")]
        signature_param: String,
    },
    /// Print the man page (roff) to stdout, for packaging:
    /// `edge man | gzip -9n > edge.1.gz`.
    #[command(hide = true)]
    Man,
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

impl ShieldArg {
    fn shield_peer(&self) -> ShieldPeer {
        ShieldPeer {
            peer: self.peer.clone().with_role(Role::Shield),
            name: self.name.clone(),
        }
    }
}

/// A flag that overrides a config key.
struct Flag {
    /// The dotted config key it sets.
    key: &'static str,
    /// How it is spelled on the command line.
    long: &'static str,
    /// Whether the command line (or the variable) gives it.
    given: fn(&Cli) -> bool,
    /// Writes its value over the key, when given.
    apply: fn(&Cli, &mut Config),
}

/// A flag's field in `Cli`; not given is `None` or an empty list.
trait Given {
    type Value;
    fn given(&self) -> Option<&Self::Value>;
}

impl<T> Given for Option<T> {
    type Value = T;
    fn given(&self) -> Option<&T> {
        self.as_ref()
    }
}

impl<T> Given for Vec<T> {
    type Value = Vec<T>;
    fn given(&self) -> Option<&Vec<T>> {
        (!self.is_empty()).then_some(self)
    }
}

/// Builds `FLAGS` from one row per flag, so that the field a flag is read
/// from is named once: its "given" test and its write cannot disagree.
macro_rules! flags {
    ($($field:ident: $long:literal => $key:literal, |$config:ident, $value:ident| $write:expr;)*) => {
        const FLAGS: &[Flag] = &[$(Flag {
            key: $key,
            long: $long,
            given: |cli| cli.$field.given().is_some(),
            apply: |cli, $config| {
                if let Some($value) = cli.$field.given() {
                    $write;
                }
            },
        }),*];
    };
}

// The one table of the flags that set config keys (each also read from
// `EDGE_` and its name in capitals): precedence over the file (`Overrides`)
// and the flag named in an error about its key both come from it. clap
// learns the same names from the `#[arg]`s above; a test checks that they
// and this table agree.
flags! {
    origins: "--origin" => "origins", |c, v| c.origins = v.clone();
    shields: "--shield" => "shields",
        |c, v| c.shields = v.iter().map(ShieldArg::shield_peer).collect();
    balance: "--balance" => "upstream.balance", |c, v| c.upstream.balance = *v;
    purge_token: "--purge-token" => "purge.token",
        |c, v| c.purge.token = Some(Secret(v.clone()));
    peers: "--peer" => "purge.peers", |c, v| c.purge.peers = v.clone();
    cluster: "--cluster" => "cluster.servers", |c, v| c.cluster.servers = v.clone();
    role: "--role" => "cluster.role", |c, v| c.cluster.role = v.role();
    cluster_token: "--cluster-token" => "cluster.token",
        |c, v| c.cluster.token = Some(Secret(v.clone()));
    tls_listen: "--tls-listen" => "tls.listen", |c, v| c.tls.listen = Some(*v);
    h3_listen: "--h3-listen" => "tls.h3_listen", |c, v| c.tls.h3_listen = Some(*v);
    tls_cert: "--tls-cert" => "tls.cert", |c, v| c.tls.cert = Some(v.clone());
    tls_key: "--tls-key" => "tls.key", |c, v| c.tls.key = Some(v.clone());
    listen: "--listen" => "listen", |c, v| c.listen = *v;
    admin: "--admin" => "admin", |c, v| c.admin = *v;
    data_dir: "--data-dir" => "data_dir", |c, v| c.data_dir = v.clone();
    memory: "--memory" => "cache.memory", |c, v| c.cache.memory = *v;
    disk: "--disk" => "cache.disk", |c, v| c.cache.disk = *v;
    disk_admission: "--disk-admission" => "cache.disk_admission",
        |c, v| c.cache.disk_admission = *v;
    node_name: "--node-name" => "node_name", |c, v| c.node_name = v.clone();
    log_format: "--log-format" => "log_format", |c, v| c.log_format = *v;
    access_log_format: "--access-log-format" => "access_log_format",
        |c, v| c.access_log_format = Some(*v);
    access_log: "--access-log" => "access_log",
        |c, v| c.access_log = Some(v.clone());
    otlp_endpoint: "--otlp-endpoint" => "tracing.otlp_endpoint",
        |c, v| c.tracing.otlp_endpoint = Some(v.clone());
    trace_sampling: "--trace-sampling" => "tracing.sampling",
        |c, v| c.tracing.sampling = *v;
}

impl Cli {
    /// The flag that sets a config key, for error messages.
    pub fn flag_for(key: &str) -> Option<&'static str> {
        FLAGS.iter().find(|f| f.key == key).map(|f| f.long)
    }
}

impl Overrides for Cli {
    /// `--check-config` takes the place of `--config`.
    fn file(&self) -> Option<&Path> {
        self.check_config.as_deref().or(self.config.as_deref())
    }

    fn apply_to(&self, config: &mut Config) {
        for flag in FLAGS {
            (flag.apply)(self, config);
        }
    }

    fn sets(&self, key: &str) -> bool {
        FLAGS.iter().any(|f| f.key == key && (f.given)(self))
    }

    fn flag_for(&self, key: &str) -> Option<&'static str> {
        Cli::flag_for(key)
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

    /// Flags that choose the file rather than set a key in it.
    const FILE_FLAGS: [&str; 2] = ["--config", "--check-config"];

    #[test]
    fn the_flag_table_and_clap_know_the_same_flags() {
        use clap::CommandFactory;
        use std::collections::BTreeSet;

        let command = Cli::command();
        let clap: BTreeSet<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_long())
            .map(|long| format!("--{long}"))
            .filter(|long| !FILE_FLAGS.contains(&long.as_str()))
            .collect();
        let table: BTreeSet<String> = FLAGS.iter().map(|f| f.long.to_owned()).collect();
        assert_eq!(clap, table, "clap's flags (left) and FLAGS (right)");
        assert_eq!(table.len(), FLAGS.len(), "a flag is in FLAGS twice");
        let keys: BTreeSet<&str> = FLAGS.iter().map(|f| f.key).collect();
        assert_eq!(keys.len(), FLAGS.len(), "a key is in FLAGS twice");
        // Every flag but --check-config is also read from EDGE_ and its name
        // in capitals.
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            let expected = (long != "check-config")
                .then(|| format!("EDGE_{}", long.to_uppercase().replace('-', "_")));
            assert_eq!(env, expected, "--{long}");
        }
    }

    /// One value for every flag of `FLAGS`.
    const EVERY_FLAG: [(&str, &str); 24] = [
        ("--origin", "http://127.0.0.1:1"),
        ("--shield", "s1=http://127.0.0.1:2"),
        ("--balance", "least_conn"),
        ("--purge-token", "0123456789"),
        ("--peer", "http://127.0.0.1:3"),
        ("--tls-listen", "127.0.0.1:4"),
        ("--h3-listen", "127.0.0.1:8"),
        ("--tls-cert", "cert.pem"),
        ("--tls-key", "key.pem"),
        ("--listen", "127.0.0.1:5"),
        ("--admin", "127.0.0.1:6"),
        ("--data-dir", "data"),
        ("--memory", "2MiB"),
        ("--disk", "128MiB"),
        ("--disk-admission", "all"),
        ("--node-name", "n1"),
        ("--log-format", "json"),
        ("--access-log", "access.log"),
        ("--access-log-format", "combined"),
        ("--cluster", "nats://127.0.0.1:7"),
        ("--role", "shield"),
        ("--cluster-token", "nats-token"),
        ("--otlp-endpoint", "http://127.0.0.1:8"),
        ("--trace-sampling", "0.25"),
    ];

    #[test]
    fn each_flag_sets_its_own_key_and_no_other() {
        assert_eq!(EVERY_FLAG.len(), FLAGS.len());
        let none = Cli::try_parse_from(["edge"]).unwrap();
        assert!(FLAGS.iter().all(|f| !none.sets(f.key)));
        for (long, value) in EVERY_FLAG {
            let cli = Cli::try_parse_from(["edge", long, value]).unwrap();
            let set: Vec<&str> = FLAGS
                .iter()
                .filter(|f| cli.sets(f.key))
                .map(|f| f.key)
                .collect();
            assert_eq!(set.len(), 1, "{long} sets {set:?}");
            assert_eq!(Cli::flag_for(set[0]), Some(long));
            assert_eq!(Overrides::flag_for(&cli, set[0]), Some(long));
        }
    }

    #[test]
    fn every_flag_lands_on_its_key() {
        let args = EVERY_FLAG.iter().flat_map(|(long, value)| [*long, *value]);
        let cli = Cli::try_parse_from(std::iter::once("edge").chain(args)).unwrap();
        let mut c = Config::default();
        cli.apply_to(&mut c);
        assert_eq!(c.origins[0].authority().as_str(), "127.0.0.1:1");
        assert_eq!(c.shields[0].name.as_deref(), Some("s1"));
        assert_eq!(c.shields[0].peer.role(), Role::Shield);
        assert_eq!(c.upstream.balance, Policy::LeastConn);
        assert_eq!(c.purge.token, Some(Secret("0123456789".into())));
        assert_eq!(c.purge.peers, ["http://127.0.0.1:3"]);
        assert_eq!(c.tls.listen.map(|a| a.port()), Some(4));
        assert_eq!(c.tls.h3_listen.map(|a| a.port()), Some(8));
        assert_eq!(c.tls.cert.as_deref(), Some(Path::new("cert.pem")));
        assert_eq!(c.tls.key.as_deref(), Some(Path::new("key.pem")));
        assert_eq!(c.listen.port(), 5);
        assert_eq!(c.admin.port(), 6);
        assert_eq!(c.data_dir, Path::new("data"));
        assert_eq!(c.cache.memory, ByteSize::mib(2));
        assert_eq!(c.cache.disk, ByteSize::mib(128));
        assert_eq!(
            c.cache.disk_admission,
            crate::config::DiskAdmissionMode::All
        );
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.access_log.as_deref(), Some(Path::new("access.log")));
        assert_eq!(c.access_log_format, Some(AccessLogFormat::Combined));
        assert_eq!(c.cluster.servers, ["nats://127.0.0.1:7"]);
        assert_eq!(c.cluster.role, cluster::Role::Shield);
        assert_eq!(c.cluster.token, Some(Secret("nats-token".into())));
        assert_eq!(
            c.tracing.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:8")
        );
        assert_eq!(c.tracing.sampling, 0.25);
        assert!(FLAGS.iter().all(|f| cli.sets(f.key)));
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
