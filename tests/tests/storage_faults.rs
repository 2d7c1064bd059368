//! Damage to the data directory between two runs: bytes of cached bodies
//! flipped on disk, the disk-cache files cut short, the purge database
//! overwritten. The node must start, say what it dropped, never serve the
//! damaged bytes, and never bring back a purged object.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use edge::config::{DiskAdmissionMode, Secret};
use edge_tests::client::{self, get_with};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, logs};
use http::Request;
use http_body_util::Full;

const SITE: [(&str, &str); 1] = [("host", "site.test")];
const TOKEN: &str = "storage-fault-token";

/// A body whose every 64-byte line names its path and offset, so damage
/// anywhere shows and the lines can be found in the cache files.
fn body(path: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut offset = 0;
    while out.len() < len {
        let line = format!("{path} MARKER {offset:012}\n");
        out.extend_from_slice(format!("{line:>64}").as_bytes());
        offset += 64;
    }
    out.truncate(len);
    out
}

/// Small (inline in the head) and large (in 1 MiB chunks) objects.
const OBJECTS: [(&str, usize); 3] = [
    ("/small", 4 * 1024),
    ("/medium", 200 * 1024),
    ("/large", 3 * 1024 * 1024),
];

async fn origin_with_objects() -> MockOrigin {
    let origin = MockOrigin::start().await;
    for (path, len) in OBJECTS {
        origin.route(
            path,
            Reply::ok(body(path, len)).header("cache-control", "max-age=600"),
        );
    }
    origin
}

/// Every object written to disk when stored: the faults are the disk's.
async fn edge_on(origin: &MockOrigin, dir: &Path) -> TestEdge {
    TestEdge::start_in(&origin.url(), dir, |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
        c.cache.disk_admission = DiskAdmissionMode::All;
    })
    .await
}

async fn fill_all(edge: &TestEdge) {
    for (path, len) in OBJECTS {
        let resp = get_with(&edge.url(path), &SITE).await;
        assert_eq!(resp.body().len(), len, "{path}");
    }
}

