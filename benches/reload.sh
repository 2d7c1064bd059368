#!/usr/bin/env bash
# How long a reload takes: edge (release) on a config of SITES sites (default
# 100), each with 5 rules and 2 origins, reloaded ROUNDS times (default 20)
# by POST /reload; prints each reload's own `took_ms` (read, validate,
# compile, swap) and the curl round trip, then min/median/max. With LOAD=1,
# wrk keeps 32 connections of 1 KiB hits running during the reloads and
# reports its non-2xx/socket errors (there should be none). Ports 28665-28667.
#   benches/reload.sh            SITES=100 ROUNDS=20 LOAD=1 benches/reload.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EDGE=target/release/edge
SITES=${SITES:-100}
ROUNDS=${ROUNDS:-20}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 benches/origin-1k.py 28665 &
python3 - "$SITES" > "$work/edge.toml" <<'PY'
import sys
n = int(sys.argv[1])
print('[server]\nworker_threads = 1\n')
for i in range(n):
    print(f'[[sites]]\nname = "site{i}"\nhosts = ["site{i}.example", "*.site{i}.example"]')
    print(f'origins = ["http://127.0.0.1:28665", "http://127.0.0.2:28665"]')
    for j, rule in enumerate(['path = "/api/"\ncache = "bypass"',
                              'path = "/static/"\nttl = "1h"\nstale_if_error = "10m"',
                              'path_regex = "^/img/[0-9]+\\\\.png$"\nttl = "1d"',
                              'path = "/old/"\nredirect = { to = "https://example.com/new/", status = 301 }',
                              'path = "/"\nresponse_headers = { set = { "X-Site" = "yes" } }']):
        print(f'[[sites.rules]]\n{rule}')
    print()
PY
mkdir -p "$work/data"
EDGE_LOG=warn "$EDGE" --config "$work/edge.toml" --listen 127.0.0.1:28666 --admin 127.0.0.1:28667 \
  --data-dir "$work/data" > "$work/edge.out" 2>&1 &
for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:28667/healthz && break; sleep 0.1; done
curl -s -o /dev/null -H "Host: site7.example" http://127.0.0.1:28666/static/obj
if [ "${LOAD:-0}" = 1 ]; then
  wrk -t1 -c32 -d$((ROUNDS / 4 + 3))s -H "Host: site7.example" http://127.0.0.1:28666/static/obj > "$work/wrk.out" &
  wrkpid=$!
  sleep 1
fi
echo "sites=$SITES rules=$((SITES * 5)) rounds=$ROUNDS"
: > "$work/took"
for i in $(seq 1 "$ROUNDS"); do
  out=$(curl -s -w '\ncurl_s %{time_total}\n' -X POST http://127.0.0.1:28667/reload)
  took=$(sed -n 's/.*"took_ms": *\([0-9.]*\).*/\1/p' <<< "$out" | head -1)
  rt=$(awk '/^curl_s/ {print $2 * 1000}' <<< "$out")
  echo "round $i: took_ms=$took curl_ms=$rt"
  echo "$took $rt" >> "$work/took"
  sleep 0.2
done
sort -n "$work/took" | awk '{a[NR]=$1} END {printf "took_ms min %.2f median %.2f max %.2f\n", a[1], a[int((NR+1)/2)], a[NR]}'
if [ "${LOAD:-0}" = 1 ]; then
  wait "$wrkpid" || true
  grep -E "Requests/sec|Non-2xx|Socket errors|Latency" "$work/wrk.out" || true
fi
