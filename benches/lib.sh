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

# wait_healthy ADMIN_ADDR: waits up to 5 s for the edge's /healthz.
wait_healthy() {
  for _ in $(seq 50); do
    curl -fs -o /dev/null "http://$1/healthz" && return 0
    sleep 0.1
  done
  echo "edge did not answer on $1" >&2
  return 1
}
