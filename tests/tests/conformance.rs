//! Issue 25, RFC conformance's last mile, end to end: an origin scripted to
//! send the exact headers, a real edge, and the origin's request counts.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_tests::client::{self, fetch, get, get_with};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge};
use http::Request;
use http_body_util::Full;

/// A 304 that repeats no validator (only `Date`, which the origin adds).
fn bare_304(reply: Reply) -> Reply {
    reply.not_modified_with(&[])
}

/// `etag` and `cache-control`, answering revalidations with a bare 304.
fn validated(body: &'static str, cache_control: &str) -> Reply {
    bare_304(
        Reply::ok(body)
            .header("cache-control", cache_control)
            .header("etag", "\"v1\""),
    )
}

fn head(url: &str) -> Request<Full<Bytes>> {
    Request::head(url).body(Full::default()).expect("request")
}

// --- 1. a 304 without a validator freshens what it answers ---

#[tokio::test]
async fn a_304_without_validators_refreshes_a_stale_object_with_one_request() {
    let origin = MockOrigin::start().await;
    origin.route("/stale", validated("stored body", "max-age=1"));
    let edge = TestEdge::start(&origin.url()).await;
    assert_eq!(get(&edge.url("/stale")).await.x_cache(), "MISS");
    edge.advance(Duration::from_secs(2));
    let resp = get(&edge.url("/stale")).await;
    assert_eq!(resp.x_cache(), "REVALIDATED");
    assert_eq!(resp.text(), "stored body");
    assert_eq!(
        resp.header("etag"),
        Some("\"v1\""),
        "the stored validator stays"
    );
    assert_eq!(origin.hits("/stale"), 2, "one revalidation, one request");
    assert_eq!(
        origin.last_request("/stale").unwrap().headers["if-none-match"],
        "\"v1\""
    );
    // Freshened: max-age=1 counts again from the 304.
    assert_eq!(get(&edge.url("/stale")).await.x_cache(), "HIT");
    assert_eq!(origin.hits("/stale"), 2);
}

#[tokio::test]
async fn a_bare_304_serves_every_revalidation_path_with_one_request_each() {
    let origin = MockOrigin::start().await;
    origin.route("/no-cache", validated("nc", "max-age=600, no-cache"));
    origin.route("/req", validated("req", "max-age=600"));
    origin.route("/must", validated("must", "max-age=1, must-revalidate"));
    origin.route(
        "/vary",
        validated("vary", "max-age=1").header("vary", "accept-language"),
    );
    origin.route("/head", validated("head", "max-age=1"));
    let edge = TestEdge::start(&origin.url()).await;
    for path in ["/no-cache", "/req", "/must", "/head"] {
        assert_eq!(get(&edge.url(path)).await.x_cache(), "MISS", "{path}");
    }
    let de = [("accept-language", "de")];
    assert_eq!(get_with(&edge.url("/vary"), &de).await.x_cache(), "MISS");
    edge.advance(Duration::from_secs(2));

    // The response's no-cache: every use revalidates.
    let resp = get(&edge.url("/no-cache")).await;
    assert_eq!(
        (resp.x_cache(), resp.text().as_str()),
        ("REVALIDATED", "nc")
    );
    // The request's no-cache on a fresh object.
    let resp = get_with(&edge.url("/req"), &[("cache-control", "no-cache")]).await;
    assert_eq!(
        (resp.x_cache(), resp.text().as_str()),
        ("REVALIDATED", "req")
    );
    // must-revalidate, stale.
    let resp = get(&edge.url("/must")).await;
    assert_eq!(
        (resp.x_cache(), resp.text().as_str()),
        ("REVALIDATED", "must")
    );
    // A Vary'd variant.
    let resp = get_with(&edge.url("/vary"), &de).await;
    assert_eq!(
        (resp.x_cache(), resp.text().as_str()),
        ("REVALIDATED", "vary")
    );
    // HEAD of a stale GET.
    let resp = fetch(&client::http1(), head(&edge.url("/head"))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.x_cache(), "REVALIDATED");
    for path in ["/no-cache", "/req", "/must", "/vary", "/head"] {
        assert_eq!(
            origin.hits(path),
            2,
            "{path}: one revalidation, one request"
        );
    }
}

#[tokio::test]
async fn a_bare_304_refreshes_an_object_kept_in_slices() {
    const MIB: usize = 1 << 20;
    let body = Bytes::from(vec![7u8; 9 * MIB]);
    let origin = MockOrigin::start().await;
    origin.route(
        "/big.bin",
        bare_304(
            Reply::file(body.clone())
                .header("cache-control", "max-age=1")
                .header("etag", "\"s1\""),
        ),
    );
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.cache.memory = "64MiB".parse().expect("size");
        c.cache.disk = "128MiB".parse().expect("size");
    })
    .await;
    let url = edge.url("/big.bin");
    let first = get_with(&url, &[("range", "bytes=0-99")]).await;
    assert_eq!(first.status(), 206);
    assert_eq!(origin.hits("/big.bin"), 1, "one slice");
    edge.advance(Duration::from_secs(2));
    let resp = get_with(&url, &[("range", "bytes=10-19")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.x_cache(), "REVALIDATED");
    assert_eq!(&resp.body()[..], &body[10..20]);
    assert_eq!(origin.hits("/big.bin"), 2, "one revalidation, one request");
}

