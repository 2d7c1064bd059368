//! Soak test: the real `edge` binary, for a few minutes, under mixed load
//! (hits on a hot set, misses on fresh paths, single and multiple ranges,
//! HEADs, POSTs and purges over many client connections) in front of an
//! origin that resets connections, stalls past the edge's timeouts,
//! answers 500/503 and closes mid-body (short Content-Length bodies and
//! cut-off chunked ones).
//!
//! It asserts that every response is correct (status, headers and bytes
//! checked against the origin's deterministic bodies) or a documented error:
//! 502/503/504, the origin's own 5xx passed on, or, while the origin failed
//! an exchange for the same path, a body cut off with the connection (never
//! a complete-looking short one) or a connection closed before the head.
//! Also that the edge does not panic; that its RSS and open descriptors stay
//! bounded and descriptors come back down when it is idle; and that nothing
//! truncated was ever cached: with faults off, every cacheable object the
//! origin served is read again through the edge (first `only-if-cached`,
//! then plainly) and its hash compared with the origin's.
//!
//! Not part of `cargo test`: `scripts/soak` runs it. Knobs (environment):
//! `SOAK_SECS` (120), `SOAK_REQUESTS` (5 000 000), `SOAK_CLIENTS` (64),
//! `SOAK_FAULT_RATE` (0.1 of origin exchanges), `SOAK_FAULTS` (which kinds,
//! e.g. `reset,cut_chunked`; all by default), `SOAK_CHUNKED_206` (1: half
//! the origin's 206s are chunked, like its 200s; 0: always Content-Length),
//! `SOAK_EDGE_LOG` (the edge's `EDGE_LOG`, `warn`; `warn,access=info` adds
//! the access log), `SOAK_SEED` (from the clock; printed, but the
//! interleaving of 64 connections is never reproducible). The edge's log is
//! kept in `$TMPDIR/edge-soak-SEED.log`; failures name the time of day (UTC)
//! to find them there.
//!
//! This file runs it and reports. The modules, leaves first: `model` (the
//! shared sizes, timings and `Rng`), `settings` (the knobs, fault kinds),
//! `catalogue` (the objects), `bodies`, `origin` (the chaotic origin),
//! `conn` (client connections), `outcome` (operations, outcomes, tally),
//! `judges` (the verdicts), `edge_process` (the binary, its RSS and
//! descriptors), `clients` (the load) and `reread` (the final check).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

mod bodies;
mod catalogue;
mod clients;
mod conn;
mod edge_process;
mod judges;
mod model;
mod origin;
mod outcome;
mod reread;
mod settings;

