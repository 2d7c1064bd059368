//! Choosing a peer: consistent-hash ring lookups and pool orders, paid by
//! every miss.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use origin_shield::Peer;
use origin_shield::balance::{Pick, Policy, Pool};
use origin_shield::health::HealthPolicy;
use origin_shield::ring::{Ring, hash_bytes};
use std::hint::black_box;

fn ring(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring");
    for peers in [2usize, 8, 64] {
        let names: Vec<String> = (0..peers).map(|i| format!("10.0.0.{i}:8080")).collect();
        let ring = Ring::new(names.iter().map(|n| (n.as_str(), 1)));
        let keys: Vec<u64> = (0..1024u64).map(|i| hash_bytes(&i.to_le_bytes())).collect();
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("primary", peers), &ring, |b, ring| {
            b.iter(|| {
                i = (i + 1) & 1023;
                ring.primary(black_box(keys[i]))
            })
        });
        group.bench_with_input(BenchmarkId::new("order_first3", peers), &ring, |b, ring| {
            b.iter(|| {
                i = (i + 1) & 1023;
                ring.order(black_box(keys[i])).take(3).sum::<usize>()
            })
        });
    }
    group.finish();

    let peers: Vec<Peer> = (0..4)
        .map(|i| format!("http://10.0.0.{i}:8080").parse().expect("peer"))
        .collect();
    for policy in [Policy::RoundRobin, Policy::LeastConn, Policy::HashKey] {
        let pool = Pool::new(peers.clone(), policy, &HealthPolicy::default());
        let pick = Pick {
            key_hash: Some(hash_bytes(b"/video/1.mp4")),
            client_hash: 7,
        };
        c.bench_function(&format!("pool/order/{}", policy.as_str()), |b| {
            b.iter(|| pool.order(black_box(&pick)).len())
        });
    }
}

criterion_group!(benches, ring);
criterion_main!(benches);
