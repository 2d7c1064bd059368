//! The access log off the hot path, as nginx's `access_log … buffer=
//! flush=` does it: a request formats its line straight into a shared
//! buffer (no `tracing` event, no allocation, no system call), and a thread
//! of its own writes the buffer out every `access_log_flush` (1 s) or once
//! `access_log_buffer` (64 KiB) is pending. A crash loses at most one flush
//! interval. A full disk or a slow log never blocks serving: past 16 times
//! the buffer pending, lines are dropped and counted
//! (`edge_access_log_dropped_total`).
//!
//! Lines are text (`TIME  INFO access: key=value …`, the shape tracing gave
//! them), JSON with the same field names, or nginx's `combined` with the
//! cache status, tier and duration appended, by `access_log_format`
//! (default: as `log_format`).

use std::io::Write as _;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus::IntCounter;

use super::log_file::ReopenableFile;
use crate::hooks::{RequestSummary, Session};

/// Where batches go.
#[derive(Debug)]
pub enum Sink {
    /// `access_log = FILE`, reopened on SIGUSR1.
    File(Arc<ReopenableFile>),
    /// No file: stdout, with the other logs.
    Stdout,
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// `ADDR - - [02/Dec/2026:18:20:00 +0000] "GET /a HTTP/1.1" 200 1024
    /// "REFERER" "USER-AGENT" cache=HIT tier=memory duration_ms=0.120`.
    Combined,
}

/// The settings of the writer.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub format: Format,
    pub flush: Duration,
    /// Pending bytes that wake the writer before the interval.
    pub buffer: usize,
}

/// The process's access log, once the binary installed one.
static INSTALLED: OnceLock<AccessLog> = OnceLock::new();

/// The access log the binary installed, if any (an embedder without one
/// gets the lines as `tracing` events on the `access` target).
pub fn installed() -> Option<&'static AccessLog> {
    INSTALLED.get()
}

/// A buffered access log and its writer thread.
#[derive(Debug)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer when `buffer` bytes are pending.
    wake: Condvar,
    /// Held from taking a batch to having written it, so that a flush
    /// before a reopen is ordered after every earlier batch.
    io: Mutex<()>,
    sink: Sink,
    settings: Settings,
    dropped: IntCounter,
}

#[derive(Debug, Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer was woken for this batch already.
    woken: bool,
    /// The second's text prefix of the timestamp, and which second it is.
    second: u64,
    stamp: String,
    /// The same for `combined`'s `[02/Dec/2026:18:20:00 +0000]`.
    local_second: u64,
    local_stamp: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A writer that panicked mid-line left bytes, not broken state.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AccessLog {
    /// Starts the writer thread and installs the log for the process;
    /// `None` if one is installed already.
    pub fn install(sink: Sink, settings: Settings) -> std::io::Result<Option<&'static AccessLog>> {
        let log = AccessLog::new(sink, settings)?;
        let writer = log.shared.clone();
        std::thread::Builder::new()
            .name("edge-access-log".to_owned())
            .spawn(move || writer.run())?;
        if INSTALLED.set(log).is_err() {
            return Ok(None);
        }
        Ok(INSTALLED.get())
    }

    /// The log without its writer thread (batches go out on `flush`).
    fn new(sink: Sink, settings: Settings) -> std::io::Result<AccessLog> {
        let dropped = IntCounter::new(
            crate::metrics::names::ACCESS_LOG_DROPPED_TOTAL,
            "Access lines dropped because the log could not keep up or be written",
        )
        .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            io: Mutex::new(()),
            sink,
            settings,
            dropped,
        });
        Ok(AccessLog { shared })
    }

    /// Lines dropped so far, for `/metrics`.
    pub fn dropped(&self) -> IntCounter {
        self.shared.dropped.clone()
    }

    /// Appends the request's line; never waits for the disk.
    pub fn record(&self, session: &Session, summary: &RequestSummary) {
        let shared = &*self.shared;
        let mut pending = lock(&shared.pending);
        let start = pending.lines.len();
        if start >= 16 * shared.settings.buffer.max(4096) {
            drop(pending);
            shared.dropped.inc();
            return;
        }
        let now = SystemTime::now();
        let Pending {
            lines,
            second,
            stamp,
            local_second,
            local_stamp,
            ..
        } = &mut *pending;
        match shared.settings.format {
            Format::Text => {
                write_stamp(lines, now, second, stamp);
                text_line(lines, session, summary);
            }
            Format::Json => {
                lines.extend_from_slice(br#"{"timestamp":""#);
                write_stamp(lines, now, second, stamp);
                json_line(lines, session, summary);
            }
            Format::Combined => {
                combined_line(lines, session, summary, |out| {
                    write_local_stamp(out, now, local_second, local_stamp);
                });
            }
        }
        if lines.len() >= shared.settings.buffer && !pending.woken {
            pending.woken = true;
            drop(pending);
            shared.wake.notify_one();
        }
    }

    /// Writes what is pending now (before a reopen, and at exit).
    pub fn flush(&self) {
        self.shared.write_batch();
    }

    /// Writes what is pending to the file, then opens the file again at
    /// its path (logrotate moved it): lines recorded before go to the old
    /// file, lines after to the new one.
    pub fn reopen(&self) -> std::io::Result<()> {
        let _io = lock(&self.shared.io);
        self.shared.write_locked();
        match &self.shared.sink {
            Sink::File(file) => file.reopen(),
            Sink::Stdout => Ok(()),
        }
    }
}

