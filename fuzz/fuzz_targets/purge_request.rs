//! The purge API's request parser (`purge_api::api::parse_request`) and
//! what it hands on: the record forwarded to peers and the prefixes of the
//! rule index. The input is a `POST /purge` body.
//!
//! Properties:
//! - every refusal is a 400 with a message;
//! - an accepted record names something, no list longer than allowed,
//!   one URL key per URL, equal to the key of that URL;
//! - hosts and prefixes are already normal: parsing them again changes
//!   nothing;
//! - the record survives its JSON form, and a peer accepts the forwarded
//!   record unchanged (what one node accepts, every node accepts alike).
#![no_main]

use cache::KeyRules;
use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use purge_api::PurgeRecord;
use purge_api::api::{check_forwarded, parse_host, parse_prefix, parse_request, url_key};
use purge_api::rules::path_prefixes;

const MAX_ITEMS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let plain = KeyRules::default();
    let tuned = KeyRules {
        ignore_query_params: vec!["utm_source".into()],
        sort_query: true,
        ignore_scheme: true,
    };
    for rules in [&plain, &tuned] {
        match parse_request(data, rules, MAX_ITEMS) {
            Ok(record) => check_record(record, rules),
            Err(e) => {
                assert_eq!(e.status, StatusCode::BAD_REQUEST);
                assert!(!e.message.is_empty());
            }
        }
    }
});

fn check_record(mut record: PurgeRecord, rules: &KeyRules) {
    let lists = [
        record.urls.len(),
        record.prefixes.len(),
        record.hosts.len(),
        record.tags.len(),
    ];
    assert!(lists.iter().any(|n| *n > 0), "accepted an empty purge");
    assert!(lists.iter().all(|n| *n <= MAX_ITEMS), "{lists:?}");
    assert!(!record.all, "a client can never purge everything");
    assert_eq!(record.url_keys.len(), record.urls.len());
    for (url, key) in record.urls.iter().zip(&record.url_keys) {
        assert_eq!(url_key(url, rules).map(|k| k.to_hex()).as_ref(), Ok(key));
    }
    for host in &record.hosts {
        assert_eq!(parse_host(host).as_ref(), Ok(host), "host not normal");
        assert_eq!(*host, host.to_ascii_lowercase());
    }
    for (host, path) in &record.prefixes {
        assert_eq!(
            parse_host(host).as_ref(),
            Ok(host),
            "prefix host not normal"
        );
        assert!(path.starts_with('/'), "{path:?}");
        // The rule index looks a prefix up by the prefixes of a request's
        // path: the stored form must be one of its own prefixes.
        assert_eq!(path_prefixes(path).last(), Some(path.as_str()));
        let again = parse_prefix(&format!("{host}{path}"));
        assert_eq!(again, Ok((host.clone(), path.clone())), "prefix not normal");
    }
    for tag in &record.tags {
        assert!(!tag.is_empty() && tag.len() <= 1024);
    }

    // As forwarded to a peer: an id, JSON over the wire, checked again.
    record.id = "fuzz-0".into();
    record.at = 1_700_000_000_000;
    let wire = serde_json::to_vec(&record).expect("serialize");
    let received: PurgeRecord = serde_json::from_slice(&wire).expect("deserialize");
    assert_eq!(received, record);
    assert_eq!(check_forwarded(received, rules, MAX_ITEMS), Ok(record));
}
