use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;
use crate::store::StoreConfig;

async fn fills(dir: &std::path::Path, window: usize) -> (Arc<Fills>, Store) {
    fills_with(dir, window, 256 << 20).await
}

async fn fills_with(
    dir: &std::path::Path,
    window: usize,
    total_window: usize,
) -> (Arc<Fills>, Store) {
    let mut cfg = StoreConfig::new(dir.to_owned(), 32 << 20, 64 << 20);
    cfg.chunk_size = 4;
    cfg.inline_max = 4;
    let store = Store::open(&cfg, None).await.unwrap();
    let config = FillConfig {
        window,
        total_window,
        wait_for_head: Duration::from_millis(300),
        hit_for_pass: Duration::from_secs(60),
    };
    (
        Arc::new(Fills::new(store.clone(), config, Clock::system())),
        store,
    )
}

fn key() -> CacheKey {
    CacheKey::for_request(&Method::GET, "http", "x", "/f").unwrap()
}

fn writer(store: &Store, vary: Vec<HeaderName>, request: &HeaderMap) -> ObjectWriter {
    let meta = ObjectMeta {
        vary,
        ..ObjectMeta::fresh(HeaderMap::new(), Bytes::new(), Duration::from_secs(60))
    };
    ObjectWriter::new(store.clone(), key(), request, meta, 1 << 20)
}

async fn read_all(mut reader: FillReader) -> Result<Vec<u8>, FillError> {
    let mut out = Vec::new();
    while let Some(bytes) = reader.next().await? {
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

fn leader(join: Join) -> FillLeader {
    match join {
        Join::Leader(l) => l,
        other => panic!("expected to lead, got {other:?}"),
    }
}

fn waiter(join: Join) -> FillWaiter {
    match join {
        Join::Waiter(w) => w,
        other => panic!("expected to wait, got {other:?}"),
    }
}

#[tokio::test]
async fn readers_stream_while_the_fill_arrives_and_late_joiners_start_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (fills, store) = fills(dir.path(), 1 << 20).await;
    let lead = leader(fills.join(key()));
    let early = waiter(fills.join(key()));
    let req = HeaderMap::new();
    let mut feeder = lead.publish(writer(&store, vec![], &req));
    let mut own = feeder.reader();
    let early = early.reader(&req).await.expect("shares the fill");

    feeder.push(Bytes::from_static(b"hello "));
    assert_eq!(
        &own.next().await.unwrap().unwrap()[..],
        b"hello ",
        "streams before the end"
    );
    let late = waiter(fills.join(key()))
        .reader(&req)
        .await
        .expect("joins late");
    feeder.push(Bytes::from_static(b"world"));
    feeder.finish();
    assert_eq!(read_all(own).await.unwrap(), b"world");
    assert_eq!(read_all(early).await.unwrap(), b"hello world");
    assert_eq!(read_all(late).await.unwrap(), b"hello world");
    assert_eq!(fills.in_flight(), 0);
    // The next request finds it stored: a new fill would lead again.
    assert!(
        crate::object::lookup(&store, &key(), &req)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_reader_behind_the_window_reads_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    // A window of 8 bytes (two 4-byte chunks).
    let (fills, store) = fills(dir.path(), 8).await;
    let req = HeaderMap::new();
    let mut feeder = leader(fills.join(key())).publish(writer(&store, vec![], &req));
    let slow = feeder.reader();
    for piece in ["abcd", "efgh", "ijkl", "mnop", "qr"] {
        feeder.push(Bytes::from(piece));
    }
    feeder.finish();
    assert_eq!(read_all(slow).await.unwrap(), b"abcdefghijklmnopqr");
}

#[tokio::test]
async fn an_origin_failure_fails_every_reader_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (fills, store) = fills(dir.path(), 1 << 20).await;
    let req = HeaderMap::new();
    let mut feeder = leader(fills.join(key())).publish(writer(&store, vec![], &req));
    let reader = feeder.reader();
    feeder.push(Bytes::from_static(b"part"));
    drop(feeder);
    assert!(matches!(read_all(reader).await, Err(FillError::Failed)));
    assert!(
        crate::object::lookup(&store, &key(), &req)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        matches!(fills.join(key()), Join::Leader(_)),
        "the next request refetches"
    );
}

#[tokio::test]
async fn refused_responses_release_waiters_and_skip_the_wait_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let (fills, _store) = fills(dir.path(), 1 << 20).await;
    let lead = leader(fills.join(key()));
    let wait = waiter(fills.join(key()));
    lead.refuse();
    assert!(wait.reader(&HeaderMap::new()).await.is_none());
    assert!(matches!(fills.join(key()), Join::Bypass));
    fills.clear_pass(&key());
    assert!(matches!(fills.join(key()), Join::Leader(_)));
}

