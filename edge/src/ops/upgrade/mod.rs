//! Binary upgrade on SIGUSR2: the running edge (the *old* process) starts
//! the binary at the path it was started from, with the same arguments, and
//! hands it the listening sockets and then the data directory. No socket is
//! ever closed (no connection refused) and one of the two processes accepts
//! at every moment (no request fails).
//!
//! The conversation, over a Unix socket `DATA_DIR/upgrade.sock` that the
//! old process binds and names to the new one in `EDGE_UPGRADE_SOCKET`,
//! one [`Message`] per line:
//!
//! 1. new → old `hello PID`: the new process loaded and validated its
//!    config. The old one checks the peer's pid (`SO_PEERCRED`) is its child.
//! 2. old → new `sockets listen admin [tls]`, the listening sockets attached
//!    (`SCM_RIGHTS`). The new process builds its listeners, TLS acceptor,
//!    sites and metrics from them.
//! 3. new → old `release`. Only now does the old process give anything up:
//!    its store goes memory-only ([`Store::release_disk`], which waits for
//!    queued disk writes), it closes the purge database (later purges get
//!    503 + `Retry-After`) and unlocks `edge.lock`. It keeps accepting and
//!    serving from memory and the origin.
//! 4. old → new `released`. The new process takes the lock, opens the
//!    store (foyer recovers the disk tier) and the purge database, and
//!    starts accepting.
//! 5. new → old `serving`. The old process stops accepting, tells systemd
//!    `MAINPID=` the new pid, drains and exits 0: for up to 2 s its
//!    HTTP/1.1 responses say `Connection: close` (see [`LINGER`]), then the
//!    usual graceful shutdown within `server.shutdown_grace`.
//!
//! Whatever goes wrong (the binary does not start, exits, says something
//! unexpected, or does not reach step 5 within `server.upgrade_timeout`),
//! the old process kills the new one if it still runs, logs why and keeps
//! serving; a later SIGUSR2 tries again. If it had already released the data
//! directory, it takes the lock and the purge database back; its disk tier
//! stays off until the next restart or upgrade (reopening foyer under a
//! running proxy is not supported), so it serves from memory and origin.

pub(crate) mod error;
mod protocol;
pub use error::UpgradeError;
use protocol::Conn;
pub use protocol::{Message, Stage, Step};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache::store::Store;
use purge_api::Purger;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::ops::notify;
use crate::server::data_dir::{DataDirError, lock_data_dir};
use crate::server::error::ServerError;
use crate::server::sockets::{Inherited, Role, Source};

/// Names the old process's upgrade socket to the new process.
pub const SOCKET_ENV: &str = "EDGE_UPGRADE_SOCKET";
/// The upgrade socket, in the data directory.
pub const SOCKET_FILE: &str = "upgrade.sock";
/// The pid of the process that owns the data directory and serves, written
/// when it starts accepting (after an upgrade: the new process's).
pub const PID_FILE: &str = "edge.pid";

/// After a hand-over, how long the old process keeps idle HTTP/1.1
/// keep-alive connections open for one more request (answered with
/// `Connection: close`) before closing those left. Closing an idle
/// connection at once races with a client already sending on it: the
/// request fails (hyper: `IncompleteMessage`), seen under load in the
/// upgrade test. A client that waits longer than this between requests is
/// rarely caught mid-send.
const LINGER: Duration = Duration::from_secs(2);

/// Longest line of the protocol; anything longer is not the protocol.
pub(crate) const MAX_LINE: usize = 256;

/// How this process was started, captured at the very start of `main`:
/// once an upgrade renames a new binary over the old path,
/// `/proc/self/exe` says "(deleted)", but the path still names the new one.
#[derive(Debug, Clone)]
pub struct Launch {
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Launch {
    pub fn capture() -> std::io::Result<Launch> {
        Ok(Launch {
            exe: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
        })
    }
}

/// The data directory's lock file, shared so that an upgrade can let go of
/// it (and take it back if the upgrade fails).
#[derive(Debug, Clone)]
pub(crate) struct DataLock(Arc<Mutex<Option<std::fs::File>>>);

impl DataLock {
    pub(crate) fn new(file: std::fs::File) -> Self {
        DataLock(Arc::new(Mutex::new(Some(file))))
    }

