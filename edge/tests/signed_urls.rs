//! Signed URLs (issue 23) against the binary: the secret comes from the
//! environment, which only a child process can be given safely. Links are
//! made by `edge sign` and by `edge::access::signed::sign` (for expired
//! and rotated ones).

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime};

use edge_tests::client::get_with;
use edge_tests::wait::eventually_within;
use edge_tests::{MockOrigin, Reply, ResponseExt};

const SECRET: &str = "the-current-secret-0123456789";
const OLD_SECRET: &str = "the-previous-secret-987654321";

struct Edge {
    child: Child,
    listen: u16,
    admin: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Edge {
    fn access_log(&self) -> std::path::PathBuf {
        self._dir.path().join("access.log")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.listen)
    }
}

async fn start(origin: &MockOrigin) -> Edge {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[sites]]
name = "video"
hosts = ["video.example"]
origins = ["{}"]

[[sites.rules]]
path = "/v/"
signed_urls = {{ secret_env = "SIGNED_TEST_SECRET", secret2_env = "SIGNED_TEST_OLD_SECRET" }}
"#,
            origin.url()
        ),
    )
    .expect("config written");
    let (listen, admin) = (common::free_port(), common::free_port());
    let child = common::edge_command(origin.addr(), &dir.path().join("data"), listen, admin)
        .arg("--config")
        .arg(&config)
        .arg("--access-log")
        .arg(dir.path().join("access.log"))
        .args(["--log-format", "json"])
        .env("SIGNED_TEST_SECRET", SECRET)
        .env("SIGNED_TEST_OLD_SECRET", OLD_SECRET)
        // access lines are info on their own target
        .env("EDGE_LOG", "warn,access=info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("edge starts");
    let edge = Edge {
        child,
        listen,
        admin,
        _dir: dir,
    };
    let health = format!("http://127.0.0.1:{admin}/healthz");
    eventually_within(
        "the edge to be ready",
        Duration::from_secs(30),
        async || {
            let req = http::Request::get(&health)
                .body(http_body_util::Full::default())
                .expect("request");
            edge_tests::client::try_fetch(&edge_tests::client::http1(), req, Duration::from_secs(2))
                .await
                .is_some_and(|r| r.status() == 200)
        },
    )
    .await;
    edge
}

fn edge_sign(path: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .args([
            "sign",
            path,
            "--expires",
            "1h",
            "--secret-env",
            "SIGNED_TEST_SECRET",
        ])
        .env("SIGNED_TEST_SECRET", SECRET)
        .output()
        .expect("edge sign runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn sign(secret: &str, path: &str, expires: u64) -> String {
    edge::access::signed::sign(secret.as_bytes(), path, expires, "expires", "sig")
}

const HOST: (&str, &str) = ("host", "video.example");

#[tokio::test]
async fn signed_links_pass_share_one_copy_and_bad_ones_get_403() {
    let origin = MockOrigin::start().await;
    origin.fallback(|_| Reply::ok("movie").header("cache-control", "max-age=600"));
    let edge = start(&origin).await;

    let link = edge_sign("/v/a.mp4");
    assert!(link.starts_with("/v/a.mp4?expires="), "{link}");
    let first = get_with(&edge.url(&link), &[HOST]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.text(), "movie");
    // the origin sees neither parameter
    let seen = origin.last_request("/v/a.mp4").expect("fetched");
    assert_eq!(seen.uri, "/v/a.mp4");

    // another valid signature (another expiry, the rotated secret) for the
    // same object: the same cached copy
    let other = sign(OLD_SECRET, "/v/a.mp4", unix_now() + 7200);
    assert_ne!(other, link);
    let second = get_with(&edge.url(&other), &[HOST]).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(
        origin.hits("/v/a.mp4"),
        1,
        "one origin fetch for both links"
    );

    let expired = sign(SECRET, "/v/a.mp4", unix_now() - 60);
    let tampered = link.replace("/v/a.mp4", "/v/b.mp4");
    let cases = [
        (expired.as_str(), 403),
        (tampered.as_str(), 403),
        ("/v/a.mp4", 403),
        ("/v/a.mp4?expires=99999999999&sig=AAAA", 403),
    ];
    for (path, want) in cases {
        let resp = get_with(&edge.url(path), &[HOST]).await;
        assert_eq!(resp.status(), want, "{path}");
        assert!(resp.text().len() < 64);
    }
    // every refusal is in the access log with its reason
    let log = edge.access_log();
    let reasons = edge_tests::poll_until(
        "the refusals in the access log",
        Duration::from_secs(5),
        async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let reasons: Vec<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|j| j["status"] == 403)
                .filter_map(|j| j["error"].as_str().map(str::to_owned))
                .collect();
            if reasons.len() == 4 {
                Ok(reasons)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert_eq!(
        reasons,
        [
            "signature_expired",
            "signature_invalid",
            "signature_missing",
            "signature_invalid"
        ]
    );
    // outside the rule nothing is asked
    assert_eq!(get_with(&edge.url("/free"), &[HOST]).await.status(), 200);
    assert_eq!(origin.hits("/v/b.mp4"), 0);
}

/// `edge inspect` of a signed link and of the bare URL: one object, the
/// key a request gets (signature parameters stripped), and the inspector
/// checks no signature (it is not a client).
#[tokio::test]
async fn the_inspector_keys_signed_links_as_requests_are() {
    let origin = MockOrigin::start().await;
    origin.fallback(|_| Reply::ok("movie").header("cache-control", "max-age=600"));
    let edge = start(&origin).await;
    let link = edge_sign("/v/a.mp4");
    assert_eq!(get_with(&edge.url(&link), &[HOST]).await.status(), 200);
    let admin = format!("127.0.0.1:{}", edge.admin);
    let inspect = |url: String| {
        let admin = admin.clone();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
            .args(["inspect", &url, "--admin", &admin, "--json"])
            .env("EDGE_PURGE_TOKEN", common::TOKEN)
            .output()
            .expect("edge inspect runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let signed = inspect(format!("http://video.example{link}"));
    let bare = inspect("http://video.example/v/a.mp4".to_owned());
    assert_eq!(signed["site"], "video");
    assert_eq!(signed["stored"], true, "{signed:#}");
    assert_eq!(bare["stored"], true, "{bare:#}");
    assert_eq!(signed["key"], bare["key"]);
    let other = inspect("http://video.example/v/b.mp4".to_owned());
    assert_eq!(other["stored"], false);
}
