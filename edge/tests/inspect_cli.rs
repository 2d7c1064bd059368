//! `edge inspect URL` against a running node prints what its cache holds,
//! and refuses clearly without the token.

use edge::config::Secret;
use edge_tests::process::clean_command;
use edge_tests::{MockOrigin, Reply, TestEdge, client, free_port};

const TOKEN: &str = "inspect-cli-token";

fn run(args: Vec<String>) -> std::process::Output {
    clean_command(env!("CARGO_BIN_EXE_edge"))
        .arg("inspect")
        .args(args)
        .output()
        .expect("edge inspect runs")
}

#[tokio::test]
async fn inspect_prints_what_a_running_node_holds() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/a.css",
        Reply::ok("body")
            .header("cache-control", "max-age=600, stale-if-error=300")
            .header("etag", "\"v1\"")
            .header("surrogate-key", "css"),
    );
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
    })
    .await;
    let url = edge.url("/a.css");
    assert_eq!(client::get(&url).await.status(), 200);
    let admin = edge.admin_addr().to_string();

    let args = vec![
        url.clone(),
        "--admin".into(),
        admin.clone(),
        "--token".into(),
        TOKEN.into(),
    ];
    let out = tokio::task::spawn_blocking(move || run(args))
        .await
        .expect("join");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        url.as_str(),
        "site default",
        "status 200, 4 bytes (inline), in memory",
        "fresh: age",
        "stale-if-error 300s",
        "ETag \"v1\"",
        "tags: css",
        "purge: valid",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }

    // The token from the environment, and the JSON as it came.
    let (u, a) = (edge.url("/absent"), admin.clone());
    let out = tokio::task::spawn_blocking(move || {
        clean_command(env!("CARGO_BIN_EXE_edge"))
            .args(["inspect", &u, "--admin", &a, "--json"])
            .env("EDGE_PURGE_TOKEN", TOKEN)
            .output()
            .expect("edge inspect runs")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["stored"], false);

    // Without the token: the node's reason, and a failure.
    let args = vec![url.clone(), "--admin".into(), admin];
    let out = tokio::task::spawn_blocking(move || run(args))
        .await
        .expect("join");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("Bearer"), "{err}");

    // Nobody there: a clear error, not a hang.
    let dead = format!("127.0.0.1:{}", free_port());
    let out = run(vec![url, "--admin".into(), dead]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
    edge.stop().await;
}
