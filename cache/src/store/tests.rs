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

fn config(dir: &std::path::Path, memory: usize) -> StoreConfig {
    StoreConfig::new(dir.to_owned(), memory, 64 << 20)
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

    store.put_chunk(&k, 7, 0, Bytes::from_static(b"chunk zero"));
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
        store.put_chunk(&key("/big"), 1, 0, Bytes::from(vec![9u8; 1 << 20]));
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
        store.put_chunk(&key("/many"), i, 0, Bytes::from(vec![i as u8; 256 << 10]));
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
    old.put_chunk(&key("/big"), 3, 0, Bytes::from(vec![7u8; 1 << 20]));
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
    old.put_chunk(&key("/after"), 4, 0, Bytes::from_static(b"tail"));
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