// --- 2. list-valued Age ---

#[tokio::test]
async fn a_list_valued_age_counts_its_first_member() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/aged",
        Reply::ok("old")
            .header("cache-control", "max-age=3600")
            .header("age", "7200, 0"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let first = get(&edge.url("/aged")).await;
    assert_eq!(first.x_cache(), "MISS");
    let second = get(&edge.url("/aged")).await;
    assert_ne!(second.x_cache(), "HIT", "two hours old, fresh for one");
    assert!(second.header("age").is_none_or(|a| a != "0"));
    assert_eq!(origin.hits("/aged"), 2);
}

// --- 3. CDN-Cache-Control and Surrogate-Control, strictly ---

#[tokio::test]
async fn a_malformed_cdn_cache_control_is_ignored_for_cache_control() {
    let origin = MockOrigin::start().await;
    for (path, field, value) in [
        ("/garbage", "cdn-cache-control", "max-age=10000, &&&&&"),
        ("/string", "cdn-cache-control", "max-age=\"10000\""),
        ("/surrogate", "surrogate-control", "max-age=\"10000\""),
        ("/good", "cdn-cache-control", "max-age=10000"),
    ] {
        origin.route(
            path,
            Reply::ok(path)
                .header("cache-control", "max-age=1")
                .header(field, value),
        );
    }
    let edge = TestEdge::start(&origin.url()).await;
    for path in ["/garbage", "/string", "/surrogate", "/good"] {
        assert_eq!(get(&edge.url(path)).await.x_cache(), "MISS", "{path}");
    }
    edge.advance(Duration::from_secs(2));
    for path in ["/garbage", "/string", "/surrogate"] {
        let resp = get(&edge.url(path)).await;
        assert_ne!(resp.x_cache(), "HIT", "{path}: Cache-Control's max-age=1");
        assert_eq!(origin.hits(path), 2, "{path}");
    }
    assert_eq!(get(&edge.url("/good")).await.x_cache(), "HIT");
    assert_eq!(origin.hits("/good"), 1);
}

// --- 4. HTTP-dates in every form ---

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `t` in the RFC 850 form (`Sunday, 06-Nov-94 08:49:37 GMT`) and the
/// asctime form (`Sun Nov  6 08:49:37 1994`), from httpdate's IMF-fixdate.
fn obsolete_forms(t: SystemTime) -> (String, String) {
    let imf = httpdate::fmt_http_date(t);
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let (wday, rest) = imf.split_once(", ").expect("imf");
    let parts: Vec<&str> = rest.split(' ').collect();
    let (day, mon, year, time) = (parts[0], parts[1], parts[2], parts[3]);
    let long = DAYS
        .iter()
        .find(|d| d.starts_with(wday))
        .expect("a weekday");
    let rfc850 = format!("{long}, {day}-{mon}-{} {time} GMT", &year[2..]);
    let day_num: u32 = day.parse().expect("day");
    let asctime = format!("{wday} {mon} {day_num:>2} {time} {year}");
    (rfc850, asctime)
}

#[tokio::test]
async fn expires_in_obsolete_and_lower_case_forms_gives_freshness() {
    let origin = MockOrigin::start().await;
    let later = origin.clock().now() + Duration::from_secs(3600);
    let (rfc850, asctime) = obsolete_forms(later);
    let lower = httpdate::fmt_http_date(later).to_ascii_lowercase();
    let edge = TestEdge::start(&origin.url()).await;
    for (path, expires) in [
        ("/rfc850", rfc850.as_str()),
        ("/asctime", asctime.as_str()),
        ("/lower", lower.as_str()),
        ("/upper", &rfc850.to_ascii_uppercase()),
        ("/invalid", "yesterday"),
    ] {
        origin.route(path, Reply::ok(path).header("expires", expires));
        assert_eq!(get(&edge.url(path)).await.x_cache(), "MISS", "{path}");
    }
    edge.advance(Duration::from_secs(5));
    for path in ["/rfc850", "/asctime", "/lower", "/upper"] {
        assert_eq!(get(&edge.url(path)).await.x_cache(), "HIT", "{path}");
        assert_eq!(origin.hits(path), 1, "{path}");
    }
    // An Expires that is no date at all means already expired.
    assert_ne!(get(&edge.url("/invalid")).await.x_cache(), "HIT");
    assert_eq!(origin.hits("/invalid"), 2);
}

#[tokio::test]
async fn a_lower_case_if_modified_since_is_answered_from_cache() {
    let origin = MockOrigin::start().await;
    let modified = "Tue, 14 Nov 2023 22:13:20 GMT";
    origin.route(
        "/lm",
        Reply::ok("lm")
            .header("cache-control", "max-age=600")
            .header("last-modified", modified),
    );
    let edge = TestEdge::start(&origin.url()).await;
    get(&edge.url("/lm")).await;
    let ims = [("if-modified-since", "tuesday, 14-nov-23 22:13:20 gmt")];
    let resp = get_with(&edge.url("/lm"), &ims).await;
    assert_eq!(resp.status(), 304);
    assert_eq!(origin.hits("/lm"), 1);
}

