#!/usr/bin/env bash
# HTTP/3 against h2 over TLS on the hit path: 1 KiB and 256 KiB cached
# objects, the same load shape on both (CONNS connections, STREAMS requests
# in flight on each), req/s and the edge's CPU per request (utime+stime
# from /proc/PID/stat over the run, divided by the requests answered). h2load
# has no HTTP/3 unless built with it, so both sides use benches/h3load.rs
# (the quinn + h3 client of the tests, and hyper's h2 client). Not part of
# the test command.
#
#   benches/h3.sh [-d SEC] [-r ROUNDS] [-c CONNS] [-s STREAMS]
#
# edge (release, one worker thread) on CPU 0, the load generator on CPU 1,
# a Python origin on 28180. One line per round and case; the box is shared,
# so look at every round, not only the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=5
ROUNDS=3
CONNS=4
STREAMS=16
while [ $# -gt 0 ]; do
  case "$1" in
    -d) DURATION=$2; shift ;;
    -r) ROUNDS=$2; shift ;;
    -c) CONNS=$2; shift ;;
    -s) STREAMS=$2; shift ;;
    *) echo "unknown arg $1" >&2; exit 2 ;;
  esac
  shift
done

. benches/lib.sh
ensure_tools openssl curl python3
cargo build --release -q -p edge
cargo bench -q -p edge-benches --bench h3load --no-run 2>/dev/null
OUT=$TARGET/bench/h3-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
DATA=$(mktemp -d)
cleanup() {
  [ -n "${EDGE_PID:-}" ] && kill "$EDGE_PID" 2>/dev/null || true
  [ -n "${ORIGIN_PID:-}" ] && kill "$ORIGIN_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

# A leaf, not a CA (the load generator verifies it as rustls does; the
# default -x509 extensions make a CA, which webpki refuses as a server).
printf '[req]\ndistinguished_name=dn\nx509_extensions=leaf\n[dn]\n[leaf]\nbasicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:edge.bench,IP:127.0.0.1\n' > "$DATA/openssl.cnf"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -config "$DATA/openssl.cnf" -subj /CN=edge.bench \
  -keyout "$DATA/key.pem" -out "$DATA/cert.pem" 2>/dev/null

cat > "$DATA/origin.py" <<'PY'
import http.server, sys
bodies = {"/obj/1k": b"x" * 1024, "/obj/256k": b"y" * 262144}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = bodies.get(self.path, b"")
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
ports_free 28180 28181 28182
python3 "$DATA/origin.py" 28180 &
ORIGIN_PID=$!
cat > "$DATA/edge.toml" <<TOML
[server]
worker_threads = 1
TOML
EDGE_LOG=warn taskset -c 0 "$TARGET/release/edge" --config "$DATA/edge.toml" \
  --origin http://127.0.0.1:28180 --listen 127.0.0.1:28181 --admin 127.0.0.1:28182 \
  --tls-listen 127.0.0.1:28183 --h3-listen 127.0.0.1:28183 \
  --tls-cert "$DATA/cert.pem" --tls-key "$DATA/key.pem" \
  --memory 256MiB --disk 1GiB --data-dir "$DATA/edge" > "$OUT/edge.log" 2>&1 &
EDGE_PID=$!
wait_healthy 127.0.0.1:28182
for obj in 1k 256k; do
  # The cache key is https://edge.bench/...: warm it over TLS.
  curl -fsk -o /dev/null --resolve edge.bench:28183:127.0.0.1 "https://edge.bench:28183/obj/$obj"
done

TICKS=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$EDGE_PID/stat"; }
LOADGEN=$(ls -t "$TARGET"/release/deps/h3load-* | grep -v '\.d$' | head -1)
echo "round size proto req/s cpu_us_per_req errors" | tee "$OUT/rounds.txt"
for round in $(seq "$ROUNDS"); do
  for size in 1k 256k; do
    for proto in h2 h3; do
      before=$(cpu)
      read -r _ n secs rps errors < <(taskset -c 1 "$LOADGEN" "$proto" 127.0.0.1:28183 \
        edge.bench "/obj/$size" "$DATA/cert.pem" "$CONNS" "$STREAMS" "$DURATION")
      after=$(cpu)
      per=$(awk -v a="$after" -v b="$before" -v t="$TICKS" -v n="$n" \
        'BEGIN { if (n > 0) printf "%.1f", (a - b) / t * 1e6 / n; else print "-" }')
      echo "$round $size $proto $rps $per $errors" | tee -a "$OUT/rounds.txt"
    done
  done
done
echo "(edge on CPU 0, one worker; $CONNS connections x $STREAMS streams, ${DURATION}s per case; $OUT)"
