#!/usr/bin/env bash
# The 1 KiB hit path with and without issue 23's checks: one site without
# checks (benches/access-none.toml) and the same site with a rate limit and
# a signed-URL check (benches/access-checks.toml, hit with a signed link),
# access log off and on (to a file), edge release with one worker on CPU 0,
# wrk (64 connections) and the origin on CPU 1; ROUNDS rounds of DURATION
# seconds, the two edges back to back in each round (order swapped every
# round). Prints each round's req/s and the checks/none ratio per round,
# then the medians. Wall-clock numbers on a noisy box: read the rounds, and
# benches/callgrind.sh (EXTRA=benches/access-checks.toml) for instructions.
# Ports 28665-28667.
#   ROUNDS=3 DURATION=10 benches/access.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
ensure_tools wrk curl taskset=util-linux
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
EDGE=${EDGE_BIN:-target/release/edge}
[ -n "${EDGE_BIN:-}" ] || cargo build --release --locked -p edge >&2
ports_free 28665 28666 28667
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export EDGE_URL_SECRET=bench-secret-0123456789abcdef
link=$("$EDGE" sign /obj --expires 1d)
taskset -c 1 python3 benches/origin-1k.py 28665 &
sleep 0.5

run() { # extra path log -> req/s
  local extra=$1 path=$2 log=$3
  rm -rf "$work/data" "$work/access.log"
  mkdir -p "$work/data"
  printf '[server]\nworker_threads = 1\n' > "$work/edge.toml"
  sed "s|ORIGIN_URL|http://127.0.0.1:28665|g" "$extra" >> "$work/edge.toml"
  local logargs=() filter=warn
  if [ "$log" = on ]; then logargs=(--access-log "$work/access.log"); filter=warn,access=info; fi
  EDGE_LOG=$filter taskset -c 0 "$EDGE" --config "$work/edge.toml" --origin http://127.0.0.1:28665 \
    --listen 127.0.0.1:28666 --admin 127.0.0.1:28667 --data-dir "$work/data" "${logargs[@]}" \
    > "$work/edge.out" 2>&1 &
  local pid=$!
  wait_healthy 127.0.0.1:28667
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: media.example" "http://127.0.0.1:28666$path")
  [ "$status" = 200 ] || { echo "warm-up got $status for $path" >&2; cat "$work/edge.out" >&2; return 1; }
  taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" -H "Host: media.example" "http://127.0.0.1:28666$path" |
    awk '/Requests\/sec/ {print $2}'
  kill -TERM $pid
  wait $pid 2>/dev/null || true
}

declare -A ratios
for round in $(seq 1 "$ROUNDS"); do
  for log in off on; do
    if ((round % 2)); then
      none=$(run benches/access-none.toml /obj $log)
      checks=$(run benches/access-checks.toml "$link" $log)
    else
      checks=$(run benches/access-checks.toml "$link" $log)
      none=$(run benches/access-none.toml /obj $log)
    fi
    ratio=$(python3 -c "print(f'{$checks / $none:.3f}')")
    ratios[$log]+="$ratio "
    echo "round $round log=$log: none $none req/s, checks $checks req/s, checks/none $ratio"
  done
done
for log in off on; do
  python3 - "$log" ${ratios[$log]} <<'PY'
import statistics, sys
log, rs = sys.argv[1], [float(r) for r in sys.argv[2:]]
print(f"log={log}: checks/none median {statistics.median(rs):.3f} (rounds {', '.join(f'{r:.3f}' for r in rs)}); target >= 0.95")
PY
done
