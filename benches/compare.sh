#!/usr/bin/env bash
# edge beside nginx proxy_cache, Varnish and Apache Traffic Server, in one
# run on this box, with nginx serving the files itself as the ceiling. Not
# part of the test command.
#
#   benches/compare.sh [-d SEC] [-r ROUNDS] [-s SCENARIOS] [--cache-mb MB] [--edge-extra FILE]
#                      [--quiet-max-wait SEC]
#
# --quiet-max-wait SEC: the harness waits before each round for a quiet
# machine, by default up to 600 s; on a shared box this caps the wait.
#
# Two edges: `edge` (28100, admin 28101) with its access log off
# (EDGE_LOG=warn) and `edge-log` (28102, admin 28103) with its access log on
# to a file, as operators run it (--access-log, EDGE_LOG=warn,access=info;
# the buffered writer of access_log_flush / access_log_buffer), each with its
# own data dir, both on CPU 0 with one worker. ATS (`trafficserver`, installed
# with apt when missing; skipped when it cannot be) is `ats` on 28084.
#
# EDGE_BIN=PATH runs that edge binary instead of building target/release/edge
# here (e.g. a release build made elsewhere of the same commit).
#
# --edge-extra FILE appends FILE to edge's config, with ORIGIN_URL replaced
# by the bench origin and BENCH_HOST by the address the load goes to: e.g.
# benches/sites-50-rules.toml with `hosts = ["BENCH_HOST"]` puts every
# request through a site of 50 rules.
#
# Scenarios (the shared harness in ../shared/bench/perf runs them, each proxy
# back to back, rounds rotated): hit1k, hit256k (keep-alive hits), missfill
# (unique cacheable URLs: every request a miss that is stored), passuniq
# (unique uncacheable URLs, against the origin itself), zipf (Zipf s=0.9 over
# 100 000 URLs of 32 KiB = 3.1 GiB, against caches of --cache-mb, 320 MiB by
# default: ~10 %; run last, after every proxy is restarted on an empty
# cache, then once more for edge with the most bytes nginx's cache held);
# then, here, a cold burst (1000 connections at once for one
# uncached 4 MiB object: origin fetches per proxy) and RSS idle and after load.
#
# Placement: every proxy on CPU 0 (edge with one worker thread, nginx with one
# worker, Varnish's threads pinned), wrk and the origin on CPU 1. Budget:
# --cache-mb of memory for objects and, where the proxy has a disk cache, the
# same on disk. Varnish: malloc of --cache-mb. nginx: max_size of --cache-mb
# on disk, with the kernel's page cache (not capped) as its memory. edge: a
# memory tier of --cache-mb and a disk tier of --cache-mb.
#
# Output: target/bench/compare-<time>/ with summary.md (the harness's tables,
# then the targets with their ratios), runs.jsonl and burst.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PERF=${PERF_DIR:-$ROOT/../shared/bench/perf}
DURATION=10
ROUNDS=3
SCENARIOS=hit1k,hit256k,missfill,passuniq,zipf
CACHE_MB=320
EDGE_EXTRA=
HARNESS_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -d) DURATION=$2; shift ;;
    -r) ROUNDS=$2; shift ;;
    -s) SCENARIOS=$2; shift ;;
    --cache-mb) CACHE_MB=$2; shift ;;
    --edge-extra) EDGE_EXTRA=$2; shift ;;
    --quiet-max-wait) HARNESS_ARGS+=(--quiet-max-wait "$2"); shift ;;
    *) echo "unknown arg $1" >&2; exit 2 ;;
  esac
  shift
done

. benches/lib.sh
ensure_tools nginx varnishd=varnish wrk
# ATS is optional, as in the harness's install-deps.sh.
ensure_tools traffic_manager=trafficserver 2>/dev/null ||
  echo "trafficserver not installable; ATS will be skipped" >&2
if [ -n "${EDGE_BIN:-}" ]; then
  # bench_prepare without the build.
  OUT=$ROOT/target/bench/compare-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$OUT"
  EDGE_DATA=$(mktemp -d)
  STOP_REFS_ARGS=--wipe
  trap bench_cleanup EXIT
else
  bench_prepare compare --wipe
  EDGE_BIN=$ROOT/target/release/edge
fi
"$EDGE_BIN" --version > "$OUT/edge-version.txt" 2>&1 || true
# bench_cleanup stops only the edge in EDGE_PID.
trap 'stop_edge; bench_cleanup' EXIT
REFS=origin,static,nginx,varnish
command -v traffic_manager >/dev/null && REFS=$REFS,ats
ulimit -n 65536 2>/dev/null || true