impl Shared {
    /// The writer thread: a batch every `flush`, or sooner when woken.
    fn run(self: Arc<Self>) {
        loop {
            {
                let pending = lock(&self.pending);
                if !pending.woken {
                    let _ = self
                        .wake
                        .wait_timeout(pending, self.settings.flush)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            self.write_batch();
        }
    }

    fn write_batch(&self) {
        let _io = lock(&self.io);
        self.write_locked();
    }

    /// Takes the pending lines and writes them (the caller holds `io`).
    fn write_locked(&self) {
        let batch = {
            let mut pending = lock(&self.pending);
            pending.woken = false;
            std::mem::take(&mut pending.lines)
        };
        if batch.is_empty() {
            return;
        }
        let written = match &self.sink {
            Sink::File(file) => file.lock().write_all(&batch),
            Sink::Stdout => std::io::stdout().lock().write_all(&batch),
        };
        if let Err(err) = written {
            let lines = batch.iter().filter(|&&b| b == b'\n').count();
            self.dropped.inc_by(lines as u64);
            tracing::error!(%err, lines, "cannot write the access log; lines dropped");
        }
        // Give the buffer back so the next batch does not grow a new one.
        let mut pending = lock(&self.pending);
        if pending.lines.is_empty() {
            let mut batch = batch;
            batch.clear();
            pending.lines = batch;
        }
    }
}

/// `2026-12-02T05:19:28.123456Z`, the second's part formatted once per
/// second.
fn write_stamp(out: &mut Vec<u8>, now: SystemTime, second: &mut u64, stamp: &mut String) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    if *second != since.as_secs() || stamp.is_empty() {
        *second = since.as_secs();
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs());
        let text = humantime::format_rfc3339_seconds(whole).to_string();
        // "…T05:19:28Z" → "…T05:19:28."
        *stamp = format!("{}.", text.trim_end_matches('Z'));
    }
    out.extend_from_slice(stamp.as_bytes());
    padded(out, since.subsec_micros(), 6);
    out.push(b'Z');
}

/// `02/Dec/2026:18:20:00 +0000` (nginx's `$time_local`, in UTC),
/// formatted once per second.
fn write_local_stamp(out: &mut Vec<u8>, now: SystemTime, second: &mut u64, stamp: &mut String) {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if *second != secs || stamp.is_empty() {
        *second = secs;
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        // "2026-12-02T18:20:00Z"
        let t = humantime::format_rfc3339_seconds(whole).to_string();
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = t
            .get(5..7)
            .and_then(|m| m.parse::<usize>().ok())
            .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
            .copied()
            .unwrap_or("Jan");
        *stamp = format!(
            "{}/{month}/{}:{} +0000",
            t.get(8..10).unwrap_or("01"),
            t.get(0..4).unwrap_or("1970"),
            t.get(11..19).unwrap_or("00:00:00"),
        );
    }
    out.extend_from_slice(stamp.as_bytes());
}

/// `n` in decimal, zero-padded to `width` digits.
fn padded(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    out.extend(std::iter::repeat_n(
        b'0',
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits.as_bytes());
}

fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with three decimals, from whole microseconds.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    number(out, micros / 1000);
    out.push(b'.');
    padded(out, (micros % 1000) as u32, 3);
}

/// The fields of a line, in order, as the writers need them.
struct Fields<'a> {
    client: std::net::IpAddr,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    version: &'static str,
    /// `h1`, `h2` or `h3`, as the metrics' `protocol` label.
    protocol: &'static str,
    peer: &'a str,
    cache: &'static str,
    tier: Option<&'static str>,
    referer: Option<&'a str>,
    user_agent: Option<&'a str>,
}

