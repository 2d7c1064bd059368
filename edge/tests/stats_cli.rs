//! `edge stats --once` against a running node prints what it served.

use edge_tests::process::clean_command;
use edge_tests::{MockOrigin, TestEdge, client, free_port};

#[tokio::test]
async fn stats_once_prints_the_numbers_of_a_running_node() {
    let origin = MockOrigin::start_site().await;
    let edge = TestEdge::start_with(&origin.url(), |c| c.node_name = "stats-node".into()).await;
    // 2 objects × 5 requests: 2 MISS, 8 HIT.
    for path in ["/a", "/b"] {
        for _ in 0..5 {
            let resp = client::get(&edge.url(path)).await;
            assert_eq!(resp.status(), 200);
        }
    }
    let admin = edge.admin_addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        clean_command(env!("CARGO_BIN_EXE_edge"))
            .args(["stats", "--once", "--admin", &admin])
            .output()
    })
    .await
    .expect("join")
    .expect("edge stats runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("edge stats-node"), "{text}");
    assert!(text.contains("80.0% of requests"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("HIT") && l.contains(" 8 ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("MISS") && l.contains(" 2 ")),
        "{text}"
    );
    assert!(text.contains("peer"), "{text}");

    // A node that is not there: a clear error, not a hang.
    let dead = free_port();
    let out = clean_command(env!("CARGO_BIN_EXE_edge"))
        .args(["stats", "--once", "--admin", &format!("127.0.0.1:{dead}")])
        .output()
        .expect("edge stats runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
    edge.stop().await;
}
