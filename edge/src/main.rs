//! The `edge` binary: flags and config file into one `Config`, logging set
//! up (`logging`), then serve until SIGTERM or SIGINT; SIGUSR2 upgrades the
//! binary.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use edge::Server;
use edge::cli::{Cli, Command};
use edge::config::Config;
use edge::logging::{self, Logging};

/// mimalloc: fewer instructions per allocation than glibc's malloc on the
/// hit path, and less fragmentation as cached objects come and go.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before anything can rename a new binary over ours (see `Launch`).
    let launch = edge::ops::upgrade::Launch::capture();
    let cli = Cli::parse();
    if let Some(Command::Man) = &cli.command {
        return match edge::man::render(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("edge man: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Stats {
        admin,
        once,
        interval,
    }) = &cli.command
    {
        return match stats(admin, *once, *interval) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("edge stats: {}", error_chain(&err));
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Inspect { url, node, json }) = &cli.command {
        return match inspect(url, &node.admin, node.token.as_deref(), *json) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("edge inspect: {}", error_chain(&err));
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Log {
        follow: _,
        filter,
        node,
        json,
    }) = &cli.command
    {
        return match follow_log(filter, &node.admin, node.token.as_deref(), *json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("edge log: {}", error_chain(&err));
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Sign {
        url,
        expires,
        secret_env,
        expires_param,
        signature_param,
    }) = &cli.command
    {
        return match sign(url, *expires, secret_env, expires_param, signature_param) {
            Ok(link) => {
                println!("{link}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("edge sign: {}", error_chain(&err));
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("edge: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &cli.check_config {
        println!("{}: configuration is valid", path.display());
        return ExitCode::SUCCESS;
    }
    let logging = match logging::init(&config) {
        Ok(logging) => logging,
        Err(err) => {
            eprintln!("edge: {}", error_chain(&err));
            return ExitCode::FAILURE;
        }
    };
    // Still one thread: listenfd unsets LISTEN_FDS (see `capture_systemd`).
    let activated = edge::server::sockets::capture_systemd();
    if activated > 0 {
        tracing::info!(
            sockets = activated,
            "sockets from systemd socket activation"
        );
    }
    let launch = launch
        .inspect_err(
            |err| tracing::warn!(error = %err, "cannot tell our own path: no SIGUSR2 upgrades"),
        )
        .ok();
    match run(config, cli, &logging, launch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edge: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn run(
    config: Config,
    cli: Cli,
    logging: &Logging,
    launch: Option<edge::ops::upgrade::Launch>,
) -> anyhow::Result<()> {
    // One worker: tokio's single-threaded scheduler does the same work
    // without the work-stealing machinery (queues, wakeups across threads)
    // that one thread never needs. Blocking work still goes to the
    // blocking pool either way.
    let mut builder = match config.server.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let runtime = builder
        .enable_all()
        .thread_name("edge-worker")
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        logging.spawn_reopen_on_sigusr1();
        // Caught from before the bind: the new process of an upgrade may
        // get a SIGUSR2 meant for the old one (`systemctl kill` signals the
        // whole unit), whose default action would end it.
        let usr2 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
            .inspect_err(|err| {
                tracing::error!(error = %err, "cannot install the SIGUSR2 handler: no binary upgrades");
            })
            .ok();
        let mut server = Server::bind(config).await?;
        // A reload reads the same files and flags again.
        server.reload_from(std::sync::Arc::new(move || Config::load(&cli)));
        spawn_reload_on_sighup(server.reloader());
        if let (Some(launch), Some(usr2)) = (launch, usr2) {
            upgrade_on_sigusr2(usr2, server.enable_upgrade(launch));
        }
        let served = server.run(shutdown_signal()).await;
        // The lines of the last requests, before the process ends.
        logging.flush();
        served?;
        Ok(())
    })
}

/// `edge stats`: polls ADMIN/stats.json and redraws the view.
fn stats(admin: &str, once: bool, interval: f64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let url = format!("http://{}/stats.json", admin.trim_start_matches("http://"));
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("bad admin address {admin:?}"))?;
    runtime.block_on(async {
        use http_body_util::BodyExt as _;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let fetch = || async {
            let resp =
                tokio::time::timeout(std::time::Duration::from_secs(5), client.get(uri.clone()))
                    .await
                    .context("the node did not answer within 5s")?
                    .with_context(|| format!("cannot reach {url}"))?;
            anyhow::ensure!(
                resp.status().is_success(),
                "{url} answered {}",
                resp.status()
            );
            let body = resp.into_body().collect().await?.to_bytes();
            serde_json::from_slice::<edge::stats::Stats>(&body)
                .with_context(|| format!("{url} is not edge's stats"))
        };
        let mut before = None;
        loop {
            let now = fetch().await?;
            let view = edge::stats::render(&now, before.as_ref(), admin);
            if once {
                print!("{view}");
                return Ok(());
            }
            // Clear the screen and redraw, like varnishstat.
            print!("\x1b[2J\x1b[H{view}\n(ctrl-c to quit)\n");
            before = Some(now);
            tokio::time::sleep(std::time::Duration::from_secs_f64(interval.max(0.1))).await;
        }
    })
}

/// `edge inspect URL`: asks ADMIN/cache/inspect and prints the summary
/// (or the JSON as it came).
fn inspect(url: &str, admin: &str, token: Option<&str>, raw: bool) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let path = format!("/cache/inspect?url={}", edge::inspect::query_value(url));
    runtime.block_on(async {
        use http_body_util::BodyExt as _;
        let resp = admin_get(admin, &path, token).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let report: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("{admin} answered {status} without JSON"))?;
        if !status.is_success() {
            let why = report["error"].as_str().unwrap_or("no reason given");
            anyhow::bail!("{status}: {why}");
        }
        if raw {
            return Ok(format!("{}\n", serde_json::to_string_pretty(&report)?));
        }
        Ok(edge::inspect::render(&report))
    })
}

/// `edge log --follow`: prints ADMIN/log's records as they come, one line
/// each (or their JSON), until the node stops or drops this watcher.
fn follow_log(
    filter: &[String],
    admin: &str,
    token: Option<&str>,
    raw: bool,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let path = format!(
        "/log?filter={}",
        edge::inspect::query_value(&filter.join(","))
    );
    runtime.block_on(async {
        use http_body_util::BodyExt as _;
        let resp = admin_get(admin, &path, token).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let text = body.collect().await?.to_bytes();
            let why = serde_json::from_slice::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&text).trim().to_owned());
            anyhow::bail!("{status}: {why}");
        }
        let mut pending = Vec::new();
        let mut out = std::io::stdout().lock();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the node closed the log")?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = pending.drain(..end + 2).collect();
                let event = String::from_utf8_lossy(&event);
                if let Some(line) = edge::observe::live_log::render_event(&event, raw) {
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
        }
        Ok(())
    })
}