use catalogue::Catalogue;
use clients::{Load, run_clients};
use edge_process::{EdgeProcess, Resources, mib, sample, spawn_sampler};
use model::{FDS_IDLE_SLACK, FDS_PER_CLIENT, KIB, MEMORY, POOL_IDLE, RSS_MARGIN, STALL};
use origin::{Origin, print_origin, start_origin};
use outcome::{Outcome, Tally, print_outcomes};
use reread::{reread_all, reread_order};
use settings::Settings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with scripts/soak"]
async fn soak_mixed_load_against_a_chaotic_origin() {
    let settings = Settings::from_env();
    let cat = Arc::new(Catalogue::default());
    let origin = Arc::new(Origin::new(cat.clone(), &settings));
    let origin_addr = start_origin(origin.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut edge = EdgeProcess::spawn(origin_addr, dir.path());
    edge.wait_ready().await;
    let pid = edge.pid();
    let (idle_rss, idle_fds) = sample(pid).expect("edge is sampled");
    let faults: Vec<&str> = settings.faults.iter().map(|f| f.as_str()).collect();
    println!(
        "soak: {} s, {} connections, fault rate {} {faults:?}, chunked 206s {}, seed {}; \
         edge pid {pid}, idle RSS {:.1} MiB, {idle_fds} fds",
        settings.secs,
        settings.clients,
        settings.fault_rate,
        settings.chunked_206,
        settings.seed,
        mib(idle_rss)
    );

    // The load, with the edge sampled throughout.
    let load = Arc::new(Load {
        cat: cat.clone(),
        origin: origin.clone(),
        edge: edge.listen,
        admin: edge.admin,
        tally: Tally::default(),
        stop: AtomicBool::new(false),
        started: AtomicU64::new(0),
        max_requests: settings.max_requests,
        next_cold: AtomicU64::new(0),
        purged: Mutex::default(),
    });
    let begin = Instant::now();
    let (samples, sampler) = spawn_sampler(pid, begin);
    let elapsed = run_clients(&load, &settings, begin).await;

    // Faults off; let stalled exchanges and background fills finish, then
    // read everything cacheable again.
    origin.faults_on.store(false, Ordering::Relaxed);
    tokio::time::sleep(STALL + Duration::from_secs(1)).await;
    let served = origin.served.lock().expect("served lock").clone();
    let paths = reread_order(served.into_iter().collect());
    let before = origin.requests.load(Ordering::Relaxed);
    let cached = reread_all(load.clone(), paths.clone(), 16, true).await;
    // Background refreshes of stale objects may reach the origin; anything
    // else asked of it during this pass is a slice fetched for a partly
    // stored object despite only-if-cached.
    let origin_during_cached = origin.requests.load(Ordering::Relaxed) - before;
    let reread = reread_all(load.clone(), paths.clone(), 16, false).await;

    // Every client connection is closed now; idle upstream connections go
    // after POOL_IDLE. Descriptors must come back to about the idle count.
    tokio::time::sleep(POOL_IDLE + Duration::from_secs(3)).await;
    let after = sample(pid);
    sampler.abort();
    let resources = Resources {
        idle_rss,
        idle_fds,
        rss_bound: idle_rss + (MEMORY + RSS_MARGIN) / KIB,
        fds_bound: idle_fds + FDS_PER_CLIENT * settings.clients + 64,
        samples: samples.lock().expect("samples lock").clone(),
        after,
    };
    let alive = matches!(edge.child.try_wait(), Ok(None));
    let exit = edge.terminate().await;
    let logs = edge.logs();
    let panics: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("panicked"))
        .take(5)
        .collect();

    // ---- summary
    let counts = load.tally.counts.lock().expect("tally lock").clone();
    let total: u64 = counts.values().sum();
    println!("\n=== soak summary ===");
    println!(
        "requests {total} in {:.1} s: {:.0}/s ({} connections)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        settings.clients
    );
    print_outcomes(&counts);
    println!("all: {}", load.tally.brief());
    print_origin(&origin);
    resources.print();
    println!(
        "final re-read of {} cacheable objects, faults off:\n  from cache (only-if-cached): {} \
         [origin asked {origin_during_cached} times meanwhile]\n  then all through the edge:    {}",
        paths.len(),
        cached.brief(),
        reread.brief()
    );
    let warn_lines = logs.lines().filter(|l| l.contains("WARN")).count();
    let error_lines: Vec<&str> = logs.lines().filter(|l| l.contains("ERROR")).collect();
    println!(
        "edge log: {warn_lines} WARN, {} ERROR lines; exit {exit:?}",
        error_lines.len()
    );
    for line in error_lines.iter().take(5) {
        println!("  {line}");
    }
    for note in load.tally.notes.lock().expect("tally lock").iter() {
        println!("  older than purge: {note}");
    }
    let failures = load.tally.failures.lock().expect("tally lock").clone();
    let reread_failures: Vec<String> = [&cached, &reread]
        .iter()
        .flat_map(|t| t.failures.lock().expect("tally lock").clone())
        .collect();
    for failure in failures.iter().chain(&reread_failures) {
        println!("  {failure}");
    }

    // ---- verdicts
    let kept = std::env::temp_dir().join(format!("edge-soak-{}.log", settings.seed));
    let _ = std::fs::write(&kept, &logs);
    let kept = kept.display();
    println!("edge log kept in {kept}");
    assert!(
        panics.is_empty(),
        "the edge panicked: {panics:?} (log: {kept})"
    );
    assert!(alive, "the edge process died during the soak (log: {kept})");
    assert!(
        exit.is_some_and(|s| s.success()),
        "the edge did not shut down cleanly on SIGTERM: {exit:?} (log: {kept})"
    );
    assert_eq!(
        load.tally.failed.load(Ordering::Relaxed),
        0,
        "responses neither correct nor a documented error (first: {failures:#?}; log: {kept})"
    );
    assert_eq!(
        cached.failed.load(Ordering::Relaxed) + reread.failed.load(Ordering::Relaxed),
        0,
        "objects read again with faults off were wrong (first: {reread_failures:#?})"
    );
    assert!(
        counts.keys().any(|(o, _)| *o == Outcome::Ok),
        "no request succeeded"
    );
    assert!(
        resources.peak_rss() <= resources.rss_bound,
        "edge RSS peaked at {:.1} MiB, over {:.1} MiB",
        mib(resources.peak_rss()),
        mib(resources.rss_bound)
    );
    assert!(
        resources.peak_fds() <= resources.fds_bound,
        "edge had {} descriptors open, over {}",
        resources.peak_fds(),
        resources.fds_bound
    );
    let (_, fds_after) = resources.after.expect("edge sampled after the load");
    assert!(
        fds_after <= idle_fds + FDS_IDLE_SLACK,
        "descriptors leak: {fds_after} open when idle after the soak, {idle_fds} before"
    );
}
