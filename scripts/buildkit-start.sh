#!/usr/bin/env bash
# Starts our buildkitd (bin/buildkitd, from scripts/buildkit-build.sh) in the
# background as root: OCI worker with runc and overlayfs, containerd worker
# off, a fresh root directory, a unix socket, and a buildkitd.toml that allows
# plain HTTP for the given registries. Prints the socket address
# (unix:///...) on stdout once the daemon answers; logs and the pid file are
# in the root directory. Stop it with: kill "$(cat ROOT/buildkitd.pid)".
#
# Environment:
#   BUILDKITD_ROOT        root directory (default: a new mktemp -d)
#   BUILDKITD_REGISTRIES  space-separated host:port list served over plain
#                         HTTP (default: "127.0.0.1:5000 localhost:5000")
#   BIN                   where buildkitd and buildctl are (default: bin/)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
if [ "$(id -u)" != 0 ]; then
  echo "buildkit-start.sh: buildkitd with the OCI worker needs root" >&2
  exit 1
fi
[ -x "$BIN/buildkitd" ] || { echo "buildkit-start.sh: $BIN/buildkitd missing: run scripts/buildkit-build.sh" >&2; exit 1; }
command -v runc >/dev/null || { echo "buildkit-start.sh: runc missing: run scripts/buildkit-build.sh" >&2; exit 1; }

ROOT=${BUILDKITD_ROOT:-$(mktemp -d -t socikit-buildkitd.XXXXXX)}
mkdir -p "$ROOT"
SOCK="$ROOT/buildkitd.sock"
CONF="$ROOT/buildkitd.toml"
{
  echo "root = \"$ROOT/state\""
  echo '[worker.oci]'
  echo '  enabled = true'
  echo '  snapshotter = "overlayfs"'
  echo '  gc = false'
  echo '[worker.containerd]'
  echo '  enabled = false'
  for r in ${BUILDKITD_REGISTRIES:-127.0.0.1:5000 localhost:5000}; do
    echo "[registry.\"$r\"]"
    echo '  http = true'
    echo '  insecure = true'
  done
} >"$CONF"

"$BIN/buildkitd" --config "$CONF" --addr "unix://$SOCK" --oci-worker-binary runc \
  >"$ROOT/buildkitd.log" 2>&1 &
echo $! >"$ROOT/buildkitd.pid"

for _ in $(seq 1 100); do
  if [ -S "$SOCK" ] && "$BIN/buildctl" --addr "unix://$SOCK" debug workers >/dev/null 2>&1; then
    echo "unix://$SOCK"
    exit 0
  fi
  if ! kill -0 "$(cat "$ROOT/buildkitd.pid")" 2>/dev/null; then
    echo "buildkit-start.sh: buildkitd exited; log:" >&2
    cat "$ROOT/buildkitd.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "buildkit-start.sh: buildkitd did not answer on $SOCK within 10 s; log in $ROOT/buildkitd.log" >&2
exit 1
