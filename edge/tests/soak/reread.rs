//! The final check, with faults off: every cacheable object the origin
//! served is read again through the edge and must hash as the origin's,
//! so nothing truncated was ever cached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header;

use crate::clients::Load;
use crate::conn::{Conn, get_request, receive};
use crate::judges::judge_full;
use crate::model::{HOST, REQUEST_TIMEOUT};
use crate::outcome::{Op, Outcome, Tally};

/// With faults off, every cacheable object the origin ever served, read
/// whole through the edge: cached copies must hash as the origin's. With
/// `only_if_cached` the edge answers from its cache or 504, so reading
/// does not evict what is still to be read.
pub async fn reread_all(
    load: Arc<Load>,
    paths: Vec<String>,
    workers: usize,
    only_if_cached: bool,
) -> Tally {
    let paths = Arc::new(paths);
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (load, paths, next, tally) = (load.clone(), paths.clone(), next.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(load.edge);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(path) = paths.get(i) else { break };
                let make = || {
                    let mut req = get_request(path, HOST);
                    if only_if_cached {
                        let value = header::HeaderValue::from_static("only-if-cached");
                        req.headers_mut().insert(header::CACHE_CONTROL, value);
                    }
                    req
                };
                let run = async {
                    match conn.send(&make).await {
                        Ok(resp) => {
                            let got = receive(resp).await;
                            if !got.complete {
                                conn.sender = None;
                            }
                            let verdict = if only_if_cached && got.status == 504 {
                                (Outcome::NotCached, String::new())
                            } else {
                                judge_full(&load.cat, path, &got)
                            };
                            (verdict, got.x_cache().to_owned())
                        }
                        Err(err) => ((Outcome::NoHead, format!("{err:?}")), "-".to_owned()),
                    }
                };
                let (verdict, x_cache) = match tokio::time::timeout(REQUEST_TIMEOUT, run).await {
                    Ok(done) => done,
                    Err(_) => ((Outcome::Hang, String::new()), "-".to_owned()),
                };
                // With faults off, a documented error is a failure too.
                let verdict = match verdict.0 {
                    Outcome::Ok | Outcome::NotCached => verdict,
                    other if other.is_failure() => verdict,
                    other => (
                        Outcome::WrongStatus,
                        format!("{} with faults off, x-cache {x_cache}", other.as_str()),
                    ),
                };
                tally.record(Op::Hit, path, verdict, &x_cache);
            }
        }));
    }
    for task in tasks {
        task.await.expect("re-read worker");
    }
    Arc::into_inner(tally).expect("re-read workers done")
}

/// Hot objects first, then the newest misses: what is likeliest cached is
/// read before the second pass's misses evict it.
pub fn reread_order(mut paths: Vec<String>) -> Vec<String> {
    paths.sort_by_key(|p| {
        let n: u64 = p
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match p.starts_with("/cold/") {
            true => (1, u64::MAX - n),
            false => (0, n),
        }
    });
    paths
}
