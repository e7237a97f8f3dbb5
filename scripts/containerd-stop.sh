#!/usr/bin/env bash
# Stops what scripts/containerd-start.sh DIR started: containerd first (its
# shims' containers should be gone already), then socikit-snapshotter and, if
# SOCI_UPSTREAM started it, upstream's soci-snapshotter-grpc, which unmount
# their lazy layers; then unmounts whatever is left under DIR.
# Keeps DIR (logs) unless --rm is given.
set -uo pipefail
rm_dir=
if [ "${1:-}" = --rm ]; then rm_dir=1; shift; fi
dir=${1:?usage: containerd-stop.sh [--rm] DIR}
for name in containerd socikit soci; do
  f=$dir/$name.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$f"
done
# socikit-snapshotter's fd holder, if it still runs (it exits by itself once
# the daemon has unmounted its layers and gone): what it keeps ends with it.
f=$dir/socikit/fdstore.sock.pid
[ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null
# Leftover mounts (container rootfs, lazy layers of a killed daemon), deepest first.
awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
  umount -l "$m" 2>/dev/null || true
done
[ -n "$rm_dir" ] && rm -rf "$dir"
exit 0
