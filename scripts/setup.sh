#!/usr/bin/env bash
# Installs the system packages the build needs, once. Called by scripts/run
# and scripts/test so that a fresh Debian machine needs nothing but those.
#
# - libclang-dev: the rocksdb crate always generates its bindings with bindgen.
# - librocksdb-dev: linking Debian's RocksDB (see .cargo/config.toml) instead of
#   compiling it from source cuts a cold build from ~35 min to ~1 min.
# With --test (from scripts/test), also what the tests drive:
# - chromium: the /dashboard page is checked in headless Chromium.
# - systemd: its systemd-socket-activate runs edge with LISTEN_FDS set
#   (edge/tests/systemd.rs); nothing is started as a service.
# - nats-server: the cluster tests (tests/tests/cluster.rs) start their own
#   JetStream servers on free ports (-js -sd TMPDIR); never as a service.
set -euo pipefail

packages=(libclang-dev librocksdb-dev)
if [ "${1:-}" = "--test" ]; then
  packages+=(chromium systemd nats-server)
fi

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
