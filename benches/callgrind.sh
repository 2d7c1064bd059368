#!/usr/bin/env bash
# Instructions per 1 KiB cache hit, counted by callgrind (repeatable on a
# noisy machine, unlike wall time). Runs the release edge under valgrind
# twice, with N and 2N keep-alive hits on one object after its miss, and
# reports (Ir(2N) - Ir(N)) / N: startup, the miss and shutdown cancel out.
# Access log off, as in the previous sessions' numbers; ACCESS=1 turns it on.
# The whole process's count moves by ±10 % from run to run (how curl's
# requests and tokio's wake-ups interleave under valgrind); PIPELINE=1
# reports the inclusive cost of the request's own work (`Pipeline::process`
# and `Finisher::record`: the proxy's phases and its end, not hyper's I/O
# or the runtime), read with
# callgrind_annotate, which repeats within about 1 %. (Not valgrind's
# --toggle-collect: it flips on every nested entry, so what it counts
# changes with inlining.)
# OBJ=/text/obj hits a text/html object (compressible), and ACCEPT=br sends
# that Accept-Encoding: a stored encoding's hit path (issue 20).
# EXTRA=file appends that TOML to the edge's config (sites, rules); HOST=name
# sends the hits with that Host (to reach a site). An EXTRA naming OTLP_URL
# ([tracing], benches/tracing-*.toml) gets benches/otlp-sink.py's address.
# TRACEPARENT=1 sends a sampled W3C traceparent with every request.
#   benches/callgrind.sh [EDGE_BINARY] [N]
#   EXTRA=benches/sites-50-rules.toml HOST=shop.example PIPELINE=1 benches/callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EDGE=${1:-target/release/edge}
N=${2:-2000}
command -v valgrind >/dev/null || { echo "valgrind missing" >&2; exit 2; }
work=$(mktemp -d)
# KEEP=dir keeps the callgrind files there (for callgrind_annotate).
# PASS=1 sends unique uncacheable URLs instead (the passuniq path: every
# request forwarded; the origin's own cost is not counted, it is Python).
# MISS=1 sends unique cacheable URLs (the missfill path: every request a
# miss whose response is stored).
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work"/cg.* "$KEEP"/; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin_port=$(free_port)
python3 benches/origin-1k.py "$origin_port" &
otlp_port=$(free_port)
if [ -n "${EXTRA:-}" ] && grep -q OTLP_URL "$EXTRA"; then
  python3 benches/otlp-sink.py "$otlp_port" &
fi
log_filter=warn
if [ "${ACCESS:-0}" = 1 ]; then log_filter=warn,access=info; fi
run() {
  local hits=$1 port admin
  port=$(free_port); admin=$(free_port)
  rm -rf "$work/data"; mkdir -p "$work/data"
  cat > "$work/edge.toml" <<TOML
[server]
worker_threads = 1
TOML
  if [ -n "${EXTRA:-}" ]; then
    sed -e "s|ORIGIN_URL|http://127.0.0.1:$origin_port|g" \
      -e "s|OTLP_URL|http://127.0.0.1:$otlp_port|g" "$EXTRA" >> "$work/edge.toml"
  fi
  local host=()
  if [ -n "${HOST:-}" ]; then host=(-H "Host: $HOST"); fi
  if [ -n "${ACCEPT:-}" ]; then host+=(-H "Accept-Encoding: $ACCEPT"); fi
  if [ "${TRACEPARENT:-0}" = 1 ]; then
    host+=(-H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
  fi
  local obj=${OBJ:-/obj}
  EDGE_LOG=$log_filter valgrind --tool=callgrind --callgrind-out-file="$work/cg.$hits" \
    "$EDGE" --config "$work/edge.toml" --origin "http://127.0.0.1:$origin_port" \
    --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --data-dir "$work/data" \
    >"$work/edge.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$admin/healthz" && break
    sleep 0.1
  done
  curl -s -o /dev/null "${host[@]}" "http://127.0.0.1:$port$obj"   # the miss
  local urls=()
  if [ "${PASS:-0}" = 1 ]; then
    # Unique uncacheable URLs: every request a pass to the origin.
    for i in $(seq 1 "$hits"); do urls+=("http://127.0.0.1:$port/nocache/$i"); done
  elif [ "${MISS:-0}" = 1 ]; then
    for i in $(seq 1 "$hits"); do urls+=("http://127.0.0.1:$port/obj/$i"); done
  else
    for _ in $(seq 1 "$hits"); do urls+=("http://127.0.0.1:$port$obj"); done
  fi
  curl -s "${host[@]}" "${urls[@]}" >/dev/null   # one keep-alive connection
  kill -TERM "$pid"; wait "$pid" || true
  if [ "${PIPELINE:-0}" = 1 ]; then
    callgrind_annotate --inclusive=yes "$work/cg.$hits" >"$work/annotated.$hits" 2>/dev/null
    # Pipeline::handle is inlined into the connection task now: its two
    # parts that stay functions are the phases (process) and the end
    # (Finisher::record, run as the body ends).
    grep -E 'Pipeline<H>::process::\{\{closure\}\} \[|Finisher<H>::record \[' "$work/annotated.$hits" |
      awk '{gsub(",", "", $1); s += $1} END {print s}'
  else
    grep -E "^summary:|^totals:" "$work/cg.$hits" | head -1 | awk '{print $2}'
  fi
}
a=$(run "$N")
b=$(run $((2 * N)))
echo "Ir with $N hits: $a; with $((2 * N)): $b"
echo "instructions per 1 KiB hit: $(( (b - a) / N ))"
