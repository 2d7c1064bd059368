//! Binary upgrade on SIGUSR2, with real processes: under steady keep-alive
//! load a new process takes over the sockets and the data directory (no
//! refused connection, no failed request, the disk cache carried over),
//! and an upgrade to a binary that exits at once leaves the old process
//! serving with its disk cache, ready for a later upgrade that works.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_tests::client::{self, TestClient, try_fetch};
use edge_tests::metrics::value;
use edge_tests::process::{Adopted, TOKEN, alive, edge_command, pid_file, signal, wait_exit};
use edge_tests::{MockOrigin, Reply, ResponseExt, eventually_within, free_port, poll_until};
use http::Request;
use http_body_util::Full;

const EDGE: &str = env!("CARGO_BIN_EXE_edge");

/// Load: this many keep-alive clients, each with its own pool.
const CLIENTS: usize = 8;
/// How long the load runs (unless stopped); the upgrade falls in its
/// first half.
const LOAD_LIMIT: Duration = Duration::from_secs(10);
/// Steady load before SIGUSR2.
const LOAD_BEFORE: Duration = Duration::from_secs(3);

/// A node started from `bin`, logging to `dir/edge.log` (the new process
/// of an upgrade inherits the file).
struct Edge {
    /// The first process; `None` once the test waited for it to exit.
    child: Option<Child>,
    dir: PathBuf,
    listen: u16,
    admin: u16,
}

impl Edge {
    /// The first process still runs and still owns the data directory.
    fn assert_still_serving(&mut self, pid: u32) {
        let child = self.child.as_mut().expect("child");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "pid {pid} exited"
        );
        assert_eq!(pid_file(&self.data()), Some(pid));
    }

    fn start(bin: &Path, origin: &MockOrigin, dir: &Path) -> Edge {
        Edge::start_with(bin, origin, dir, &[])
    }

    fn start_with(bin: &Path, origin: &MockOrigin, dir: &Path, extra: &[&str]) -> Edge {
        let (listen, admin) = (free_port(), free_port());
        let log = std::fs::File::create(dir.join("edge.log")).expect("log file");
        let spawn = || {
            edge_command(bin, origin.addr(), &dir.join("data"), listen, admin)
                .args(["--memory", "64MiB", "--disk", "128MiB"])
                .args(extra)
                .env("EDGE_LOG", "info,foyer=warn,foyer_storage=warn,access=warn")
                .stdout(log.try_clone().expect("log file"))
                .stderr(log.try_clone().expect("log file"))
                .spawn()
        };
        // A binary this test process just copied can be "busy" for a
        // moment: another test's fork, before its exec, still holds the
        // copy's write descriptor (ETXTBSY). Retried, a bounded number of
        // times, as cargo does.
        let mut tries = 0;
        let child = loop {
            match spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other.expect("edge starts"),
            }
        };
        Edge {
            child: Some(child),
            dir: dir.to_owned(),
            listen,
            admin,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the first process").id()
    }

    /// Waits for the first process to exit on its own.
    async fn exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the first process");
        tokio::task::spawn_blocking(move || wait_exit(&mut child, limit))
            .await
            .expect("waiter")
            .expect("the old process exits in time")
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("edge.log")).unwrap_or_default()
    }

    /// Until `/healthz` answers and the pid file names `pid`.
    async fn ready(&self, pid: u32) {
        let client = client::http1();
        let url = format!("http://127.0.0.1:{}/healthz", self.admin);
        eventually_within("the edge to serve", Duration::from_secs(30), async || {
            let req = Request::get(&url).body(Full::default()).expect("request");
            pid_file(&self.data()) == Some(pid)
                && try_fetch(&client, req, Duration::from_secs(2))
                    .await
                    .is_some_and(|r| r.status() == 200)
        })
        .await;
    }

    async fn get(&self, client: &TestClient, path: &str) -> http::Response<Bytes> {
        let req = Request::get(format!("http://127.0.0.1:{}{path}", self.listen))
            .header("host", "cdn.test")
            .body(Full::default())
            .expect("request");
        try_fetch(client, req, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("GET {path} answered; log:\n{}", self.log()))
    }

    async fn metrics(&self) -> String {
        let req = Request::get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .body(Full::default())
            .expect("request");
        try_fetch(&client::http1(), req, Duration::from_secs(5))
            .await
            .expect("metrics")
            .text()
    }

    async fn purge(&self, path: &str) -> u16 {
        let body = format!(r#"{{"urls": ["http://cdn.test{path}"]}}"#);
        let req = Request::post(format!("http://127.0.0.1:{}/purge", self.admin))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        try_fetch(&client::http1(), req, Duration::from_secs(10))
            .await
            .expect("purge answered")
            .status()
            .as_u16()
    }

    /// SIGUSR2, then until the pid file names a process other than
    /// `old`; that process, killed when the test ends.
    async fn upgrade(&self, old: u32) -> Adopted {
        signal(old, "USR2");
        let new = poll_until(
            "a new process in the pid file",
            Duration::from_secs(40),
            async || match pid_file(&self.data()) {
                Some(pid) if pid != old => Ok(pid),
                other => Err(format!("{other:?}; log:\n{}", self.log())),
            },
        )
        .await;
        Adopted(new)
    }
}

