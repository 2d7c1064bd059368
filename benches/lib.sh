# Shared by the benchmark scripts (sourced): tools from Debian when missing,
# and waiting for an edge to answer.

# ensure_tools CMD[=PACKAGE] ...: installs the packages of missing commands.
ensure_tools() {
  local missing=() spec
  for spec in "$@"; do
    command -v "${spec%%=*}" >/dev/null || missing+=("${spec#*=}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ports_free PORT...: fails if anything listens on one of them, say an edge
# left by an earlier run, which would answer in place of the one to test.
ports_free() {
  local port
  for port in "$@"; do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
      echo "something already listens on 127.0.0.1:$port; stop it first" >&2
      return 1
    fi
  done
}

# wait_healthy ADMIN_ADDR: waits up to 5 s for the edge's /healthz.
wait_healthy() {
  for _ in $(seq 50); do
    curl -fs -o /dev/null "http://$1/healthz" && return 0
    sleep 0.1
  done
  echo "edge did not answer on $1" >&2
  return 1
}

# bench_prepare NAME [STOP_REFS_ARGS]: builds the release binary, sets OUT
# (target/bench/NAME-<time>, created) and EDGE_DATA (a temporary directory),
# and on exit stops the edge in $EDGE_PID and the reference servers (with
# STOP_REFS_ARGS, e.g. --wipe) and removes EDGE_DATA. Needs ROOT and PERF.
bench_prepare() {
  scripts/setup.sh
  cargo build --release --locked -p edge
  OUT=$ROOT/target/bench/$1-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$OUT"
  EDGE_DATA=$(mktemp -d)
  STOP_REFS_ARGS=${2:-}
  trap bench_cleanup EXIT
}

bench_cleanup() {
  [ -n "${EDGE_PID:-}" ] && kill "$EDGE_PID" 2>/dev/null || true
  # shellcheck disable=SC2086 # the arguments are words on purpose
  "$PERF/stop-refs.sh" $STOP_REFS_ARGS >/dev/null 2>&1 || true
  rm -rf "$EDGE_DATA"
}