#[tokio::test]
async fn a_leader_that_fails_before_a_head_shares_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (fills, _store) = fills(dir.path(), 1 << 20).await;
    let lead = leader(fills.join(key()));
    let wait = waiter(fills.join(key()));
    lead.fail(http::StatusCode::GATEWAY_TIMEOUT);
    assert!(matches!(
        wait.wait(&HeaderMap::new()).await,
        Waited::Failed(s) if s == 504
    ));
    assert!(
        matches!(fills.join(key()), Join::Leader(_)),
        "no hit-for-pass after an error"
    );
}

#[tokio::test]
async fn a_leader_that_goes_away_hands_the_fetch_to_a_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let (fills, _store) = fills(dir.path(), 1 << 20).await;
    let lead = leader(fills.join(key()));
    let first = waiter(fills.join(key()));
    let second = waiter(fills.join(key()));
    drop(lead);
    assert!(matches!(
        first.wait(&HeaderMap::new()).await,
        Waited::Rejoin
    ));
    assert!(matches!(
        second.wait(&HeaderMap::new()).await,
        Waited::Rejoin
    ));
    // Rejoining: one leads, the other waits for it.
    let _new_leader = leader(fills.join(key()));
    let _ = waiter(fills.join(key()));
}

#[tokio::test]
async fn a_released_fill_sends_waiters_alone_without_a_mark() {
    let dir = tempfile::tempdir().unwrap();
    let (fills, _store) = fills(dir.path(), 1 << 20).await;
    let lead = leader(fills.join(key()));
    let wait = waiter(fills.join(key()));
    lead.release();
    assert!(matches!(wait.wait(&HeaderMap::new()).await, Waited::Alone));
    assert!(matches!(fills.join(key()), Join::Leader(_)));
}

#[tokio::test]
async fn waiters_give_up_after_the_head_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (fills, _store) = fills(dir.path(), 1 << 20).await;
    let _lead = leader(fills.join(key()));
    // The timeout is the point: tokio's monotonic clock.
    let started = tokio::time::Instant::now();
    assert!(
        waiter(fills.join(key()))
            .reader(&HeaderMap::new())
            .await
            .is_none()
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn a_varying_response_is_shared_only_with_matching_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (fills, store) = fills(dir.path(), 1 << 20).await;
    let lang = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert("accept-language", HeaderValue::from_static(v));
        h
    };
    let lead = leader(fills.join(key()));
    let same = waiter(fills.join(key()));
    let other = waiter(fills.join(key()));
    let feeder = lead.publish(writer(
        &store,
        vec![HeaderName::from_static("accept-language")],
        &lang("en"),
    ));
    assert!(same.reader(&lang("en")).await.is_some());
    assert!(
        other.reader(&lang("fr")).await.is_none(),
        "a French reader got the English variant"
    );
    feeder.finish();
}