impl Drop for Edge {
    /// A first process still running when the test ends (the failed
    /// upgrades keep it serving; a failing assertion) is killed.
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the load saw.
#[derive(Debug, Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    /// Longest request, in microseconds.
    longest_us: AtomicU64,
    /// Longest request for one of the 16 hot paths (hits once filled, so
    /// the origin's own time stays out of it), in microseconds.
    longest_hot_us: AtomicU64,
}

/// `CLIENTS` keep-alive clients requesting back to back for
/// [`LOAD_LIMIT`]; every request is counted and timed.
fn start_load(listen: u16) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
    let load = Arc::new(Load::default());
    let tasks = (0..CLIENTS)
        .map(|c| {
            let load = load.clone();
            tokio::spawn(async move {
                let client = client::http1();
                let started = Instant::now();
                let mut n = 0u64;
                while started.elapsed() < LOAD_LIMIT {
                    n += 1;
                    // Hits and misses both: misses cross the upgrade too.
                    let hot = !n.is_multiple_of(4);
                    let path = if !hot {
                        format!("/load/{c}/{n}")
                    } else {
                        format!("/load/hot/{}", n % 16)
                    };
                    let req = Request::get(format!("http://127.0.0.1:{listen}{path}"))
                        .header("host", "cdn.test")
                        .body(Full::default())
                        .expect("request");
                    let begun = Instant::now();
                    let result =
                        tokio::time::timeout(Duration::from_secs(10), client.request(req)).await;
                    let outcome = match result {
                        Ok(Ok(resp)) if resp.status() == 200 => {
                            use http_body_util::BodyExt as _;
                            resp.into_body().collect().await.map_err(|e| e.to_string())
                        }
                        Ok(Ok(resp)) => Err(format!("status {}", resp.status())),
                        Ok(Err(err)) => {
                            if err.is_connect() {
                                load.refused.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(format!("{err:?}"))
                        }
                        Err(_) => Err("no answer within 10s".into()),
                    };
                    let took = u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX);
                    load.longest_us.fetch_max(took, Ordering::Relaxed);
                    if hot {
                        load.longest_hot_us.fetch_max(took, Ordering::Relaxed);
                    }
                    match outcome {
                        Ok(_) => load.ok.fetch_add(1, Ordering::Relaxed),
                        Err(err) => {
                            eprintln!("client {c}: {path}: {err}");
                            load.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    (load, tasks)
}

async fn origin_with_cacheable_load() -> MockOrigin {
    let origin = MockOrigin::start().await;
    origin.route(
        "/warm",
        Reply::ok(vec![b'w'; 100_000]).header("cache-control", "max-age=3600"),
    );
    origin.fallback(|path| {
        Reply::ok(format!("body of {path}")).header("cache-control", "max-age=3600")
    });
    origin
}

fn disk_hits(metrics: &str) -> f64 {
    value(metrics, "edge_cache_tier_hits_total{tier=\"disk\"}").unwrap_or(0.0)
}

fn disk_writes(metrics: &str) -> f64 {
    value(
        metrics,
        "foyer_storage_disk_io_bytes_total{name=\"edge_cache\",op=\"write\"}",
    )
    .unwrap_or(0.0)
}

/// `/warm` is a HIT from the disk tier of the process serving now (the
/// new process of an upgrade: its memory tier started empty).
async fn warm_is_a_disk_hit(edge: &Edge, client: &TestClient) {
    let before = disk_hits(&edge.metrics().await);
    let resp = edge.get(client, "/warm").await;
    assert_eq!(resp.x_cache(), "HIT", "{:?}", resp.headers());
    assert_eq!(resp.body().len(), 100_000);
    assert_eq!(disk_hits(&edge.metrics().await), before + 1.0, "from disk");
}

/// SIGTERM to the new process, and until it is gone.
async fn stop(new: &Adopted) {
    signal(new.0, "TERM");
    eventually_within(
        "the new process to stop",
        Duration::from_secs(30),
        async || !alive(new.0),
    )
    .await;
}

/// Renames a shell script over `exe`, as a package upgrade renames a new
/// binary over the old one.
fn replace_with_script(exe: &std::path::Path, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let next = exe.with_file_name("edge.new");
    std::fs::write(&next, script).expect("script");
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&next, exe).expect("replace the binary");
}

/// A copy of the edge binary under `dir/bin/`, which a test may replace
/// (as a package upgrade renames a new one over it).
fn copied_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    let exe = bin.join("edge");
    std::fs::copy(EDGE, &exe).expect("copy the binary");
    exe
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr2_hands_over_under_load_without_a_failed_request() {
    let origin = origin_with_cacheable_load().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut edge = Edge::start(Path::new(EDGE), &origin, tmp.path());
    let old = edge.pid();
    edge.ready(old).await;

    let probe = client::http1();
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "MISS");
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "HIT");

    let load_started = Instant::now();
    let (load, tasks) = start_load(edge.listen);
    // A steady load first: some requests, for a few seconds.
    eventually_within("the load to run", LOAD_BEFORE * 2, async || {
        load.ok.load(Ordering::Relaxed) >= 200 && load_started.elapsed() >= LOAD_BEFORE
    })
    .await;

    let before_upgrade = load.ok.load(Ordering::Relaxed);
    // The longest wait before the upgrade, for comparison; from here on
    // the longest is the upgrade's.
    let longest_before = Duration::from_micros(load.longest_us.swap(0, Ordering::Relaxed));
    let longest_hot_before = Duration::from_micros(load.longest_hot_us.swap(0, Ordering::Relaxed));
    let upgrade_started = Instant::now();
    let new = edge.upgrade(old).await;
    let status = edge.exit(Duration::from_secs(40)).await;
    assert!(status.success(), "the old process exits 0: {status}");
    let handed_over_in = upgrade_started.elapsed();
    assert!(alive(new.0), "the new process runs");
    let after_exit = load.ok.load(Ordering::Relaxed);
    // The load goes on against the new process alone to its end.
    for task in tasks {
        task.await.expect("client task");
    }
    assert!(
        load.ok.load(Ordering::Relaxed) > after_exit,
        "the new process served the load"
    );

    let (ok, failed, refused) = (
        load.ok.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
        load.refused.load(Ordering::Relaxed),
    );
    let longest = Duration::from_micros(load.longest_us.load(Ordering::Relaxed));
    let longest_hot = Duration::from_micros(load.longest_hot_us.load(Ordering::Relaxed));
    println!(
        "upgrade under load ({CLIENTS} keep-alive clients): {ok} requests, {} while the \
         processes changed hands, {failed} failed, {refused} refused; SIGUSR2 to old exited: \
         {handed_over_in:?}; longest client wait from SIGUSR2 on: {longest:?} \
         (before it: {longest_before:?}); of requests for hot objects: {longest_hot:?} \
         (before it: {longest_hot_before:?})",
        after_exit - before_upgrade
    );
    assert_eq!(failed, 0, "failed requests; log:\n{}", edge.log());
    assert_eq!(refused, 0, "refused connections");
    assert!(
        after_exit > before_upgrade,
        "the load ran across the upgrade"
    );

    warm_is_a_disk_hit(&edge, &probe).await;
    assert_eq!(origin.hits("/warm"), 1);
    // The new process owns the purge database.
    assert_eq!(edge.purge("/warm").await, 200);
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "MISS");
    stop(&new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_exits_at_once_leaves_the_old_process_serving() {
    let origin = origin_with_cacheable_load().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = copied_binary(tmp.path());
    let mut edge = Edge::start(&exe, &origin, tmp.path());
    let old = edge.pid();
    edge.ready(old).await;
    let probe = client::http1();
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "MISS");

    // Replaced the way a package manager does: a new file renamed over.
    replace_with_script(&exe, "#!/bin/sh\nexit 1\n");
    signal(old, "USR2");
    eventually_within(
        "the old process to report the failed upgrade",
        Duration::from_secs(40),
        async || edge.log().contains("binary upgrade failed"),
    )
    .await;
    assert!(
        edge.log().contains("exited before taking over"),
        "{}",
        edge.log()
    );

    // Still the same process, with everything it had.
    edge.assert_still_serving(old);
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "HIT");
    let writes = disk_writes(&edge.metrics().await);
    assert_eq!(edge.get(&probe, "/after-failure").await.x_cache(), "MISS");
    eventually_within(
        "the disk tier to keep writing",
        Duration::from_secs(5),
        async || disk_writes(&edge.metrics().await) > writes,
    )
    .await;
    assert_eq!(edge.purge("/nothing").await, 200, "purges still durable");

    // A later SIGUSR2 with a working binary upgrades, disk cache included.
    let fixed = exe.with_file_name("edge.new");
    std::fs::copy(EDGE, &fixed).expect("copy the binary");
    std::fs::rename(&fixed, &exe).expect("replace the binary");
    let new = edge.upgrade(old).await;
    let status = edge.exit(Duration::from_secs(40)).await;
    assert!(status.success(), "the old process exits 0: {status}");
    edge.ready(new.0).await;
    warm_is_a_disk_hit(&edge, &probe).await;
    assert_eq!(origin.hits("/warm"), 1);
    stop(&new).await;
}

/// One HTTP/1.1 GET over a fresh TLS connection to `port`: status and
/// `X-Cache`.
async fn get_tls(cert: &edge_tests::certs::Cert, port: u16, path: &str) -> (u16, String) {
    use rustls::pki_types::ServerName;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the TLS listener");
    let tls = tokio_rustls::TlsConnector::from(edge_tests::certs::client_config(&[cert], &[]))
        .connect(ServerName::try_from("edge.test").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("h1 handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("https://edge.test{path}"))
        .header("host", "cdn.test")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let cache = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    (resp.status().as_u16(), cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_is_handed_over_too() {
    let origin = origin_with_cacheable_load().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cert = edge_tests::certs::self_signed(&["edge.test"]);
    let tls_port = free_port();
    let tls_listen = format!("127.0.0.1:{tls_port}");
    let (cert_path, key_path) = (
        cert.cert_path.to_str().expect("path"),
        cert.key_path.to_str().expect("path"),
    );
    let mut edge = Edge::start_with(
        Path::new(EDGE),
        &origin,
        tmp.path(),
        &[
            "--tls-listen",
            &tls_listen,
            "--tls-cert",
            cert_path,
            "--tls-key",
            key_path,
        ],
    );
    let old = edge.pid();
    edge.ready(old).await;
    assert_eq!(get_tls(&cert, tls_port, "/tls").await, (200, "MISS".into()));

    let new = edge.upgrade(old).await;
    let status = edge.exit(Duration::from_secs(40)).await;
    assert!(status.success(), "the old process exits 0: {status}");
    assert!(
        edge.log().contains(r#"sockets=["listen", "admin", "tls"]"#),
        "{}",
        edge.log()
    );
    // The same port, now the new process's: cached before, a HIT after.
    assert_eq!(get_tls(&cert, tls_port, "/tls").await, (200, "HIT".into()));
    assert_eq!(origin.hits("/tls"), 1);
    stop(&new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_hangs_is_killed_after_the_upgrade_timeout() {
    let origin = origin_with_cacheable_load().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = copied_binary(tmp.path());
    let config = tmp.path().join("edge.toml");
    std::fs::write(&config, "[server]\nupgrade_timeout = \"1s\"\n").expect("config");
    let mut edge = Edge::start_with(
        &exe,
        &origin,
        tmp.path(),
        &["--config", config.to_str().expect("path")],
    );
    let old = edge.pid();
    edge.ready(old).await;
    let probe = client::http1();
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "MISS");

    // Starts, never connects; its pid goes to a file so the test can
    // tell it was killed.
    let pid_of_hung = tmp.path().join("hung.pid");
    let script = format!(
        "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
        pid_of_hung.display()
    );
    replace_with_script(&exe, &script);
    signal(old, "USR2");
    eventually_within(
        "the old process to give up on the new one",
        Duration::from_secs(20),
        async || edge.log().contains("did not take over within 1s"),
    )
    .await;
    let hung: u32 = std::fs::read_to_string(&pid_of_hung)
        .expect("the script ran")
        .trim()
        .parse()
        .expect("a pid");
    let _reaped = Adopted(hung);
    eventually_within(
        "the hung process to be killed",
        Duration::from_secs(10),
        async || !alive(hung),
    )
    .await;
    edge.assert_still_serving(old);
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "HIT");
    assert_eq!(edge.purge("/nothing").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_failing_after_the_release_gives_the_data_directory_back() {
    let origin = origin_with_cacheable_load().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = copied_binary(tmp.path());
    // The data directory from the config file, so that the new binary can
    // be pointed elsewhere by EDGE_DATA_DIR.
    let config = tmp.path().join("edge.toml");
    let data = tmp.path().join("data");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .expect("config");
    let (listen, admin) = (free_port(), free_port());
    let log = std::fs::File::create(tmp.path().join("edge.log")).expect("log file");
    let child = edge_tests::process::clean_command(&exe)
        .arg("--origin")
        .arg(origin.url())
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--config", config.to_str().expect("path")])
        .args(["--memory", "64MiB", "--disk", "128MiB"])
        .env("EDGE_PURGE_TOKEN", TOKEN)
        .env("EDGE_LOG", "info,foyer=warn,foyer_storage=warn,access=warn")
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("edge starts");
    let mut edge = Edge {
        child: Some(child),
        dir: tmp.path().to_owned(),
        listen,
        admin,
    };
    let old = edge.pid();
    edge.ready(old).await;
    let probe = client::http1();
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "MISS");

    // The new binary takes the sockets and the data directory, then fails
    // to open a store (its data directory's `cache` is a file).
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).expect("other dir");
    std::fs::write(other.join("cache"), "not a directory").expect("file");
    let real = exe.with_file_name("edge.real");
    std::fs::copy(EDGE, &real).expect("copy the binary");
    replace_with_script(
        &exe,
        &format!(
            "#!/bin/sh\nEDGE_DATA_DIR={} exec {} \"$@\"\n",
            other.display(),
            real.display()
        ),
    );
    signal(old, "USR2");
    eventually_within(
        "the old process to take the data directory back",
        Duration::from_secs(30),
        async || edge.log().contains("data directory taken back"),
    )
    .await;
    let log = edge.log();
    assert!(
        log.contains("data directory released to the new process"),
        "{log}"
    );
    // Its exit or the end of its socket, whichever the old one sees first.
    assert!(log.contains("binary upgrade failed"), "{log}");

    // Still serving, from memory; purges durable again.
    edge.assert_still_serving(old);
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "HIT");
    assert_eq!(edge.purge("/warm").await, 200, "the purge database is back");
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "MISS");
    assert_eq!(edge.get(&probe, "/warm").await.x_cache(), "HIT");
    // The lock is back too: another node on the directory is refused.
    let mut second = edge_command(EDGE, origin.addr(), &data, free_port(), free_port())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("a second node starts");
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut second, Duration::from_secs(20));
        if status.is_none() {
            let _ = second.kill();
            let _ = second.wait();
        }
        status
    })
    .await
    .expect("waiter");
    assert!(
        status.is_some_and(|s| !s.success()),
        "the data directory is locked: {status:?}"
    );
}