    /// Unlocks: closing the only descriptor releases the `flock`.
    fn release(&self) {
        drop(self.0.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    fn retake(&self, dir: &Path) -> Result<(), ServerError> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(lock_data_dir(dir)?);
        }
        Ok(())
    }
}

/// Asks the running server for an upgrade (what SIGUSR2 does).
#[derive(Debug, Clone)]
pub struct UpgradeTrigger(mpsc::Sender<()>);

impl UpgradeTrigger {
    /// Starts an upgrade unless one is already running.
    pub fn request(&self) {
        if self.0.try_send(()).is_err() {
            warn!("upgrade requested while one is in progress; ignored");
        }
    }
}

/// What a server keeps for upgrades, from bind to run.
#[derive(Debug)]
pub(crate) struct Upgrades {
    /// Set when this process is the new one of an upgrade.
    successor: Option<Successor>,
    launch: Option<Launch>,
    requests: (mpsc::Sender<()>, mpsc::Receiver<()>),
    /// Duplicates of the listening sockets, to pass on.
    sockets: Vec<(Role, OwnedFd)>,
    store: Store,
    lock: DataLock,
    data_dir: PathBuf,
    timeout: Duration,
}

impl Upgrades {
    pub(crate) fn new(
        successor: Option<Successor>,
        listeners: &[(Role, BorrowedFd<'_>)],
        store: Store,
        lock: std::fs::File,
        data_dir: PathBuf,
        timeout: Duration,
    ) -> Result<Self, ServerError> {
        let sockets = listeners
            .iter()
            .map(|(role, fd)| Ok((*role, fd.try_clone_to_owned()?)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(UpgradeError::Io)?;
        Ok(Upgrades {
            successor,
            launch: None,
            requests: mpsc::channel(1),
            sockets,
            store,
            lock: DataLock::new(lock),
            data_dir,
            timeout,
        })
    }

    /// Turns upgrades on: `launch` is what to start.
    pub(crate) fn enable(&mut self, launch: Launch) -> UpgradeTrigger {
        self.launch = Some(launch);
        UpgradeTrigger(self.requests.0.clone())
    }

    /// The server accepts from now on: tells the old process (after an
    /// upgrade) or systemd, writes the pid file, and waits for SIGUSR2.
    pub(crate) async fn serving(mut self, purger: Arc<Purger>) -> HandOver {
        // Before anyone hears this process is ready: the old process exits
        // once told, and a reader of the pid file (logrotate, the systemd
        // upgrade test) must then find this pid, not none.
        write_pid_file(&self.data_dir);
        match self.successor.take() {
            Some(successor) => {
                successor.serving().await;
                notify::ready_as_main();
            }
            None => notify::ready(),
        }
        let (done, handed) = oneshot::channel();
        let lock = self.lock.clone();
        let data_dir = self.data_dir.clone();
        let task = self.launch.take().map(|launch| {
            let Upgrades {
                requests: (_, requests),
                sockets,
                store,
                lock,
                data_dir,
                timeout,
                ..
            } = self;
            let old = Old {
                launch,
                sockets,
                store,
                purger,
                lock,
                data_dir,
                timeout,
                releasing: Mutex::new(None),
            };
            tokio::spawn(old.serve(requests, done))
        });
        HandOver {
            handed,
            task,
            handed_over: false,
            closing: Closing::default(),
            _lock: lock,
            data_dir,
        }
    }
}

/// The running server's side of upgrades, for the accept loop.
#[derive(Debug)]
pub(crate) struct HandOver {
    handed: oneshot::Receiver<u32>,
    task: Option<JoinHandle<()>>,
    handed_over: bool,
    closing: Closing,
    /// The data directory stays locked until the server is done.
    _lock: DataLock,
    data_dir: PathBuf,
}

impl HandOver {
    /// Resolves once a new process serves in this one's place (never
    /// without upgrades).
    pub(crate) async fn done(&mut self) {
        if self.handed_over || self.task.is_none() {
            return std::future::pending().await;
        }
        match (&mut self.handed).await {
            Ok(pid) => {
                info!(
                    new_pid = pid,
                    "the new process serves; draining and exiting"
                );
                self.handed_over = true;
            }
            Err(_) => std::future::pending().await,
        }
    }

    /// The accept loop ended: `STOPPING=1` unless the service goes on in a
    /// new process; no more upgrades (the passed-on socket duplicates close,
    /// so that nothing accepts into a backlog nobody serves).
    pub(crate) fn stopping(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if !self.handed_over {
            notify::stopping();
        }
    }

    /// What marks responses once handed over (one per connection).
    pub(crate) fn closing(&self) -> Closing {
        self.closing.clone()
    }

    /// After a hand-over: from now on HTTP/1.1 responses close their
    /// connection, and the drain should first wait this long for
    /// connections to close that way. `None` on a plain shutdown: nobody
    /// would accept the clients' next connection, closing fast is better.
    pub(crate) fn linger(&self, grace: Duration) -> Option<Duration> {
        if !self.handed_over {
            return None;
        }
        self.closing.0.store(true, Ordering::Relaxed);
        Some(LINGER.min(grace))
    }

    /// The server is done: the pid file goes, if it still names us.
    pub(crate) fn exited(self) {
        remove_pid_file_if_ours(&self.data_dir);
    }
}

/// Marks HTTP/1.1 responses `Connection: close` once the old process of
/// an upgrade drains, so that each keep-alive connection ends after a
/// complete response instead of under a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Closing(Arc<AtomicBool>);

impl Closing {
    /// Marks `response` if draining when it is ready (HTTP/2 has GOAWAY
    /// and forbids the header). Synchronous on the finished response: a
    /// wrapper future around the request's would hold that future twice
    /// (as its argument and as the one awaited), and hyper moves the
    /// whole thing at every request (callgrind: 29 k of a 1 KiB hit's
    /// 60 k instructions were those copies).
    pub(crate) fn mark<B>(&self, h1: bool, response: &mut http::Response<B>) {
        if h1 && self.0.load(Ordering::Relaxed) {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
    }
}

/// The old process: what it hands over, and how.
struct Old {
    launch: Launch,
    sockets: Vec<(Role, OwnedFd)>,
    store: Store,
    purger: Arc<Purger>,
    lock: DataLock,
    data_dir: PathBuf,
    timeout: Duration,
    /// The release in progress or done, awaited before taking back.
    releasing: Mutex<Option<JoinHandle<()>>>,
}

/// A failed attempt, and whether the data directory was already given up.
struct Failure {
    error: UpgradeError,
    released: bool,
}

impl Old {
    async fn serve(self, mut requests: mpsc::Receiver<()>, done: oneshot::Sender<u32>) {
        while requests.recv().await.is_some() {
            info!(exe = %self.launch.exe.display(), "upgrade requested: starting the new binary");
            match self.attempt().await {
                Ok(pid) => {
                    notify::main_pid(pid);
                    let _ = done.send(pid);
                    return;
                }
                Err(Failure { error, released }) => {
                    error!(error = %error, "binary upgrade failed; this process keeps serving");
                    if released {
                        self.take_back().await;
                    }
                }
            }
            // Requests made during the attempt are not queued for later.
            if requests.try_recv().is_ok() {
                warn!("SIGUSR2 during the upgrade attempt ignored; send it again to retry");
            }
        }
    }

    async fn attempt(&self) -> Result<u32, Failure> {
        let early = |error| Failure {
            error,
            released: false,
        };
        let path = self.data_dir.join(SOCKET_FILE);
        let socket_err = |source| {
            early(UpgradeError::Socket {
                path: path.clone(),
                source,
            })
        };
        // A socket file left by a crash: nobody listens on it.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(socket_err)?;
        let _remove = RemoveOnDrop(path.clone());
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(socket_err)?;
        }
        let mut child = tokio::process::Command::new(&self.launch.exe)
            .args(&self.launch.args)
            .env(SOCKET_ENV, &path)
            // systemd's sockets were for this process; the new one gets
            // them over the upgrade socket.
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| {
                early(UpgradeError::Spawn {
                    exe: self.launch.exe.clone(),
                    source,
                })
            })?;
        let pid = child.id().unwrap_or(0);
        info!(
            new_pid = pid,
            "new process started; waiting for it to take over"
        );
        let mut released = false;
        let outcome = tokio::time::timeout(self.timeout, async {
            tokio::select! {
                result = self.converse(&listener, pid, &mut released) => result,
                status = child.wait() => Err(UpgradeError::Exited(match status {
                    Ok(status) => status.to_string(),
                    Err(err) => err.to_string(),
                })),
            }
        })
        .await
        .unwrap_or(Err(UpgradeError::Timeout(self.timeout)));
        match outcome {
            Ok(pid) => Ok(pid),
            Err(error) => {
                // A new process left running might take over later.
                if let Ok(None) = child.try_wait() {
                    let _ = child.start_kill();
                    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                }
                Err(Failure { error, released })
            }
        }
    }

    async fn converse(
        &self,
        listener: &UnixListener,
        child: u32,
        released: &mut bool,
    ) -> Result<u32, UpgradeError> {
        let (stream, _) = listener.accept().await?;
        let peer = stream.peer_cred()?.pid().unwrap_or(0);
        if u32::try_from(peer).ok() != Some(child) {
            return Err(UpgradeError::Stranger { peer, child });
        }
        let mut conn = Conn::new(stream);
        let mut stage = Stage::AwaitHello;
        loop {
            let message = conn.recv().await?;
            let (step, next) = stage.on(&message)?;
            match step {
                Step::SendSockets => {
                    let roles = self.sockets.iter().map(|(r, _)| *r).collect();
                    let fds: Vec<BorrowedFd<'_>> =
                        self.sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
                    conn.send(&Message::Sockets(roles), &fds).await?;
                }
                Step::ReleaseDataDir => {
                    *released = true;
                    self.release().await?;
                    conn.send(&Message::Released, &[]).await?;
                    info!("data directory released to the new process; serving from memory");
                }
                Step::Done => return Ok(child),
            }
            stage = next;
        }
    }

    /// Gives up the disk tier, the purge database and the lock, in that
    /// order: the lock goes last, when nothing here writes any more. On a
    /// task of its own: a timeout in the middle must not leave half a
    /// release running after [`take_back`](Old::take_back).
    async fn release(&self) -> Result<(), UpgradeError> {
        let (store, purger, lock) = (self.store.clone(), self.purger.clone(), self.lock.clone());
        let (done, result) = oneshot::channel();
        let task = tokio::spawn(async move {
            let failed = |e: &dyn std::fmt::Display| UpgradeError::Release(e.to_string());
            let released = async {
                store.release_disk().await.map_err(|e| failed(&e))?;
                purger.release_db().await.map_err(|e| failed(&e))?;
                lock.release();
                Ok(())
            };
            let _ = done.send(released.await);
        });
        *self.releasing.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        result
            .await
            .map_err(|_| UpgradeError::Release("the release task failed".into()))?
    }

    /// After a failed upgrade that had the data directory: the lock and the
    /// purge database come back; the disk tier stays off (see the module
    /// doc).
    async fn take_back(&self) {
        let releasing = self
            .releasing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = releasing {
            let _ = task.await;
        }
        if let Err(err) = self.lock.retake(&self.data_dir) {
            error!(error = %err, "cannot take the data directory back; purges stay refused");
            return;
        }
        match self.purger.reacquire_db().await {
            Ok(()) => warn!(
                "data directory taken back; the disk tier stays off until the next restart or upgrade"
            ),
            Err(err) => {
                error!(error = %err, "cannot reopen the purge database; purges stay refused")
            }
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The new process's end of the conversation.
#[derive(Debug)]
pub(crate) struct Successor {
    conn: ConnBox,
    timeout: Duration,
}

/// `Conn` without a `Debug` of its buffers.
struct ConnBox(Conn);

impl std::fmt::Debug for ConnBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upgrade connection")
    }
}

impl Successor {
    /// When started by an upgrade (`EDGE_UPGRADE_SOCKET` set): says hello
    /// to the old process and receives its listening sockets.
    pub(crate) async fn from_env(
        timeout: Duration,
    ) -> Result<Option<(Successor, Inherited)>, ServerError> {
        let Some(path) = std::env::var_os(SOCKET_ENV) else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        let stream = within(timeout, async {
            UnixStream::connect(&path)
                .await
                .map_err(|source| UpgradeError::Socket {
                    path: path.clone(),
                    source,
                })
        })
        .await?;
        let mut conn = Conn::new(stream);
        conn.send(
            &Message::Hello {
                pid: std::process::id(),
            },
            &[],
        )
        .await?;
        let roles = match within(timeout, conn.recv()).await? {
            Message::Sockets(roles) => roles,
            other => {
                return Err(UpgradeError::Protocol(format!("{other:?} instead of sockets")).into());
            }
        };
        let fds = std::mem::take(&mut conn.fds);
        if fds.len() != roles.len() {
            return Err(UpgradeError::Protocol(format!(
                "{} sockets named, {} passed",
                roles.len(),
                fds.len()
            ))
            .into());
        }
        info!(
            sockets = ?roles.iter().map(|r| r.name()).collect::<Vec<_>>(),
            "upgrade: took the listening sockets of the old process"
        );
        let sockets = roles
            .into_iter()
            .zip(fds)
            .map(|(role, fd)| (role, std::net::TcpListener::from(fd)))
            .collect();
        Ok(Some((
            Successor {
                conn: ConnBox(conn),
                timeout,
            },
            Inherited::new(Source::Upgrade, sockets),
        )))
    }

    /// Asks the old process to release the data directory, then locks it.
    pub(crate) async fn take_data_dir(&mut self, dir: &Path) -> Result<std::fs::File, ServerError> {
        let conn = &mut self.conn.0;
        conn.send(&Message::Release, &[]).await?;
        match within(self.timeout, conn.recv()).await? {
            Message::Released => {}
            other => {
                return Err(
                    UpgradeError::Protocol(format!("{other:?} instead of released")).into(),
                );
            }
        }
        // Unlocked before `released` was sent; the retries only cover a
        // slow file system. Bounded: 100 × 20 ms.
        let mut tries = 0;
        loop {
            match lock_data_dir(dir) {
                Err(DataDirError::InUse { .. }) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                result => return Ok(result?),
            }
        }
    }

    /// Tells the old process this one accepts now. A failure is only
    /// logged: this process serves either way.
    async fn serving(self) {
        if let Err(err) = self.conn.0.send(&Message::Serving, &[]).await {
            warn!(error = %err, "cannot tell the old process that this one serves");
        }
    }
}

/// `what`, or [`UpgradeError::Timeout`] after `limit`.
async fn within<T>(
    limit: Duration,
    what: impl Future<Output = Result<T, UpgradeError>>,
) -> Result<T, UpgradeError> {
    tokio::time::timeout(limit, what)
        .await
        .unwrap_or(Err(UpgradeError::Timeout(limit)))
}

/// Writes `DATA_DIR/edge.pid` (via a rename: a reader never sees half).
fn write_pid_file(dir: &Path) {
    let tmp = dir.join(format!("{PID_FILE}.tmp"));
    let write = std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, dir.join(PID_FILE)));
    if let Err(err) = write {
        warn!(error = %err, dir = %dir.display(), "cannot write the pid file");
    }
}

/// Removes `DATA_DIR/edge.pid` unless a newer process wrote its own.
fn remove_pid_file_if_ours(dir: &Path) {
    let path = dir.join(PID_FILE);
    let ours = std::fs::read_to_string(&path)
        .is_ok_and(|text| text.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let all = [
            Message::Hello { pid: 4242 },
            Message::Sockets(vec![Role::Listen, Role::Admin, Role::Tls]),
            Message::Sockets(vec![Role::Listen, Role::Admin]),
            Message::Release,
            Message::Released,
            Message::Serving,
        ];
        for message in all {
            let line = message.encode();
            assert!(line.ends_with('\n'));
            assert_eq!(Message::decode(line.trim_end()).expect("decodes"), message);
        }
    }

    #[test]
    fn garbage_is_not_a_message() {
        for line in [
            "",
            "hello",
            "hello x",
            "hello 1 2",
            "sockets listen bogus",
            "releasing",
            "serving now",
        ] {
            assert!(Message::decode(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn the_old_process_gives_up_nothing_out_of_order() {
        let (step, stage) = Stage::AwaitHello
            .on(&Message::Hello { pid: 1 })
            .expect("hello first");
        assert_eq!((step, stage), (Step::SendSockets, Stage::AwaitRelease));
        let (step, stage) = stage.on(&Message::Release).expect("then release");
        assert_eq!((step, stage), (Step::ReleaseDataDir, Stage::AwaitServing));
        let (step, stage) = stage.on(&Message::Serving).expect("then serving");
        assert_eq!((step, stage), (Step::Done, Stage::Finished));

        // A release before the sockets were sent, a second hello, serving
        // before release, anything after the end.
        assert!(Stage::AwaitHello.on(&Message::Release).is_err());
        assert!(Stage::AwaitRelease.on(&Message::Hello { pid: 1 }).is_err());
        assert!(Stage::AwaitRelease.on(&Message::Serving).is_err());
        assert!(Stage::AwaitServing.on(&Message::Release).is_err());
        assert!(Stage::Finished.on(&Message::Serving).is_err());
        // The old process never receives its own messages.
        assert!(Stage::AwaitHello.on(&Message::Released).is_err());
        assert!(Stage::AwaitHello.on(&Message::Sockets(vec![])).is_err());
    }

    #[tokio::test]
    async fn sockets_pass_with_their_message() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (old, mut new) = (Conn::new(a), Conn::new(b));
        let l1 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addrs = [
            l1.local_addr().expect("addr"),
            l2.local_addr().expect("addr"),
        ];
        old.send(
            &Message::Sockets(vec![Role::Listen, Role::Admin]),
            &[l1.as_fd(), l2.as_fd()],
        )
        .await
        .expect("send");
        old.send(&Message::Released, &[]).await.expect("send");
        assert_eq!(
            new.recv().await.expect("recv"),
            Message::Sockets(vec![Role::Listen, Role::Admin])
        );
        let passed: Vec<std::net::TcpListener> = std::mem::take(&mut new.fds)
            .into_iter()
            .map(std::net::TcpListener::from)
            .collect();
        let got: Vec<_> = passed
            .iter()
            .map(|l| l.local_addr().expect("addr"))
            .collect();
        assert_eq!(got, addrs, "the same sockets, in order");
        assert_eq!(new.recv().await.expect("recv"), Message::Released);
        drop(old);
        assert!(matches!(new.recv().await, Err(UpgradeError::Closed)));
    }

    #[test]
    fn the_pid_file_is_removed_only_by_its_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_pid_file(dir.path());
        let text = std::fs::read_to_string(dir.path().join(PID_FILE)).expect("written");
        assert_eq!(text.trim(), std::process::id().to_string());
        std::fs::write(dir.path().join(PID_FILE), "1\n").expect("a newer process's");
        remove_pid_file_if_ours(dir.path());
        assert!(dir.path().join(PID_FILE).exists());
        write_pid_file(dir.path());
        remove_pid_file_if_ours(dir.path());
        assert!(!dir.path().join(PID_FILE).exists());
    }
}
