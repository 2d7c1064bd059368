#!/usr/bin/env bash
# edge beside nginx proxy_cache on the same box: cache hits (1 KiB, 256 KiB)
# and pass-through (uncacheable) requests, plus the origin itself as the
# reference for pass-through. Not part of the test command.
#
#   benches/proxy-overhead.sh [-d SEC] [-r ROUNDS] [-s SCENARIOS]
#
# Uses the shared harness in ../shared/bench/perf (nginx origin on 28080,
# nginx proxy on 28082, wrk with pinning: proxies on CPU 0, wrk + origin on
# CPU 1). edge runs on 28100 with one worker thread, pinned like the others,
# access log off (nginx's is off too). Tables land in target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PERF=${PERF_DIR:-$ROOT/../shared/bench/perf}
DURATION=10
ROUNDS=3
SCENARIOS=hit1k,hit256k,pass1k,passuniq
while [ $# -gt 0 ]; do
  case "$1" in
    -d) DURATION=$2; shift ;;
    -r) ROUNDS=$2; shift ;;
    -s) SCENARIOS=$2; shift ;;
    *) echo "unknown arg $1" >&2; exit 2 ;;
  esac
  shift
done

. benches/lib.sh
ensure_tools nginx wrk
bench_prepare proxy-overhead

"$PERF/start-refs.sh" --pinned --only origin,nginx
cat > "$EDGE_DATA/edge.toml" <<TOML
[server]
worker_threads = 1
TOML
ports_free 28100 28101
EDGE_LOG=warn taskset -c 0 "$ROOT/target/release/edge" \
  --config "$EDGE_DATA/edge.toml" \
  --origin http://127.0.0.1:28080 --listen 127.0.0.1:28100 --admin 127.0.0.1:28101 \
  --memory 256MiB --disk 1GiB \
  --data-dir "$EDGE_DATA" > "$OUT/edge.log" 2>&1 &
EDGE_PID=$!
wait_healthy 127.0.0.1:28101

# Hit and miss counts for the harness's hit-ratio column.
export BENCH_STATS_EDGE="curl -s http://127.0.0.1:28101/metrics | awk '/^edge_requests_total/ && /cache_status=\"(HIT|STALE|REVALIDATED)\"/ {h+=\$2} /^edge_requests_total/ && /cache_status=\"(MISS|EXPIRED)\"/ {m+=\$2} END {print h+0, m+0}'"
"$PERF/bench.sh" -s "$SCENARIOS" -d "$DURATION" -r "$ROUNDS" -o "$OUT" \
  origin=http://127.0.0.1:28080 nginx=http://127.0.0.1:28082 edge=http://127.0.0.1:28100 \
  | tee "$OUT/summary.md"
echo "results: $OUT"
