#!/usr/bin/env bash
# Starts socikit-snapshotter and a containerd that uses it as the proxy
# snapshotter "socikit", each with state under a directory of their own, and
# prints shell assignments for eval:
#
#   eval "$(scripts/containerd-start.sh [--debian] [DIR])"
#   bin/ctr -a "$CONTAINERD_ADDRESS" image pull --snapshotter socikit ...
#   scripts/containerd-stop.sh "$SOCIKIT_DIR"
#
# Default: containerd v2.4.2 from bin/ (scripts/containerd-build.sh) with
# examples/containerd/config-v2.4.toml; --debian: Debian's containerd 1.6
# with config-v1.6.toml. DIR defaults to a new /tmp/socikit-ctrd.XXXXXX.
# SOCIKIT_CONFIG names a snapshotter TOML config (default: none).
# Logs: DIR/containerd.log, DIR/socikit.log.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
flavour=v2.4
if [ "${1:-}" = --debian ]; then flavour=v1.6; shift; fi
dir=${1:-$(mktemp -d /tmp/socikit-ctrd.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
sock=$dir/socikit.sock

if [ $flavour = v2.4 ]; then
  containerd=$here/bin/containerd
  # containerd 2.x needs its own runc shim first on PATH.
  path=$here/bin:$PATH
else
  containerd=/usr/bin/containerd
  path=/usr/bin:$PATH
fi
[ -x "$containerd" ] || { echo "missing $containerd: run scripts/containerd-build.sh" >&2; exit 1; }
[ -x "$here/bin/socikit-snapshotter" ] || { echo "missing bin/socikit-snapshotter: run scripts/containerd-build.sh" >&2; exit 1; }

sed -e "s#@DIR@#$dir#g" -e "s#@SOCIKIT_SOCK@#$sock#g" \
  "$here/examples/containerd/config-$flavour.toml" >"$dir/config.toml"

wait_for() { # wait_for SOCKET PID NAME LOG
  for _ in $(seq 1 200); do
    [ -S "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited; its log:" >&2; tail -20 "$4" >&2; exit 1; }
    sleep 0.05
  done
  echo "$3 did not create $1; its log:" >&2; tail -20 "$4" >&2; exit 1
}

cfg=()
[ -n "${SOCIKIT_CONFIG:-}" ] && cfg=(--config "$SOCIKIT_CONFIG")
setsid "$here/bin/socikit-snapshotter" "${cfg[@]}" --root "$dir/socikit" --address "$sock" \
  --log-level "${SOCIKIT_LOG_LEVEL:-debug}" >"$dir/socikit.log" 2>&1 </dev/null &
echo $! >"$dir/socikit.pid"
wait_for "$sock" "$(cat "$dir/socikit.pid")" socikit-snapshotter "$dir/socikit.log"

PATH=$path setsid "$containerd" --config "$dir/config.toml" --log-level "${CONTAINERD_LOG_LEVEL:-info}" \
  >"$dir/containerd.log" 2>&1 </dev/null &
echo $! >"$dir/containerd.pid"
wait_for "$dir/containerd.sock" "$(cat "$dir/containerd.pid")" containerd "$dir/containerd.log"

echo "CONTAINERD_ADDRESS=$dir/containerd.sock"
echo "SOCIKIT_ADDRESS=$sock"
echo "SOCIKIT_DIR=$dir"