/// Every object comes back whole and right, from cache or from the origin.
async fn assert_all_intact(edge: &TestEdge) -> Vec<String> {
    let mut statuses = Vec::new();
    for (path, len) in OBJECTS {
        let resp = get_with(&edge.url(path), &SITE).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.body()[..] == body(path, len)[..],
            "{path} was served damaged ({})",
            resp.x_cache()
        );
        statuses.push(format!("{path}={}", resp.x_cache()));
    }
    statuses
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test]
async fn flipped_bytes_in_the_disk_cache_are_never_served() {
    logs::capture(tracing::Level::INFO);
    let origin = origin_with_objects().await;
    let dir = tempfile::tempdir().expect("dir");
    let edge = edge_on(&origin, dir.path()).await;
    fill_all(&edge).await;
    edge.stop().await;

    // One byte changed in every stored line of every body: whatever the
    // node reads back of them is damaged.
    let mut flipped = 0;
    for file in files_under(&dir.path().join("cache")) {
        let mut bytes = std::fs::read(&file).expect("read");
        let mut at = 0;
        while let Some(pos) = find(&bytes[at..], b" MARKER ") {
            bytes[at + pos + 1] = b'm';
            flipped += 1;
            at += pos + 8;
        }
        std::fs::write(&file, &bytes).expect("write");
    }
    assert!(
        flipped > 1000,
        "the bodies were not found on disk ({flipped})"
    );

    let edge = edge_on(&origin, dir.path()).await;
    let statuses = assert_all_intact(&edge).await;
    // Served again from the origin, and stored again.
    for (path, _) in OBJECTS {
        assert_eq!(origin.hits(path), 2, "{path}: {statuses:?}");
    }
    assert_all_intact(&edge).await;
    // foyer checksums every entry; a mismatch is dropped with a warning.
    let text = logs::text();
    assert!(
        text.contains("remove this entry and skip"),
        "no log line:\n{text}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn a_cut_short_disk_cache_is_dropped_not_fatal() {
    let origin = origin_with_objects().await;
    let dir = tempfile::tempdir().expect("dir");
    let edge = edge_on(&origin, dir.path()).await;
    fill_all(&edge).await;
    edge.stop().await;

    for file in files_under(&dir.path().join("cache")) {
        let len = std::fs::metadata(&file).expect("meta").len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("open");
        f.set_len(len / 3).expect("truncate");
    }
    let edge = edge_on(&origin, dir.path()).await;
    assert_all_intact(&edge).await;
    assert_all_intact(&edge).await;
}

#[tokio::test]
async fn an_unreadable_purge_database_is_replaced_and_nothing_purged_returns() {
    logs::capture(tracing::Level::INFO);
    let origin = origin_with_objects().await;
    let dir = tempfile::tempdir().expect("dir");
    let edge = edge_on(&origin, dir.path()).await;
    fill_all(&edge).await;
    let purge = Request::post(edge.admin_url("/purge"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from_static(
            br#"{"urls": ["http://site.test/small"]}"#,
        )))
        .expect("request");
    assert_eq!(client::fetch(&client::http1(), purge).await.status(), 200);
    edge.stop().await;

    // Garbage over every file of the purge database: the purge of /small
    // is gone with it.
    let db = dir.path().join("purge");
    for file in files_under(&db) {
        std::fs::write(&file, b"this is not a rocksdb file").expect("write");
    }

    let edge = edge_on(&origin, dir.path()).await;
    let small = get_with(&edge.url("/small"), &SITE).await;
    assert_eq!(
        small.x_cache(),
        "MISS",
        "a purged object came back after its purge record was lost"
    );
    assert_all_intact(&edge).await;
    let text = logs::text();
    assert!(
        text.contains("purge database unreadable"),
        "no log line:\n{text}"
    );
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("purge.unreadable-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged database is kept for a look");
    edge.stop().await;

    // The replacement is a working database: a restart finds it fine.
    let edge = edge_on(&origin, dir.path()).await;
    assert_all_intact(&edge).await;
}

/// A tmpfs of `mib` MiB mounted over `dir` for the life of the guard:
/// a disk that really fills up. Needs CAP_SYS_ADMIN (CI runs as root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk refuses more; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let junk = self.path().join("junk");
        let mut file = std::fs::File::create(&junk).expect("create junk");
        let block = vec![0x5au8; 1 << 20];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        junk
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_keeps_serving_from_memory_and_the_origin() {
    // 96 MiB of disk tier, the purge database, and once the junk is gone
    // more than the purge database's 64 MiB floor (purge-api's MIN_FREE).
    let Some(disk) = SmallDisk::mount(192) else {
        eprintln!("skipped: mounting a tmpfs needs CAP_SYS_ADMIN");
        return;
    };
    let origin = origin_with_objects().await;
    let fresh: Vec<(String, usize)> = (0..12)
        .map(|i| {
            (
                format!("/fresh-{i}"),
                if i % 3 == 0 { 3 << 20 } else { 300 << 10 },
            )
        })
        .collect();
    for (path, len) in &fresh {
        origin.route(
            path,
            Reply::ok(body(path, *len)).header("cache-control", "max-age=600"),
        );
    }
    let data = disk.path().join("data");
    let edge = TestEdge::start_in(&origin.url(), &data, |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
        c.cache.memory = "48MiB".parse().expect("size");
        c.cache.disk = "96MiB".parse().expect("size");
        c.cache.disk_admission = DiskAdmissionMode::All;
    })
    .await;
    fill_all(&edge).await;

    let junk = disk.fill();
    assert!(
        std::fs::write(disk.path().join("one-more"), b"x").is_err(),
        "the disk is not full"
    );

    // Stored objects: from memory. New ones: from the origin, whole and
    // right, and kept in memory.
    let statuses = assert_all_intact(&edge).await;
    assert!(statuses.iter().all(|s| s.ends_with("=HIT")), "{statuses:?}");
    for round in 0..2 {
        for (path, len) in &fresh {
            let resp = get_with(&edge.url(path), &SITE).await;
            assert_eq!(resp.status(), 200, "{path} round {round}");
            assert!(
                resp.body()[..] == body(path, *len)[..],
                "{path} damaged on a full disk"
            );
        }
    }
    // A purge must not be lost silently: either it is stored, or it is
    // refused with an error the caller sees. The second one goes through
    // the database handle the first one's failure closed.
    for path in ["/medium", "/small"] {
        let answer = purge_url(&edge, path).await;
        assert!(
            answer == 200 || answer >= 500,
            "{path}: purge answered {answer}"
        );
        if answer == 200 {
            let resp = get_with(&edge.url(path), &SITE).await;
            assert_eq!(resp.x_cache(), "MISS", "a purge answered 200 did not hold");
        }
    }
    let health = client::get(&edge.admin_url("/healthz")).await;
    assert_eq!(health.status(), 200);

    // Room again: objects are stored and served as before, and purges
    // are stored again.
    std::fs::remove_file(junk).expect("free the disk");
    assert_all_intact(&edge).await;
    assert_eq!(purge_url(&edge, "/large").await, 200);
    let large = get_with(&edge.url("/large"), &SITE).await;
    assert_eq!(large.x_cache(), "MISS");
    edge.stop().await;
}

async fn purge_url(edge: &TestEdge, path: &str) -> u16 {
    let body = format!(r#"{{"urls": ["http://site.test{path}"]}}"#);
    let purge = Request::post(edge.admin_url("/purge"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let answer = client::fetch(&client::http1(), purge).await;
    eprintln!("purge {path}: {} {:?}", answer.status(), answer.body());
    answer.status().as_u16()
}
