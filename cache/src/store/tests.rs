use std::time::Duration;

use http::{HeaderMap, Method};

use super::*;
use crate::meta::BodyLayout;

fn key(path: &str) -> CacheKey {
    CacheKey::for_request(&Method::GET, "http", "example.com", path).unwrap()
}

fn meta(body: BodyLayout) -> ObjectMeta {
    ObjectMeta {
        body,
        ..ObjectMeta::fresh(HeaderMap::new(), Bytes::new(), Duration::from_secs(60))
    }
}

/// Every insertion on disk: these tests are about the disk tier itself.
fn config(dir: &std::path::Path, memory: usize) -> StoreConfig {
    StoreConfig {
        disk_admission: DiskAdmission::All,
        ..StoreConfig::new(dir.to_owned(), memory, 64 << 20)
    }
}

/// 16 MiB of memory and 64 MiB of disk (16 blocks of 4 MiB), objects on
/// disk at their `min_requests`th lookup.
fn frequency_config(dir: &std::path::Path, min_requests: u8) -> StoreConfig {
    StoreConfig {
        disk_admission: DiskAdmission::Frequency { min_requests },
        ..StoreConfig::new(dir.to_owned(), 16 << 20, 64 << 20)
    }
}

async fn object(store: &Store, k: &CacheKey) -> Option<(Arc<ObjectMeta>, Tier)> {
    match store.get(k).await.unwrap() {
        Some((Entry::Object(m), tier)) => Some((m, tier)),
        _ => None,
    }
}

#[tokio::test]
async fn objects_chunks_and_vary_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path(), 16 << 20), None)
        .await
        .unwrap();
    let k = key("/a");
    assert!(store.get(&k).await.unwrap().is_none());

    store.put_chunk(
        &k,
        7,
        0,
        Bytes::from_static(b"chunk zero"),
        Placement::BothTiers,
    );
    store.put_object(
        &k,
        meta(BodyLayout::Chunked {
            object_id: 7,
            len: 10,
            chunk_size: 1 << 20,
        }),
    );
    let (m, tier) = object(&store, &k).await.unwrap();
    assert_eq!(tier, Tier::Memory);
    assert_eq!(m.body.len(), 10);
    assert_eq!(
        &store.get_chunk(&k, 7, 0).await.unwrap().unwrap()[..],
        b"chunk zero"
    );
    assert!(
        store.get_chunk(&k, 8, 0).await.unwrap().is_none(),
        "other object id"
    );

    let v = key("/v");
    store.put_vary(&v, vec![HeaderName::from_static("accept-encoding")]);
    match store.get(&v).await.unwrap() {
        Some((Entry::Vary(names), _)) => {
            assert_eq!(&names[..], [HeaderName::from_static("accept-encoding")])
        }
        other => panic!("expected a vary record, got {other:?}"),
    }
    store.remove(&k);
    assert!(store.get(&k).await.unwrap().is_none());
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_restart_keeps_objects_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&config(dir.path(), 16 << 20), None)
            .await
            .unwrap();
        store.put_object(
            &key("/kept"),
            meta(BodyLayout::Inline(Bytes::from_static(b"kept"))),
        );
        store.put_object(
            &key("/removed"),
            meta(BodyLayout::Inline(Bytes::from_static(b"gone"))),
        );
        store.put_chunk(
            &key("/big"),
            1,
            0,
            Bytes::from(vec![9u8; 1 << 20]),
            Placement::BothTiers,
        );
        // Let the disk writes happen before the removal is logged.
        tokio::time::sleep(Duration::from_millis(200)).await;
        store.remove(&key("/removed"));
        store.close().await.unwrap();
    }
    let store = Store::open(&config(dir.path(), 16 << 20), None)
        .await
        .unwrap();
    let (m, tier) = object(&store, &key("/kept"))
        .await
        .expect("object survives a restart");
    assert_eq!(tier, Tier::Disk);
    assert_eq!(m.body, BodyLayout::Inline(Bytes::from_static(b"kept")));
    assert!(
        object(&store, &key("/removed")).await.is_none(),
        "a removal survives a restart"
    );
    let chunk = store
        .get_chunk(&key("/big"), 1, 0)
        .await
        .unwrap()
        .expect("chunk survives");
    assert_eq!(chunk.len(), 1 << 20);
    store.close().await.unwrap();
}

