//! `ObjectMeta::decode` on arbitrary bytes: what the store reads back from
//! disk, where a torn write or a flipped bit must be an error, never a
//! panic.
//!
//! Properties:
//! - decoding never panics;
//! - decode → encode → decode gives the same meta, and encoding it again
//!   gives the same bytes (the encoding is canonical);
//! - every proper prefix of an encoding is `Truncated`;
//! - a decoded meta can be sized and judged by the policy at any time
//!   without a panic, and is fresh only while younger than its lifetime.
#![no_main]

use std::time::Duration;

use cache::CacheControl;
use cache::meta::{DecodeError, ObjectMeta};
use cache::policy::{self, Reuse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = ObjectMeta::decode(data) else {
        return;
    };
    let mut bytes = Vec::new();
    meta.encode(&mut bytes);
    let again = ObjectMeta::decode(&bytes).expect("an encoding decodes");
    assert_eq!(again, meta);
    let mut bytes2 = Vec::new();
    again.encode(&mut bytes2);
    assert_eq!(bytes, bytes2, "encoding is not canonical");
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        assert_eq!(
            ObjectMeta::decode(&bytes[..cut]),
            Err(DecodeError::Truncated),
            "cut at {cut} of {}",
            bytes.len()
        );
    }

    let _ = (meta.memory_size(), meta.estimated_size());
    let _ = (
        meta.body.len(),
        meta.body.chunk_count(),
        meta.body.is_empty(),
    );

    // Judged at a few moments around its response time.
    let req = CacheControl::default();
    let stale_ok = CacheControl::parse("max-stale, stale-if-error=60");
    for offset in [0, 1, 3_600, 86_400 * 365 * 100] {
        let Some(now) = meta.response_time.checked_add(Duration::from_secs(offset)) else {
            continue;
        };
        let age = policy::current_age(&meta.policy, meta.response_time, now);
        assert!(age >= meta.policy.corrected_initial_age);
        let reuse = policy::evaluate(&meta.policy, meta.response_time, &req, now);
        if reuse == Reuse::Fresh {
            assert!(age < meta.policy.lifetime, "fresh at age {age:?}");
        }
        let _ = policy::evaluate(&meta.policy, meta.response_time, &stale_ok, now);
        let _ = policy::stale_if_error_allows(&meta.policy, meta.response_time, &stale_ok, now);
    }
});
