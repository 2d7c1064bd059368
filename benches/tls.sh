#!/usr/bin/env bash
# TLS cost on the hit path: the same cached objects over cleartext and over
# TLS (keep-alive), and TLS handshakes per second (full and resumed). Not
# part of the test command.
#
#   benches/tls.sh [-d SEC] [-r ROUNDS]
#
# edge runs pinned to CPU 0 with one worker thread, cleartext on 28100 and
# TLS on 28102 (an ECDSA P-256 certificate made here, TLS 1.3); wrk and
# `openssl s_time` run on CPU 1, the shared harness's nginx origin on 28080.
# Each round runs every case back to back; the table gives medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PERF=${PERF_DIR:-$ROOT/../shared/bench/perf}
DURATION=10
ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    -d) DURATION=$2; shift ;;
    -r) ROUNDS=$2; shift ;;
    *) echo "unknown arg $1" >&2; exit 2 ;;
  esac
  shift
done

. benches/lib.sh
ensure_tools nginx wrk openssl
bench_prepare tls

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=edge.bench -addext subjectAltName=DNS:edge.bench,IP:127.0.0.1 \
  -keyout "$EDGE_DATA/key.pem" -out "$EDGE_DATA/cert.pem" 2>/dev/null

"$PERF/start-refs.sh" --pinned --only origin
cat > "$EDGE_DATA/edge.toml" <<TOML
[server]
worker_threads = 1
TOML
ports_free 28100 28101
EDGE_LOG=warn taskset -c 0 "$ROOT/target/release/edge" \
  --config "$EDGE_DATA/edge.toml" \
  --origin http://127.0.0.1:28080 --listen 127.0.0.1:28100 --admin 127.0.0.1:28101 \
  --tls-listen 127.0.0.1:28102 --tls-cert "$EDGE_DATA/cert.pem" --tls-key "$EDGE_DATA/key.pem" \
  --memory 256MiB --disk 1GiB \
  --data-dir "$EDGE_DATA" > "$OUT/edge.log" 2>&1 &
EDGE_PID=$!
wait_healthy 127.0.0.1:28101
for obj in 1k 256k; do
  curl -fs -o /dev/null "http://127.0.0.1:28100/obj/$obj"
  curl -fsk -o /dev/null "https://127.0.0.1:28102/obj/$obj"
done

# One wrk run: "req/s MB/s p50_ms p99_ms".
run_wrk() {
  local url=$1 conns=$2; shift 2
  taskset -c 1 wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$@" "$url" 2>&1 | tee -a "$OUT/raw.txt" |
    awk '
      function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
      function mb(v) { if (v ~ /GB$/) return v*1024; if (v ~ /MB$/) return v+0; if (v ~ /KB$/) return v/1024; return v/1048576 }
      /Requests\/sec/ { rps=$2 } /Transfer\/sec/ { bw=mb($2) }
      $1=="50%" { p50=ms($2) } $1=="99%" { p99=ms($2) }
      END { printf "%.0f %.1f %.3f %.3f\n", rps, bw, p50, p99 }'
}

# Handshakes per second from one sequential client: "full resumed".
run_s_time() {
  local full resumed
  full=$(taskset -c 1 openssl s_time -connect 127.0.0.1:28102 -new -time "$DURATION" 2>&1 | tee -a "$OUT/raw.txt" |
    awk '/connections in .* real seconds/ { for (i=1;i<=NF;i++) if ($i=="connections") c=$(i-1); for (i=1;i<=NF;i++) if ($i=="real") s=$(i-1) } END { printf "%.0f", c/s }')
  resumed=$(taskset -c 1 openssl s_time -connect 127.0.0.1:28102 -reuse -time "$DURATION" 2>&1 | tee -a "$OUT/raw.txt" |
    awk '/connections in .* real seconds/ { for (i=1;i<=NF;i++) if ($i=="connections") c=$(i-1); for (i=1;i<=NF;i++) if ($i=="real") s=$(i-1) } END { printf "%.0f", c/s }')
  echo "$full $resumed"
}

median() { sort -n | awk '{ v[NR]=$1 } END { print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2 }'; }

declare -A RESULTS
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  for obj in 1k 256k; do
    RESULTS[plain_$obj]+="$(run_wrk "http://127.0.0.1:28100/obj/$obj" 32)"$'\n'
    RESULTS[tls_$obj]+="$(run_wrk "https://127.0.0.1:28102/obj/$obj" 32)"$'\n'
  done
  # A new connection (and a full TLS 1.3 handshake) for every request.
  RESULTS[tls_close]+="$(run_wrk "https://127.0.0.1:28102/obj/1k" 16 -H 'Connection: close')"$'\n'
  RESULTS[s_time]+="$(run_s_time)"$'\n'
done

col() { printf '%s' "${RESULTS[$1]}" | awk -v c="$2" 'NF { print $c }' | median; }
{
  echo "# TLS on the hit path ($(date -u +%Y-%m-%dT%H:%MZ), $ROUNDS rounds of ${DURATION}s, medians)"
  echo
  echo "edge pinned to CPU 0 (1 worker thread), wrk/openssl on CPU 1, ECDSA P-256, TLS 1.3."
  echo
  echo "| case | req/s | MB/s | p50 ms | p99 ms | TLS / cleartext req/s |"
  echo "|---|---|---|---|---|---|"
  for obj in 1k 256k; do
    p=$(col "plain_$obj" 1); t=$(col "tls_$obj" 1)
    echo "| hit $obj cleartext | $p | $(col "plain_$obj" 2) | $(col "plain_$obj" 3) | $(col "plain_$obj" 4) | |"
    echo "| hit $obj TLS | $t | $(col "tls_$obj" 2) | $(col "tls_$obj" 3) | $(col "tls_$obj" 4) | $(awk -v a="$t" -v b="$p" 'BEGIN { printf "%.2f", a/b }') |"
  done
  echo "| hit 1k TLS, new connection per request (16 clients) | $(col tls_close 1) | $(col tls_close 2) | $(col tls_close 3) | $(col tls_close 4) | |"
  echo
  echo "| handshakes/s, one sequential client (openssl s_time) | full | resumed |"
  echo "|---|---|---|"
  echo "| edge | $(col s_time 1) | $(col s_time 2) |"
} | tee "$OUT/summary.md"
echo "results: $OUT"
