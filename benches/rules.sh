#!/usr/bin/env bash
# The hit path with and without rules: edge (release, one worker, CPU 0) with
# no sites and with benches/sites-50-rules.toml (Host shop.example), access
# log off and on, 1 KiB hits from wrk (CPU 1), 3 rounds x 5 s. Wall-clock
# numbers on a noisy box: read the rounds, and benches/callgrind.sh for the
# instruction count. Ports 28655-28657.
#   benches/rules.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EDGE=target/release/edge
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 benches/origin-1k.py 28655 &
sleep 0.5
run() { # name extra host log
  local name=$1 extra=$2 host=$3 log=$4
  rm -rf "$work/data"; mkdir -p "$work/data"
  printf '[server]\nworker_threads = 1\n' > "$work/edge.toml"
  [ -n "$extra" ] && sed "s|ORIGIN_URL|http://127.0.0.1:28655|g" "$extra" >> "$work/edge.toml"
  local logargs=()
  if [ "$log" = on ]; then logargs=(--access-log "$work/access.log"); fi
  local filter=warn; [ "$log" = on ] && filter=warn,access=info
  EDGE_LOG=$filter taskset -c 0 "$EDGE" --config "$work/edge.toml" --origin http://127.0.0.1:28655 \
    --listen 127.0.0.1:28656 --admin 127.0.0.1:28657 --data-dir "$work/data" "${logargs[@]}" > "$work/edge.out" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:28657/healthz && break; sleep 0.1; done
  curl -s -o /dev/null -H "Host: $host" http://127.0.0.1:28656/obj
  local rps
  rps=$(taskset -c 1 wrk -t1 -c32 -d5s -H "Host: $host" http://127.0.0.1:28656/obj | awk '/Requests\/sec/ {print $2}')
  kill -TERM $pid; wait $pid 2>/dev/null || true
  echo "$name log=$log: $rps req/s"
}
for round in 1 2 3; do
  for log in off on; do
    run "no-sites" "" "127.0.0.1" $log
    run "2x50-rules" benches/sites-50-rules.toml "shop.example" $log
  done
done
