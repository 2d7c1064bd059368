//! Waiting for what a test cannot be told about directly (a counter in
//! `/metrics`, an object being stored after its client already has it):
//! poll a condition often, up to a deadline, and fail naming what never
//! happened. Where the harness can say when something happened (the mock
//! origin's [`wait_for_hits`](crate::MockOrigin::wait_for_hits), a
//! [`Gate`](crate::Gate)), tests use that instead.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long [`eventually`] waits.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(5);

/// How often conditions are checked: often enough that a test does not
/// idle, rarely enough that polling `/metrics` costs little.
const INTERVAL: Duration = Duration::from_millis(10);

/// Waits until `cond` holds, at most [`DEFAULT_LIMIT`].
pub async fn eventually(what: &str, cond: impl AsyncFnMut() -> bool) {
    eventually_within(what, DEFAULT_LIMIT, cond).await;
}

/// Waits until `cond` holds, at most `limit`.
pub async fn eventually_within(what: &str, limit: Duration, mut cond: impl AsyncFnMut() -> bool) {
    poll_until(what, limit, async || {
        if cond().await { Ok(()) } else { Err("not yet") }
    })
    .await;
}

/// Calls `f` until it returns `Ok`, at most `limit`, and returns that
/// value. `Err` carries what was seen instead, shown if time runs out.
pub async fn poll_until<T, E: Display>(
    what: &str,
    limit: Duration,
    mut f: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(INTERVAL).await;
    }
}