/// `GET http://ADMIN/PATH` with the purge token, answered (its head)
/// within 10 s.
async fn admin_get(
    admin: &str,
    path_and_query: &str,
    token: Option<&str>,
) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
    let target = format!(
        "http://{}{path_and_query}",
        admin.trim_start_matches("http://").trim_end_matches('/')
    );
    let mut request = http::Request::get(&target);
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .with_context(|| format!("bad admin address {admin:?}"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
        .await
        .context("the node did not answer within 10s")?
        .with_context(|| format!("cannot reach {admin}"))
}

/// The error and its causes on one line, each cause once: our errors
/// already name their cause, which anyhow's `{:#}` would repeat.
fn error_chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// Reloads the configuration on each SIGHUP (`systemctl reload`). The
/// reload logs its outcome; a bad file changes nothing.
fn spawn_reload_on_sighup(reloader: std::sync::Arc<dyn edge::ops::reload::Reload>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reload with POST /reload");
        return;
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration");
            let reloader = reloader.clone();
            // Off the worker: reading files and certificates blocks.
            let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
        }
    });
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop edge with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Each SIGUSR2 asks for a binary upgrade.
fn upgrade_on_sigusr2(
    mut usr2: tokio::signal::unix::Signal,
    trigger: edge::ops::upgrade::UpgradeTrigger,
) {
    tokio::spawn(async move {
        while usr2.recv().await.is_some() {
            tracing::info!("SIGUSR2 received");
            trigger.request();
        }
    });
}

/// `edge sign URL`: the link with its expiry and signature.
fn sign(
    url: &str,
    valid_for: std::time::Duration,
    secret_env: &str,
    expires_param: &str,
    signature_param: &str,
) -> anyhow::Result<String> {
    let secret = std::env::var(secret_env)
        .with_context(|| format!("${secret_env} is not set (the signed_urls secret)"))?;
    anyhow::ensure!(
        secret.len() >= 16,
        "the secret in ${secret_env} is shorter than 16 bytes"
    );
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL or path"))?;
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let prefix = &url[..url.len() - path_and_query.len().min(url.len())];
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .saturating_add(valid_for)
        .as_secs();
    let signed = edge::access::signed::sign(
        secret.as_bytes(),
        path_and_query,
        expires,
        expires_param,
        signature_param,
    );
    Ok(format!("{prefix}{signed}"))
}
