//! `edge log --follow` against a running node prints its requests as they
//! happen, filtered, and says why when the token is wrong.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::Duration;

use edge::config::Secret;
use edge_tests::process::clean_command;
use edge_tests::{MockOrigin, Reply, TestEdge, client, metrics, poll_until};

const TOKEN: &str = "log-cli-token-0123456";

#[tokio::test]
async fn log_follow_prints_matching_requests_as_they_happen() {
    let origin = MockOrigin::start().await;
    origin.fallback(|_| Reply::ok("object").header("cache-control", "max-age=600"));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
    })
    .await;
    let admin = edge.admin_addr().to_string();
    let mut child = clean_command(env!("CARGO_BIN_EXE_edge"))
        .args([
            "log",
            "--follow",
            "--admin",
            &admin,
            "--filter",
            "cache:MISS",
        ])
        .env("EDGE_PURGE_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("edge log runs");
    // Subscribed once the node counts the watcher.
    poll_until("edge log to connect", Duration::from_secs(10), async || {
        let n = metrics::value(&edge.metrics().await, "edge_live_log_watchers ");
        if n == Some(1.0) {
            Ok(())
        } else {
            Err(format!("{n:?}"))
        }
    })
    .await;
    client::get(&edge.url("/logged")).await; // MISS: printed
    client::get(&edge.url("/logged")).await; // HIT: not
    client::get(&edge.url("/second")).await; // MISS: printed
    let stdout = child.stdout.take().expect("piped");
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take(2)
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(10), lines)
        .await
        .expect("two lines within 10 s")
        .expect("join");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines[0].contains(" GET ")
            && lines[0].contains(" /logged 200 ")
            && lines[0].contains(" MISS"),
        "{lines:?}"
    );
    assert!(lines[1].contains(" /second 200 "), "{lines:?}");

    // A wrong token: a clear error, no stream.
    let out = tokio::task::spawn_blocking(move || {
        clean_command(env!("CARGO_BIN_EXE_edge"))
            .args([
                "log",
                "--follow",
                "--admin",
                &admin,
                "--token",
                "wrong-token-00000",
            ])
            .output()
            .expect("edge log runs")
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("edge log: 403"), "{err}");
}