#[tokio::test]
async fn objects_beyond_the_memory_budget_come_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    // 2 MiB of memory for 16 objects of 256 KiB.
    let store = Store::open(&config(dir.path(), 2 << 20), None)
        .await
        .unwrap();
    for i in 0..16u64 {
        store.put_chunk(
            &key("/many"),
            i,
            0,
            Bytes::from(vec![i as u8; 256 << 10]),
            Placement::BothTiers,
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let chunk = store
        .get_chunk(&key("/many"), 0, 0)
        .await
        .unwrap()
        .expect("first chunk on disk");
    assert!(chunk.iter().all(|b| *b == 0));
    store.close().await.unwrap();
}

/// A binary upgrade: the old process releases the disk while the new one
/// opens the same directory. Everything stored before the release is on
/// disk for the new owner; the old one keeps its memory tier, and what it
/// stores afterwards stays in its memory only.
#[tokio::test]
async fn a_released_disk_is_the_next_owners_and_memory_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let old = Store::open(&config(dir.path(), 16 << 20), None)
        .await
        .unwrap();
    old.put_object(
        &key("/before"),
        meta(BodyLayout::Inline(Bytes::from_static(b"before"))),
    );
    old.put_chunk(
        &key("/big"),
        3,
        0,
        Bytes::from(vec![7u8; 1 << 20]),
        Placement::BothTiers,
    );
    // No sleep: the release itself waits for the queued writes.
    old.release_disk().await.unwrap();
    assert!(old.disk_released());
    let (_, tier) = object(&old, &key("/before"))
        .await
        .expect("still in memory");
    assert_eq!(tier, Tier::Memory);
    old.put_object(
        &key("/after"),
        meta(BodyLayout::Inline(Bytes::from_static(b"after"))),
    );
    old.put_chunk(
        &key("/after"),
        4,
        0,
        Bytes::from_static(b"tail"),
        Placement::BothTiers,
    );
    assert!(object(&old, &key("/after")).await.is_some());
    assert_eq!(
        &old.get_chunk(&key("/after"), 4, 0).await.unwrap().unwrap()[..],
        b"tail"
    );

    let new = Store::open(&config(dir.path(), 16 << 20), None)
        .await
        .unwrap();
    let (m, tier) = object(&new, &key("/before"))
        .await
        .expect("stored before the release: on disk for the new owner");
    assert_eq!(tier, Tier::Disk);
    assert_eq!(m.body, BodyLayout::Inline(Bytes::from_static(b"before")));
    assert_eq!(
        new.get_chunk(&key("/big"), 3, 0)
            .await
            .unwrap()
            .map(|c| c.len()),
        Some(1 << 20)
    );
    assert!(
        object(&new, &key("/after")).await.is_none(),
        "stored after the release: the old process's memory only"
    );
    old.close().await.unwrap();
    drop(old);
    // The old process closing and going away writes nothing more.
    new.put_object(
        &key("/new"),
        meta(BodyLayout::Inline(Bytes::from_static(b"new"))),
    );
    new.close().await.unwrap();
}

#[tokio::test]
async fn peeking_reads_the_disk_without_promoting_into_memory() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("/peeked");
    {
        let store = Store::open(&config(dir.path(), 16 << 20), None)
            .await
            .unwrap();
        store.put_object(&k, meta(BodyLayout::Inline(Bytes::from_static(b"x"))));
        store.record_variant(
            &k,
            Variant {
                key: key("/peeked#variant"),
                selector: vec![(HeaderName::from_static("accept-language"), None)],
            },
        );
        let (_, tiers) = store.peek(&k).await.unwrap().unwrap();
        assert_eq!(tiers[0], Tier::Memory);
        // The first variant of a URL reaches the disk from a task.
        let index = StoreKey(*k.variant_index().as_bytes());
        for _ in 0..200 {
            if let Ok(foyer::Load::Entry { .. } | foyer::Load::Piece { .. }) =
                store.cache.storage().load(&index).await
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store.close().await.unwrap();
    }
    // After a restart the memory tier is empty and the disk holds both.
    let store = Store::open(&config(dir.path(), 16 << 20), None)
        .await
        .unwrap();
    assert_eq!(store.memory_usage().entries, 0);
    let (entry, tiers) = store.peek(&k).await.unwrap().unwrap();
    assert!(matches!(entry, Entry::Object(_)));
    assert_eq!(tiers, [Tier::Disk]);
    assert_eq!(store.variants(&k).await.unwrap().len(), 1);
    assert_eq!(store.memory_usage().entries, 0, "peeking promoted nothing");
    // A lookup does promote: the contrast the inspector avoids.
    assert!(object(&store, &k).await.is_some());
    assert_eq!(store.memory_usage().entries, 1);
    let (_, tiers) = store.peek(&k).await.unwrap().unwrap();
    assert_eq!(tiers, [Tier::Memory, Tier::Disk]);
    // A variant recorded while the index is only on disk joins it there
    // (merged by a task: the fill does not wait for the read).
    store.record_variant(
        &k,
        Variant {
            key: key("/peeked#other"),
            selector: vec![],
        },
    );
    let mut listed = 0;
    for _ in 0..200 {
        listed = store.variants(&k).await.unwrap().len();
        if listed == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(listed, 2, "the variant from before the restart is kept");
    store.close().await.unwrap();
}

/// Whether the disk tier holds `k` (its meta).
async fn on_disk(store: &Store, k: &CacheKey) -> bool {
    store.cache.storage().wait().await;
    matches!(
        store.cache.storage().load(&StoreKey(*k.as_bytes())).await,
        Ok(foyer::Load::Entry { .. } | foyer::Load::Piece { .. })
    )
}

#[tokio::test]
async fn frequency_admission_writes_an_object_to_disk_on_its_nth_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = frequency_config(dir.path(), 2);
    let store = Store::open(&config, None).await.unwrap();
    let chunked = |id| BodyLayout::Chunked {
        object_id: id,
        len: 3,
        chunk_size: 2,
    };
    let (once, twice, missed_twice) = (key("/once"), key("/twice"), key("/missed"));
    for (id, k) in [&once, &twice, &missed_twice].into_iter().enumerate() {
        let id = id as u64;
        assert!(object(&store, k).await.is_none());
        let placement = store.placement(k);
        assert_eq!(placement, Placement::MemoryOnly);
        store.put_chunk(k, id, 0, Bytes::from_static(b"ab"), placement);
        store.put_chunk(k, id, 1, Bytes::from_static(b"c"), placement);
        store.put_object_placed(k, meta(chunked(id)), placement);
    }
    assert!(
        !on_disk(&store, &once).await,
        "a one-hit object stays in memory"
    );
    // The second request is a hit in memory: it writes the object out,
    // chunks and meta.
    assert_eq!(object(&store, &twice).await.unwrap().1, Tier::Memory);
    assert!(on_disk(&store, &twice).await);
    store.cache.memory().evict_all();
    let (_, tier) = object(&store, &twice).await.unwrap();
    assert_eq!(tier, Tier::Disk);
    assert_eq!(
        store.get_chunk(&twice, 1, 1).await.unwrap().as_deref(),
        Some(&b"c"[..])
    );
    assert!(object(&store, &once).await.is_none());
    // Evicted before its second request, an object fills again: this
    // time to both tiers.
    assert!(object(&store, &missed_twice).await.is_none());
    assert_eq!(store.placement(&missed_twice), Placement::BothTiers);
}