// --- 5. must-understand ---

#[tokio::test]
async fn must_understand_with_no_store_is_stored_for_a_known_status() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/mu",
        Reply::ok("understood").header("cache-control", "must-understand, no-store, max-age=60"),
    );
    origin.route(
        "/plain",
        Reply::ok("never").header("cache-control", "no-store, max-age=60"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    assert_eq!(get(&edge.url("/mu")).await.x_cache(), "MISS");
    let again = get(&edge.url("/mu")).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(again.text(), "understood");
    assert_eq!(origin.hits("/mu"), 1);
    get(&edge.url("/plain")).await;
    assert_ne!(get(&edge.url("/plain")).await.x_cache(), "HIT");
    assert_eq!(origin.hits("/plain"), 2);
}

// --- 6. If-Modified-Since against the stored Date ---

#[tokio::test]
async fn if_modified_since_without_last_modified_compares_with_date() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/dated",
        Reply::ok("dated")
            .header("cache-control", "max-age=600")
            .header("etag", "\"d1\""),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let first = get(&edge.url("/dated")).await;
    let date = first.header("date").expect("a Date").to_owned();
    let resp = get_with(&edge.url("/dated"), &[("if-modified-since", &date)]).await;
    assert_eq!(resp.status(), 304, "unchanged since its Date");
    assert!(resp.body().is_empty());
    let before = httpdate::fmt_http_date(
        httpdate::parse_http_date(&date).expect("date") - Duration::from_secs(3600),
    );
    let resp = get_with(&edge.url("/dated"), &[("if-modified-since", &before)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text(), "dated");
    assert_eq!(origin.hits("/dated"), 1);
}

// --- 7. Vary: Accept-Language, normalised ---

#[tokio::test]
async fn accept_language_spellings_share_a_variant() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/lang",
        Reply::echo_header("accept-language")
            .header("cache-control", "max-age=600")
            .header("vary", "Accept-Language"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let url = edge.url("/lang");
    let first = get_with(&url, &[("accept-language", "en-US, fr;q=0.8")]).await;
    assert_eq!(first.x_cache(), "MISS");
    for spelling in [
        "fr;q=0.8, en-US",
        "EN-us,FR;q=0.8",
        "  en-us ,  fr ; q=0.8 ",
    ] {
        let resp = get_with(&url, &[("accept-language", spelling)]).await;
        assert_eq!(resp.x_cache(), "HIT", "{spelling:?}");
        assert_eq!(resp.text(), "en-US, fr;q=0.8");
    }
    assert_eq!(origin.hits("/lang"), 1);
    let other = get_with(&url, &[("accept-language", "de")]).await;
    assert_eq!((other.x_cache(), other.text().as_str()), ("MISS", "de"));
}

// --- 8. interim responses ---

/// An origin that answers every request with `102`, then `103 Early Hints`
/// (with a `Link` and a marker header), then a cacheable 200, on a fresh
/// connection each time; counts the requests.
async fn origin_with_interim_responses() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let answer = "HTTP/1.1 102 Processing\r\nx-interim: processing\r\n\r\n\
                              HTTP/1.1 103 Early Hints\r\n\
                              Link: </style.css>; rel=preload; as=style\r\n\
                              x-interim: early-hints\r\n\
                              Cache-Control: no-store\r\n\r\n\
                              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\
                              Cache-Control: max-age=60\r\nConnection: close\r\n\r\nfinal";
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, hits)
}

/// hyper 1.x's server cannot send 1xx responses (see README "Interim
/// responses"), so the edge does not forward them yet; what it must do
/// already is keep them out of the final response and out of the cache:
/// no `Link`, no `x-interim`, and the interim `no-store` must not stop the
/// 200 from being stored.
#[tokio::test]
async fn interim_responses_never_reach_the_final_response_or_the_cache() {
    use std::sync::atomic::Ordering;
    let (addr, hits) = origin_with_interim_responses().await;
    let edge = TestEdge::start(&format!("http://{addr}")).await;
    for (client, path) in [(client::http1(), "/i1"), (client::h2c(), "/i2")] {
        for want in ["MISS", "HIT"] {
            let req = Request::get(edge.url(path)).body(Full::default()).unwrap();
            let resp = fetch(&client, req).await;
            assert_eq!(resp.status(), 200, "{path}");
            assert_eq!(resp.x_cache(), want, "{path}");
            assert_eq!(resp.text(), "final");
            assert_eq!(resp.header("cache-control"), Some("max-age=60"));
            assert!(resp.header("link").is_none(), "{path}: a 103 header leaked");
            assert!(
                resp.header("x-interim").is_none(),
                "{path}: a 1xx header leaked"
            );
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one fetch per path");
}
