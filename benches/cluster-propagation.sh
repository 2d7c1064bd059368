#!/usr/bin/env bash
# Purge propagation across 5 nodes on NATS JetStream (issue 22's
# benchmark), on a release build: 5 edges in one process on loopback, one
# nats-server (JetStream on, its store in a temporary directory), PURGES
# purges round robin over the nodes, twice: back-to-back (each sent as
# soon as the last one's 200 is back) and paced at RATE purges a second.
# Prints, and writes to target/bench/cluster-propagation-<time>.md, the
# API's latency (stored, synced, acknowledged by JetStream) and the time
# from the API's 200 to the purge held at all 5 nodes, p50/p99/max.
#
#   benches/cluster-propagation.sh [-n PURGES] [-r RATE] [-k RUNS]
#
# The measurement is the ignored test `propagation_across_five_nodes` in
# tests/tests/cluster.rs; "held" is each node's GET /purge/{id} answering
# 200, all five polled at once every millisecond (so a figure includes up
# to ~1 ms of polling and one admin request). Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
PURGES=500
RATE=100
RUNS=1
while [ $# -gt 0 ]; do
  case "$1" in
    -n) PURGES=$2; shift ;;
    -r) RATE=$2; shift ;;
    -k) RUNS=$2; shift ;;
    *) echo "unknown arg $1" >&2; exit 2 ;;
  esac
  shift
done
scripts/setup.sh --test >/dev/null   # nats-server, RocksDB headers
TARGET=${CARGO_TARGET_DIR:-target}
OUT_DIR=$TARGET/bench
mkdir -p "$OUT_DIR"
OUT=$OUT_DIR/cluster-propagation-$(date -u +%Y%m%dT%H%M%SZ).md
cargo test --release --locked -p edge-tests --test cluster --no-run
{
  echo "# Purge propagation, 5 nodes on loopback ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "edge $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'), release;" \
       "$(/usr/sbin/nats-server --version 2>/dev/null || nats-server --version);" \
       "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $PURGES purges per mode, $RATE/s paced"
  echo
} | tee "$OUT"
for run in $(seq "$RUNS"); do
  PURGES=$PURGES RATE=$RATE cargo test --release --locked -q -p edge-tests --test cluster \
      propagation_across_five_nodes -- --ignored --nocapture --exact 2>&1 \
    | grep '^PROPAGATION' | sed "s/^PROPAGATION /- run $run, /" | tee -a "$OUT"
done
echo "written to $OUT"