#[tokio::test]
async fn a_replacement_goes_to_disk_whatever_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = frequency_config(dir.path(), 200);
    let store = Store::open(&config, None).await.unwrap();
    let k = key("/replaced");
    store.put_object(&k, meta(BodyLayout::Inline(Bytes::from_static(b"v1"))));
    assert!(!on_disk(&store, &k).await);
    // Memory holds a version: the next one may be replacing a disk copy.
    assert_eq!(store.placement(&k), Placement::BothTiers);
    // Removals always reach the disk.
    store.remove(&k);
    store.cache.storage().wait().await;
    assert!(matches!(
        store.cache.storage().load(&StoreKey(*k.as_bytes())).await,
        Ok(foyer::Load::Entry {
            value: StoreValue::Removed,
            ..
        }) | Ok(foyer::Load::Piece { .. })
    ));
}

#[tokio::test]
async fn peek_names_both_tiers_for_one_version_despite_sub_millisecond_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path(), 16 << 20), None)
        .await
        .unwrap();
    let k = key("/both");
    let mut m = meta(BodyLayout::Inline(Bytes::from_static(b"x")));
    m.response_time = std::time::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    store.put_object(&k, m);
    store.cache.storage().wait().await;
    let (_, tiers) = store.peek(&k).await.unwrap().unwrap();
    assert_eq!(tiers, [Tier::Memory, Tier::Disk]);
}

#[tokio::test]
async fn an_object_read_from_disk_outlives_its_blocks_eviction() {
    let dir = tempfile::tempdir().unwrap();
    // Every object on disk at its first request.
    let config = frequency_config(dir.path(), 1);
    let store = Store::open(&config, None).await.unwrap();
    let body = Bytes::from(vec![b'x'; 60 << 10]);
    let fill = |k: &CacheKey| {
        let store = store.clone();
        let (k, body) = (*k, body.clone());
        async move {
            assert!(object(&store, &k).await.is_none());
            store.put_object(&k, meta(BodyLayout::Inline(body)));
        }
    };
    let (kept, dropped) = (key("/read-from-disk"), key("/never-read"));
    fill(&kept).await;
    fill(&dropped).await;
    assert!(on_disk(&store, &kept).await && on_disk(&store, &dropped).await);
    store.cache.memory().evict_all();
    assert_eq!(object(&store, &kept).await.unwrap().1, Tier::Disk);
    // 70 MiB more: the disk wraps once, past the block the two were in.
    for i in 0..1200 {
        fill(&key(&format!("/filler-{i}"))).await;
        if i % 32 == 0 {
            // Paced, so that foyer's write queue never drops a filler.
            store.cache.storage().wait().await;
        }
    }
    store.cache.storage().wait().await;
    assert!(
        !on_disk(&store, &dropped).await,
        "the disk did not wrap: the test proves nothing"
    );
    assert!(
        on_disk(&store, &kept).await,
        "an object read from disk was evicted with its block"
    );
    store.cache.memory().evict_all();
    assert_eq!(object(&store, &kept).await.unwrap().1, Tier::Disk);
}