export CACHE_SIZE_MB=$CACHE_MB
"$PERF/stop-refs.sh" --wipe >/dev/null 2>&1 || true
"$PERF/start-refs.sh" --pinned --only "$REFS"
cat > "$EDGE_DATA/edge.toml" <<TOML
[server]
worker_threads = 1
max_connections = 20000
TOML
if [ -n "$EDGE_EXTRA" ]; then
  sed -e "s|ORIGIN_URL|http://127.0.0.1:28080|g" -e "s|BENCH_HOST|127.0.0.1|g" \
    "$EDGE_EXTRA" >> "$EDGE_DATA/edge.toml"
fi

# start_edge MB: edge on 28100 (admin 28101) with tiers of MB each, on an
# empty cache, access log off; then edge-log on 28102 (admin 28103), the
# same with its access log on to a file, in its own data dir.
start_edge() {
  rm -rf "$EDGE_DATA/cache" "$EDGE_DATA/purge" "$EDGE_DATA/log-on/cache" "$EDGE_DATA/log-on/purge"
  mkdir -p "$EDGE_DATA/log-on"
  ports_free 28100 28101 28102 28103
  EDGE_LOG=warn taskset -c 0 "$EDGE_BIN" \
    --config "$EDGE_DATA/edge.toml" \
    --origin http://127.0.0.1:28080 --listen 127.0.0.1:28100 --admin 127.0.0.1:28101 \
    --memory "${1}MiB" --disk "${1}MiB" \
    --data-dir "$EDGE_DATA" >> "$OUT/edge.log" 2>&1 &
  EDGE_PID=$!
  wait_healthy 127.0.0.1:28101
  # Its access lines go to a file outside the output dir (~100 bytes a
  # request, millions of requests); only its size is kept (stop_edge).
  EDGE_LOG=warn,access=info taskset -c 0 "$EDGE_BIN" \
    --config "$EDGE_DATA/edge.toml" \
    --origin http://127.0.0.1:28080 --listen 127.0.0.1:28102 --admin 127.0.0.1:28103 \
    --memory "${1}MiB" --disk "${1}MiB" \
    --access-log "$EDGE_DATA/log-on/access.log" \
    --data-dir "$EDGE_DATA/log-on" >> "$OUT/edge-log.log" 2>&1 &
  EDGE_LOG_PID=$!
  wait_healthy 127.0.0.1:28103
}

stop_edge() {
  kill ${EDGE_PID:-} ${EDGE_LOG_PID:-} 2>/dev/null || true
  wait ${EDGE_PID:-} ${EDGE_LOG_PID:-} 2>/dev/null || true
  if [ -f "$EDGE_DATA/log-on/access.log" ]; then
    # One line per stop; the file is appended to across restarts.
    echo "access.log so far: $(wc -l < "$EDGE_DATA/log-on/access.log") lines, $(stat -c %s "$EDGE_DATA/log-on/access.log") bytes" \
      >> "$OUT/edge-log-access-log.txt"
  fi
}