fn fields<'a>(session: &'a Session) -> Fields<'a> {
    let header = |name: http::header::HeaderName| {
        session
            .req
            .headers
            .get(name)
            .map(|v| std::str::from_utf8(v.as_bytes()).unwrap_or("(not UTF-8)"))
    };
    Fields {
        client: session.client_addr.ip(),
        method: session.req.method.as_str(),
        host: session.host(),
        path: session.path_and_query(),
        version: version(session.req.version),
        protocol: crate::metrics::protocol_name(session.req.version),
        peer: session
            .peer
            .as_ref()
            .map_or("-", |p| p.authority().as_str()),
        cache: session.cache_status.as_str(),
        tier: session.cache_tier.map(|t| t.as_str()),
        referer: header(http::header::REFERER),
        user_agent: header(http::header::USER_AGENT),
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn text_line(out: &mut Vec<u8>, session: &Session, summary: &RequestSummary) {
    let f = fields(session);
    out.extend_from_slice(b"  INFO access: client=");
    let _ = write!(out, "{}", f.client);
    out.extend_from_slice(b" method=");
    out.extend_from_slice(f.method.as_bytes());
    out.extend_from_slice(b" host=");
    quoted(out, f.host);
    out.extend_from_slice(b" path=");
    quoted(out, f.path);
    out.extend_from_slice(b" version=");
    out.extend_from_slice(f.version.as_bytes());
    out.extend_from_slice(b" protocol=");
    out.extend_from_slice(f.protocol.as_bytes());
    out.extend_from_slice(b" status=");
    number(out, summary.status.as_u16());
    out.extend_from_slice(b" bytes=");
    number(out, summary.body_bytes);
    out.extend_from_slice(b" duration_ms=");
    millis(out, summary.duration);
    out.extend_from_slice(b" peer=");
    out.extend_from_slice(f.peer.as_bytes());
    out.extend_from_slice(b" cache=");
    out.extend_from_slice(f.cache.as_bytes());
    if let Some(tier) = f.tier {
        out.extend_from_slice(b" tier=");
        out.extend_from_slice(tier.as_bytes());
    }
    if let Some(status) = summary.upstream_status {
        out.extend_from_slice(b" upstream_status=");
        number(out, status.as_u16());
    }
    if let Some(error) = summary.error {
        out.extend_from_slice(b" error=");
        out.extend_from_slice(error.as_bytes());
    }
    out.extend_from_slice(b" body_end=");
    out.extend_from_slice(summary.end.as_str().as_bytes());
    if let Some(referer) = f.referer {
        out.extend_from_slice(b" referer=");
        quoted(out, referer);
    }
    if let Some(agent) = f.user_agent {
        out.extend_from_slice(b" user_agent=");
        quoted(out, agent);
    }
    out.push(b'\n');
}

/// nginx's `combined`, then edge's own fields:
/// `$remote_addr - $remote_user [$time_local] "$request" $status
/// $body_bytes_sent "$http_referer" "$http_user_agent"` + ` cache=HIT
/// tier=memory duration_ms=0.120` (`tier=-` when no tier answered).
fn combined_line(
    out: &mut Vec<u8>,
    session: &Session,
    summary: &RequestSummary,
    stamp: impl FnOnce(&mut Vec<u8>),
) {
    let f = fields(session);
    let _ = write!(out, "{}", f.client);
    out.extend_from_slice(b" - - [");
    stamp(out);
    out.extend_from_slice(b"] \"");
    ncsa_escaped(out, f.method);
    out.push(b' ');
    ncsa_escaped(out, f.path);
    out.push(b' ');
    out.extend_from_slice(f.version.as_bytes());
    out.extend_from_slice(b"\" ");
    number(out, summary.status.as_u16());
    out.push(b' ');
    number(out, summary.body_bytes);
    out.extend_from_slice(b" \"");
    ncsa_escaped(out, f.referer.unwrap_or("-"));
    out.extend_from_slice(b"\" \"");
    ncsa_escaped(out, f.user_agent.unwrap_or("-"));
    out.extend_from_slice(b"\" cache=");
    out.extend_from_slice(f.cache.as_bytes());
    out.extend_from_slice(b" tier=");
    out.extend_from_slice(f.tier.unwrap_or("-").as_bytes());
    out.extend_from_slice(b" duration_ms=");
    millis(out, summary.duration);
    out.push(b'\n');
}

/// As nginx's default `escape`: `"`, `\\` and bytes below 32 or above 126
/// as `\xXX`, so a quoted field never holds a quote and a line is one line.
fn ncsa_escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' || !(32..=126).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// A client-given string in double quotes, escaped as JSON does (so a
/// line is always one line, whatever the client sent).
fn quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..0x20 | 0x7f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// The rest of a JSON line, after `{"timestamp":"` and the stamp.
fn json_line(out: &mut Vec<u8>, session: &Session, summary: &RequestSummary) {
    let f = fields(session);
    out.extend_from_slice(br#"","level":"INFO","target":"access","client":""#);
    let _ = write!(out, "{}", f.client);
    out.extend_from_slice(br#"","method":"#);
    quoted(out, f.method);
    out.extend_from_slice(br#","host":"#);
    quoted(out, f.host);
    out.extend_from_slice(br#","path":"#);
    quoted(out, f.path);
    out.extend_from_slice(br#","version":""#);
    out.extend_from_slice(f.version.as_bytes());
    out.extend_from_slice(br#"","protocol":""#);
    out.extend_from_slice(f.protocol.as_bytes());
    out.extend_from_slice(br#"","status":"#);
    number(out, summary.status.as_u16());
    out.extend_from_slice(br#","bytes":"#);
    number(out, summary.body_bytes);
    out.extend_from_slice(br#","duration_ms":"#);
    millis(out, summary.duration);
    out.extend_from_slice(br#","peer":"#);
    quoted(out, f.peer);
    out.extend_from_slice(br#","cache":""#);
    out.extend_from_slice(f.cache.as_bytes());
    out.push(b'"');
    if let Some(tier) = f.tier {
        out.extend_from_slice(br#","tier":""#);
        out.extend_from_slice(tier.as_bytes());
        out.push(b'"');
    }
    if let Some(status) = summary.upstream_status {
        out.extend_from_slice(br#","upstream_status":"#);
        number(out, status.as_u16());
    }
    if let Some(error) = summary.error {
        out.extend_from_slice(br#","error":""#);
        out.extend_from_slice(error.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(br#","body_end":""#);
    out.extend_from_slice(summary.end.as_str().as_bytes());
    out.push(b'"');
    if let Some(referer) = f.referer {
        out.extend_from_slice(br#","referer":"#);
        quoted(out, referer);
    }
    if let Some(agent) = f.user_agent {
        out.extend_from_slice(br#","user_agent":"#);
        quoted(out, agent);
    }
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(path: &str) -> Session {
        let config = crate::config::Config {
            origins: vec!["http://127.0.0.1:9".parse().expect("peer")],
            ..crate::config::Config::default()
        };
        let req = http::Request::get(path)
            .header("host", "shop.example")
            .body(())
            .expect("request")
            .into_parts()
            .0;
        Session {
            host: crate::hooks::Host::of(&req),
            req,
            client_addr: "192.0.2.7:5555".parse().expect("addr"),
            downstream_scheme: "http",
            started: std::time::Instant::now(),
            cache_key: None,
            peer: None,
            cache_status: cache::CacheStatus::Hit,
            cache_tier: Some(cache::store::Tier::Memory),
            key_rules: Arc::default(),
            sites: Arc::new(crate::sites::Sites::compile(&config).expect("sites")),
            site: 0,
            rule: None,
            origin_fetched: Arc::default(),
            jwt_claims: None,
            trace: None,
        }
    }

    fn summary() -> RequestSummary {
        RequestSummary {
            status: http::StatusCode::OK,
            body_bytes: 1024,
            duration: Duration::from_micros(1_500),
            end: crate::body::BodyEnd::Complete,
            error: None,
            upstream_status: None,
        }
    }

    #[test]
    fn lines_wait_for_a_batch_and_past_the_cap_are_dropped_and_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("access.log");
        let file = Arc::new(ReopenableFile::open(&path).expect("file"));
        let settings = Settings {
            format: Format::Json,
            flush: Duration::from_secs(3600),
            buffer: 4096,
        };
        let log = AccessLog::new(Sink::File(file), settings).expect("log");
        let read = || std::fs::read_to_string(&path).expect("read");
        log.record(&session("/a?q=1"), &summary());
        assert_eq!(read(), "", "nothing written before the batch");
        log.flush();
        let text = read();
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["path"], "/a?q=1");
        assert_eq!(line["status"], 200);
        assert_eq!(line["cache"], "HIT");
        assert_eq!(line["tier"], "memory");
        assert_eq!(line["duration_ms"], 1.5);
        assert_eq!(line["client"], "192.0.2.7");

        // No writer drains the buffer (a stuck disk): past 16 × 4 KiB,
        // lines are dropped, not waited for.
        let mut kept = 0;
        for i in 0..2000 {
            log.record(&session(&format!("/many/{i}")), &summary());
            kept += 1;
            if log.dropped().get() > 0 {
                kept -= 1;
                break;
            }
        }
        assert!(log.dropped().get() >= 1);
        for _ in 0..10 {
            log.record(&session("/dropped"), &summary());
        }
        assert_eq!(log.dropped().get(), 11);
        log.flush();
        let lines = read().lines().count();
        assert_eq!(lines, 1 + kept, "every line kept was written once");
    }

    #[test]
    fn text_lines_keep_the_fields_of_the_tracing_format() {
        let mut out = Vec::new();
        text_line(&mut out, &session("/t"), &summary());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "  INFO access: client=192.0.2.7 method=GET host=\"shop.example\" path=\"/t\" \
             version=HTTP/1.1 protocol=h1 status=200 bytes=1024 duration_ms=1.500 peer=- cache=HIT \
             tier=memory body_end=complete\n"
        );
    }

    #[test]
    fn combined_lines_are_nginx_combined_then_edge_fields() {
        let mut s = session("/a?q=1");
        s.req
            .headers
            .insert("user-agent", "Mozilla/5.0 \"X11\"".parse().expect("value"));
        let mut out = Vec::new();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_652_768);
        let (mut second, mut stamp) = (0, String::new());
        combined_line(&mut out, &s, &summary(), |o| {
            write_local_stamp(o, t, &mut second, &mut stamp)
        });
        assert_eq!(
            String::from_utf8_lossy(&out),
            "192.0.2.7 - - [02/Dec/2025:05:19:28 +0000] \"GET /a?q=1 HTTP/1.1\" 200 1024 \
             \"-\" \"Mozilla/5.0 \\x22X11\\x22\" cache=HIT tier=memory duration_ms=1.500\n"
        );
        let mut out = Vec::new();
        ncsa_escaped(&mut out, "a\\b\n\u{7f}é");
        assert_eq!(String::from_utf8_lossy(&out), r"a\x5Cb\x0A\x7F\xC3\xA9");
        // Referer and User-Agent in the other formats, when sent.
        let mut out = Vec::new();
        json_line(&mut out, &s, &summary());
        let line = format!("{{\"timestamp\":\"{}", String::from_utf8_lossy(&out));
        let json: serde_json::Value = serde_json::from_str(line.trim()).expect("JSON");
        assert_eq!(json["user_agent"], "Mozilla/5.0 \"X11\"");
        assert!(json.get("referer").is_none());
        assert_eq!(json["protocol"], "h1");
        // An HTTP/3 request says so in both field sets.
        let mut h3 = s;
        h3.req.version = http::Version::HTTP_3;
        let mut out = Vec::new();
        json_line(&mut out, &h3, &summary());
        let line = format!("{{\"timestamp\":\"{}", String::from_utf8_lossy(&out));
        let json: serde_json::Value = serde_json::from_str(line.trim()).expect("JSON");
        assert_eq!(
            (&json["version"], &json["protocol"]),
            (&"HTTP/3.0".into(), &"h3".into())
        );
        let mut out = Vec::new();
        text_line(&mut out, &h3, &summary());
        assert!(String::from_utf8_lossy(&out).contains(" version=HTTP/3.0 protocol=h3 "));
    }

    #[test]
    fn stamps_carry_microseconds_and_reuse_the_second() {
        let (mut second, mut stamp, mut out) = (0, String::new(), Vec::new());
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_652_768_000_042);
        write_stamp(&mut out, t, &mut second, &mut stamp);
        assert_eq!(String::from_utf8_lossy(&out), "2025-12-02T05:19:28.000042Z");
        out.clear();
        write_stamp(
            &mut out,
            t + Duration::from_micros(5),
            &mut second,
            &mut stamp,
        );
        assert_eq!(String::from_utf8_lossy(&out), "2025-12-02T05:19:28.000047Z");
    }

    #[test]
    fn client_strings_are_escaped_onto_one_line() {
        let mut out = Vec::new();
        quoted(&mut out, "/a\"b\\c\nd\u{1}");
        assert_eq!(String::from_utf8_lossy(&out), r#""/a\"b\\c\nd\u0001""#);
        let mut out = Vec::new();
        millis(&mut out, Duration::from_micros(12_034));
        assert_eq!(out, b"12.034");
    }
}
