#!/usr/bin/env bash
# Hits on a stored Brotli encoding against hits on an identity object of the
# same byte size (issue 20: a compressed hit must cost no more than an
# identity hit of the same size), at ~1 KiB and ~256 KiB, with wrk on one
# keep-alive connection set, rounds alternating. The edge on CPU 0 with one
# worker, wrk and the origin on CPU 1. Not part of the test command.
#   benches/compression-hits.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-5}
EDGE=${EDGE_BIN:-target/release/edge}
. benches/lib.sh
ensure_tools wrk
[ -x "$EDGE" ] || cargo build --release -p edge
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin=$(free_port); port=$(free_port); admin=$(free_port)
taskset -c 1 python3 benches/origin-compress.py "$origin" &
printf '[server]\nworker_threads = 1\n' > "$work/edge.toml"
EDGE_LOG=warn taskset -c 0 "$EDGE" --config "$work/edge.toml" --origin "http://127.0.0.1:$origin" \
  --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --data-dir "$work/data" >"$work/edge.log" 2>&1 &
wait_healthy "127.0.0.1:$admin"
base=http://127.0.0.1:$port
# The text size whose br encoding is about the target size, and the
# identity object of exactly the encoding's size.
pair() {
  local target=$1 n=$((target * 4)) len
  curl -s -o /dev/null -H 'Accept-Encoding: br' "$base/text/$n"        # miss: both forms stored
  len=$(curl -s -o /dev/null -w '%{size_download}' -H 'Accept-Encoding: br' "$base/text/$n")
  curl -s -o /dev/null "$base/bin/$len"
  curl -s -o /dev/null "$base/bin/$len"
  echo "$n $len"
}
rate() {
  taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "$@" 2>/dev/null | awk '/Requests\/sec/ {print int($2)}'
}
printf '| size | round | br hit req/s | identity hit req/s (same bytes, same client) | br / identity |\n|---|---|---|---|---|\n'
for target in 1024 262144; do
  read -r n len < <(pair "$target")
  for r in $(seq 1 "$ROUNDS"); do
    a=$(rate -H 'Accept-Encoding: br' "$base/text/$n")
    # The same client (it sends Accept-Encoding: br) asking for an object
    # that is not compressible: the identity hit of the same byte size.
    b=$(rate -H 'Accept-Encoding: br' "$base/bin/$len")
    printf '| %s B (br of %s B) | %s | %s | %s | %s |\n' "$len" "$n" "$r" "$a" "$b" \
      "$(python3 -c "print(f'{$a/$b:.2f}')")"
  done
done
echo
m=$(curl -s "http://127.0.0.1:$admin/metrics")
echo "compressions: $(echo "$m" | grep '^edge_compressions_total' | tr '\n' ' ')"
echo "stored-encoding hits: $(echo "$m" | grep '^edge_compressed_hits_total' | tr '\n' ' ')"