# bench TARGETS... : the shared harness over this run's scenarios.
bench() {
  "$PERF/bench.sh" -s "$1" -d "$DURATION" -r "$ROUNDS" -o "$2" ${HARNESS_ARGS[@]+"${HARNESS_ARGS[@]}"} "${@:3}"
}
TARGETS=(static=http://127.0.0.1:28081 nginx=http://127.0.0.1:28082
  varnish=http://127.0.0.1:28083)
# The harness reads ATS's hit and miss counts itself (traffic_ctl, for
# names starting with ats).
[[ ",$REFS," == *",ats,"* ]] && TARGETS+=(ats=http://127.0.0.1:28084)
TARGETS+=(edge=http://127.0.0.1:28100 edge-log=http://127.0.0.1:28102)

# The harness reads each edge's hit and miss counts from its metrics
# (BENCH_STATS_<NAME>, the name upper-cased with - as _).
edge_stats() {
  echo "curl -s http://127.0.0.1:$1/metrics | awk '/^edge_requests_total/ && /cache_status=\"(HIT|STALE|REVALIDATED)\"/ {h+=\$2} /^edge_requests_total/ && /cache_status=\"(MISS|EXPIRED)\"/ {m+=\$2} END {print h+0, m+0}'"
}
BENCH_STATS_EDGE=$(edge_stats 28101)
BENCH_STATS_EDGE_LOG=$(edge_stats 28103)
export BENCH_STATS_EDGE BENCH_STATS_EDGE_LOG

start_edge "$CACHE_MB"
: > "$OUT/harness.md"
OTHERS=$(echo ",$SCENARIOS," | sed 's/,zipf,/,/g; s/^,//; s/,$//')
if [ -n "$OTHERS" ]; then
  bench "$OTHERS" "$OUT" "${TARGETS[@]}" | tee -a "$OUT/harness.md"
  curl -s http://127.0.0.1:28103/metrics | grep -i access_log > "$OUT/edge-log-metrics.txt" || true
  # The Zipf run writes its own.
  mv "$OUT/meta-pinned.json" "$OUT/meta-main.json" 2>/dev/null || true
fi

if [[ ",$SCENARIOS," == *",zipf,"* ]]; then
  # Zipf starts from empty caches everywhere: after the miss scenario's
  # hundreds of thousands of small objects, nginx's cache manager fell so far
  # behind that its cache grew past 1 GB (320 MB budget) and its Zipf hit
  # ratio swung between 64 % and 85 % from round to round.
  stop_edge
  "$PERF/stop-refs.sh" --wipe >/dev/null 2>&1 || true
  "$PERF/start-refs.sh" --pinned --only "$REFS"
  start_edge "$CACHE_MB"

  # nginx trims its cache to max_size only now and then (its cache manager
  # removes a bounded number of files per pass), so under a fast Zipf
  # stream it holds more than its budget. Its size is sampled every 2 s
  # (niced, on the load generator's CPU) to know the most it held.
  NGINX_CACHE_DIR=${EDGE_PERF_RUN:-/var/tmp/edge-perf}/nginx-cache
  # (`set +e`: du fails when nginx deletes a file under it, and under
  # `set -e` that ended the sampling after a few seconds.)
  ( set +e; while sleep 2; do du -sm "$NGINX_CACHE_DIR" 2>/dev/null | awk '{print $1}'; done ) \
    > "$OUT/nginx-cache-samples.txt" &
  SAMPLER_PID=$!
  # (`|| true`: under `set -e` a failed kill would end the trap before the
  # cleanup, leaving the edge running to answer the next run.)
  trap 'kill "$SAMPLER_PID" 2>/dev/null || true; stop_edge; bench_cleanup' EXIT
  renice -n 19 -p "$SAMPLER_PID" >/dev/null 2>&1 || true
  taskset -a -p -c 1 "$SAMPLER_PID" >/dev/null 2>&1 || true
  bench zipf "$OUT" "${TARGETS[@]}" | tee -a "$OUT/harness.md"
  kill "$SAMPLER_PID" 2>/dev/null || true

  du -sm "$NGINX_CACHE_DIR" 2>/dev/null | awk '{print $1}' > "$OUT/nginx-cache-mb.txt" || true
  sort -n "$OUT/nginx-cache-samples.txt" "$OUT/nginx-cache-mb.txt" 2>/dev/null | tail -1 \
    > "$OUT/nginx-cache-peak-mb.txt" || true

  # The Zipf row again at equal bytes: edge once more, on an empty cache,
  # with tiers of the largest size nginx's cache was seen at.
  NGINX_MB=$(cat "$OUT/nginx-cache-peak-mb.txt" 2>/dev/null || echo 0)
  if [ "${NGINX_MB:-0}" -gt "$CACHE_MB" ]; then
    stop_edge
    start_edge "$NGINX_MB"
    bench zipf "$OUT/zipf-equal-bytes" edge=http://127.0.0.1:28100 | tee "$OUT/zipf-equal-bytes.md"
  fi
fi

# Cold burst: 1000 connections ask for one object nobody has cached yet.
origin_count() { curl -s http://127.0.0.1:28080/status | awk '/^ *[0-9]+ +[0-9]+ +[0-9]+/ { print $3 }'; }
echo "[" > "$OUT/burst.json"
sep=""
BURST=(nginx=28082 varnish=28083)
[[ ",$REFS," == *",ats,"* ]] && BURST+=(ats=28084)
BURST+=(edge=28100 edge-log=28102)
for target in "${BURST[@]}"; do
  name=${target%%=*}; port=${target#*=}
  url="http://127.0.0.1:$port/obj/4m?burst=$RANDOM$RANDOM"
  before=$(origin_count)
  taskset -c 1 wrk -t1 -c1000 -d3s "$url" > "$OUT/burst-$name.txt" 2>&1 || true
  after=$(origin_count)
  # The status request itself counts once.
  fetches=$((after - before - 1))
  printf '%s{"target":"%s","origin_fetches":%d}\n' "$sep" "$name" "$fetches" >> "$OUT/burst.json"
  sep=","
done
echo "]" >> "$OUT/burst.json"

python3 "$ROOT/benches/compare_targets.py" "$OUT" | tee "$OUT/targets.md"
# Issue 21's targets: the log-on edge, ATS, and per-round ratios.
python3 "$ROOT/benches/compare_targets_21.py" "$OUT" | tee -a "$OUT/targets.md"
cat "$OUT/harness.md" "$OUT/targets.md" > "$OUT/summary.md"
echo "results: $OUT"
