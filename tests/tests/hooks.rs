//! Custom `EdgeHooks` change what the proxy does at each phase.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge::hooks::{EarlyResponse, RequestSummary, early_response};
use edge::{EdgeHooks, Session};
use edge_tests::client::get;
use edge_tests::{MockOrigin, Reply, TestEdge, eventually, poll_until};
use http::{HeaderValue, StatusCode, request, response};
use origin_shield::Peer;

#[derive(Default)]
struct Seen {
    phases: Vec<&'static str>,
    logged: Vec<(String, u16, u64)>,
}

struct TestHooks {
    second: Peer,
    seen: Arc<Mutex<Seen>>,
}

impl EdgeHooks for TestHooks {
    type Ctx = Vec<&'static str>;

    fn new_ctx(&self) -> Self::Ctx {
        Vec::new()
    }

    async fn request_filter(&self, s: &mut Session, ctx: &mut Self::Ctx) -> Option<EarlyResponse> {
        ctx.push("request_filter");
        if s.req.uri.path().starts_with("/blocked") {
            return Some(early_response(StatusCode::FORBIDDEN, "no"));
        }
        s.req
            .headers
            .insert("x-filtered", HeaderValue::from_static("1"));
        None
    }

    fn cache_key(&self, s: &Session, ctx: &mut Self::Ctx) -> Option<cache::CacheKey> {
        ctx.push("cache_key");
        cache::CacheKey::for_request(&s.req.method, "http", "one-site", s.path_and_query())
    }

    async fn upstream_peer(&self, s: &Session, ctx: &mut Self::Ctx) -> Option<Peer> {
        ctx.push("upstream_peer");
        s.req
            .uri
            .path()
            .starts_with("/api/")
            .then(|| self.second.clone())
    }

    async fn upstream_request_filter(
        &self,
        _s: &Session,
        up: &mut request::Parts,
        ctx: &mut Self::Ctx,
    ) {
        ctx.push("upstream_request_filter");
        up.headers
            .insert("x-edge-secret", HeaderValue::from_static("s3cret"));
    }

    async fn response_filter(&self, _s: &Session, resp: &mut response::Parts, ctx: &mut Self::Ctx) {
        ctx.push("response_filter");
        resp.headers
            .insert("x-served-by", HeaderValue::from_static("hooks"));
    }

    fn logging(&self, s: &Session, summary: &RequestSummary, ctx: &mut Self::Ctx) {
        ctx.push("logging");
        let mut seen = self.seen.lock().expect("seen lock");
        seen.phases = ctx.clone();
        seen.logged.push((
            s.req.uri.path().to_owned(),
            summary.status.as_u16(),
            summary.body_bytes,
        ));
    }
}

async fn wait_logged(seen: &Mutex<Seen>, n: usize) {
    eventually("the logging hook", async || {
        seen.lock().expect("seen lock").logged.len() >= n
    })
    .await;
}

#[tokio::test]
async fn every_phase_runs_in_order_and_can_change_the_request() {
    let origin = MockOrigin::start().await;
    let api = MockOrigin::start().await;
    origin.route("/page", Reply::ok("page body"));
    api.route("/api/users", Reply::ok("[]"));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let hooks = TestHooks {
        second: api.url().parse().unwrap(),
        seen: seen.clone(),
    };
    let edge = TestEdge::start_with_hooks(&origin.url(), |_| {}, hooks).await;

    let resp = get(&edge.url("/page")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-served-by"], "hooks");
    let at_origin = origin.last_request("/page").unwrap();
    assert_eq!(at_origin.headers["x-filtered"], "1");
    assert_eq!(at_origin.headers["x-edge-secret"], "s3cret");
    wait_logged(&seen, 1).await;
    assert_eq!(
        seen.lock().unwrap().phases,
        [
            "request_filter",
            "cache_key",
            "upstream_peer",
            "upstream_request_filter",
            "response_filter",
            "logging"
        ]
    );
    assert_eq!(seen.lock().unwrap().logged[0], ("/page".into(), 200, 9));

    // upstream_peer routes /api/ to the second origin.
    let resp = get(&edge.url("/api/users")).await;
    assert_eq!(&resp.body()[..], b"[]");
    assert_eq!(api.hits("/api/users"), 1);
    assert_eq!(origin.hits("/api/users"), 0);

    // request_filter answers early: nothing goes upstream.
    let resp = get(&edge.url("/blocked/x")).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(origin.hits("/blocked/x"), 0);
    wait_logged(&seen, 3).await;
    assert_eq!(
        seen.lock().unwrap().logged[2],
        ("/blocked/x".into(), 403, 3)
    );
}

/// Records every summary the logging hook sees.
struct LogOnly(Arc<Mutex<Vec<(u16, &'static str)>>>);

impl EdgeHooks for LogOnly {
    type Ctx = ();
    fn new_ctx(&self) {}
    fn logging(&self, _s: &Session, summary: &RequestSummary, _ctx: &mut ()) {
        self.0
            .lock()
            .expect("log lock")
            .push((summary.status.as_u16(), summary.end.as_str()));
    }
}

#[tokio::test]
async fn a_client_leaving_before_the_response_is_still_logged() {
    use tokio::io::AsyncWriteExt;

    let origin = MockOrigin::start().await;
    origin.route("/slow", Reply::ok("late").delay(Duration::from_secs(2)));
    let logged = Arc::new(Mutex::new(Vec::new()));
    let edge = TestEdge::start_with_hooks(&origin.url(), |_| {}, LogOnly(logged.clone())).await;
    let mut stream = tokio::net::TcpStream::connect(edge.addr()).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Wait until the origin has the request, then hang up.
    origin.wait_for_hits("/slow", 1).await;
    drop(stream);
    let entry = poll_until(
        "the abandoned request to be logged",
        Duration::from_secs(5),
        async || {
            logged
                .lock()
                .expect("log lock")
                .first()
                .copied()
                .ok_or("nothing logged")
        },
    )
    .await;
    assert_eq!(entry, (499, "aborted"));
}