#[tokio::test]
async fn unique_uncacheable_urls_do_not_grow_the_pass_list_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path().to_owned(), 32 << 20, 64 << 20);
    cfg.chunk_size = 4;
    let store = Store::open(&cfg, None).await.unwrap();
    let clock = Clock::adjustable();
    let fills = Arc::new(Fills::new(
        store,
        FillConfig {
            hit_for_pass: Duration::from_millis(1),
            ..FillConfig::default()
        },
        clock.clone(),
    ));
    for i in 0..20_000 {
        let key = CacheKey::for_request(&Method::GET, "http", "x", &format!("/u?{i}")).unwrap();
        leader(fills.join(key)).refuse();
        if i % 1000 == 0 {
            clock.advance(Duration::from_millis(2));
        }
    }
    assert!(
        fills.pass_marks() < 5000,
        "{} marks kept",
        fills.pass_marks()
    );
}

#[tokio::test]
async fn windows_shrink_past_the_shared_budget_and_are_given_back() {
    let dir = tempfile::tempdir().unwrap();
    // Chunks of 4 bytes; each fill may keep 64, all together 100.
    let (fills, store) = fills_with(dir.path(), 64, 100).await;
    let other = |i: u8| CacheKey::for_request(&Method::GET, "http", "x", &format!("/{i}")).unwrap();
    let mut feeders = Vec::new();
    let mut readers = Vec::new();
    for i in 0..4u8 {
        let lead = leader(fills.join(other(i)));
        let meta = ObjectMeta::fresh(HeaderMap::new(), Bytes::new(), Duration::from_secs(60));
        let w = ObjectWriter::new(store.clone(), other(i), &HeaderMap::new(), meta, 1 << 20);
        let mut feeder = lead.publish(w);
        readers.push(feeder.reader());
        for _ in 0..20 {
            feeder.push(Bytes::from_static(b"abcd"));
        }
        feeders.push(feeder);
    }
    // Four fills of 80 bytes: without the budget, 4 × 64 held.
    assert!(
        fills.window_bytes() <= 100 + 64,
        "held {} bytes",
        fills.window_bytes()
    );
    for feeder in feeders {
        feeder.finish();
    }
    // Readers that fell behind still get every byte, from the store.
    for reader in readers {
        assert_eq!(read_all(reader).await.unwrap().len(), 80);
    }
    assert_eq!(fills.window_bytes(), 0, "all given back");
}

#[tokio::test]
async fn a_fill_that_outgrows_the_size_limit_takes_no_new_readers() {
    let dir = tempfile::tempdir().unwrap();
    let (fills, store) = fills(dir.path(), 1 << 20).await;
    let lead = leader(fills.join(key()));
    let meta = ObjectMeta::fresh(HeaderMap::new(), Bytes::new(), Duration::from_secs(60));
    let w = ObjectWriter::new(store.clone(), key(), &HeaderMap::new(), meta, 8);
    let mut feeder = lead.publish(w);
    let early = feeder.reader();
    feeder.push(Bytes::from_static(b"0123456789"));
    assert!(matches!(fills.join(key()), Join::Bypass));
    feeder.finish();
    assert_eq!(read_all(early).await.unwrap(), b"0123456789");
}

#[tokio::test]
async fn a_detached_fill_streams_to_its_readers_but_is_not_stored_or_joined() {
    let dir = tempfile::tempdir().unwrap();
    let (fills, store) = fills(dir.path(), 1 << 20).await;
    let req = HeaderMap::new();
    let mut feeder = leader(fills.join(key())).publish(writer(&store, vec![], &req));
    let own = feeder.reader();
    let late = waiter(fills.join(key()))
        .reader(&req)
        .await
        .expect("shares");
    fills.detach(&key(), &late);
    let next = leader(fills.join(key()));
    feeder.push(Bytes::from_static(b"old bytes"));
    feeder.finish();
    assert_eq!(read_all(own).await.unwrap(), b"old bytes");
    assert_eq!(read_all(late).await.unwrap(), b"old bytes");
    assert!(
        crate::object::lookup(&store, &key(), &req)
            .await
            .unwrap()
            .is_none(),
        "the detached fill stored its body"
    );
    // The fill that replaced it is untouched by the old one's end.
    assert!(
        matches!(fills.join(key()), Join::Waiter(_)),
        "the new fill was retired with the old one"
    );
    drop(next);
}
