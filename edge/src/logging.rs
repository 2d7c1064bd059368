//! The binary's logging: the tracing subscriber (text or JSON on stdout),
//! the access-log file (`access_log`), and reopening that file on SIGUSR1
//! so that logrotate can move it away without `copytruncate`.
//!
//! [`ReopenableFile`] knows nothing of tracing: it is a path and the file
//! open at it, which `reopen` replaces. Whatever writes access lines (today
//! tracing, one write per line) goes through it.

use std::sync::Arc;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{AccessLogFormat, Config, LogFormat};
use crate::observe::access_log::{AccessLog, Format, Settings, Sink};
pub use crate::observe::log_file::{FileGuard, ReopenableFile};

/// The access log as tracing's writer: each event is formatted first, then
/// written with one `write_all` under the lock (unbuffered: nothing is lost
/// in a crash, and the page cache keeps it from waiting on the disk).
#[derive(Debug, Clone)]
struct AccessWriter(Arc<ReopenableFile>);

impl<'a> MakeWriter<'a> for AccessWriter {
    type Writer = FileGuard<'a>;

    fn make_writer(&'a self) -> FileGuard<'a> {
        self.0.lock()
    }
}

/// What [`init`] set up that outlives it: the access-log file, if any,
/// and the buffered writer of access lines, if they are on.
#[derive(Debug)]
pub struct Logging {
    access_log: Option<Arc<ReopenableFile>>,
    writer: Option<&'static AccessLog>,
}

/// Logs to stdout (text or JSON); access lines (target `access`) to
/// `access_log` if set, else to stdout with the rest. Verbosity from
/// `EDGE_LOG` (or `RUST_LOG`).
pub fn init(config: &Config) -> anyhow::Result<Logging> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = EnvFilter::try_from_env("EDGE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        // foyer reports its start-up choices at info; they are noise here.
        .unwrap_or_else(|_| EnvFilter::new("info,foyer=warn,foyer_storage=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let json = config.log_format == LogFormat::Json;
    type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
    let layer = |writer: BoxMakeWriter, ansi: bool| -> Boxed {
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer);
        if json {
            fmt.json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .boxed()
        } else {
            fmt.boxed()
        }
    };
    let stdout = BoxMakeWriter::new(std::io::stdout);
    let mut layers: Vec<Boxed> = Vec::new();
    let access_log = match &config.access_log {
        None => {
            layers.push(layer(stdout, ansi));
            None
        }
        Some(path) => {
            let file = ReopenableFile::open(path)
                .with_context(|| format!("cannot open the access log {}", path.display()))?;
            let file = Arc::new(file);
            layers.push(
                layer(stdout, ansi)
                    .with_filter(filter_fn(|m| m.target() != "access"))
                    .boxed(),
            );
            layers.push(
                layer(BoxMakeWriter::new(AccessWriter(Arc::clone(&file))), false)
                    .with_filter(filter_fn(|m| m.target() == "access"))
                    .boxed(),
            );
            Some(file)
        }
    };
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .init();
    // Access lines are written by the buffered log, not as tracing events,
    // when the filter lets them through (`EDGE_LOG=warn` turns them off).
    let writer = if tracing::enabled!(target: "access", tracing::Level::INFO) {
        let sink = match &access_log {
            Some(file) => Sink::File(file.clone()),
            None => Sink::Stdout,
        };
        let settings = Settings {
            format: match config.access_log_format {
                Some(AccessLogFormat::Combined) => Format::Combined,
                Some(AccessLogFormat::Json) => Format::Json,
                Some(AccessLogFormat::Text) => Format::Text,
                None if json => Format::Json,
                None => Format::Text,
            },
            flush: config.access_log_flush,
            buffer: config.access_log_buffer.as_usize(),
        };
        AccessLog::install(sink, settings).context("cannot start the access log writer")?
    } else {
        None
    };
    Ok(Logging { access_log, writer })
}

impl Logging {
    /// Reopens the access log on every SIGUSR1, from a task of the current
    /// tokio runtime. The handler is in place when this returns, and is
    /// installed even without an access-log file: SIGUSR1's default action
    /// would kill the node, and a logrotate set up for a node without one
    /// should not.
    pub fn spawn_reopen_on_sigusr1(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut usr1 = match signal(SignalKind::user_defined1()) {
            Ok(usr1) => usr1,
            Err(err) => {
                tracing::error!(%err, "cannot handle SIGUSR1; the access log will not be reopened");
                return;
            }
        };
        let file = self.access_log.clone();
        let writer = self.writer;
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                match &file {
                    Some(file) => reopen(file, writer),
                    None => tracing::info!("SIGUSR1 received; no access log file to reopen"),
                }
            }
        });
    }

    /// Writes the access lines still pending (at exit).
    pub fn flush(&self) {
        if let Some(writer) = self.writer {
            writer.flush();
        }
    }
}

/// One reopen, logged either way (on stdout: these are not access lines).
/// The buffered writer first writes what it holds to the old file.
fn reopen(file: &ReopenableFile, writer: Option<&'static AccessLog>) {
    let path = file.path().display();
    let reopened = match writer {
        Some(writer) => writer.reopen(),
        None => file.reopen(),
    };
    match reopened {
        Ok(()) => tracing::info!(path = %path, "SIGUSR1 received; access log reopened"),
        Err(err) => tracing::error!(
            path = %path,
            %err,
            "SIGUSR1 received; cannot reopen the access log, still writing to the old file"
        ),
    }
}
