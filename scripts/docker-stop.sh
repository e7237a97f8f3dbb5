#!/usr/bin/env bash
# Stops what scripts/docker-start.sh DIR started, leaving nothing running:
# removes every container of that daemon (buildx builders included), stops
# dockerd (which stops its containerd), kills what is left of that daemon's
# processes (its containerd and shims, found by DIR in their command line),
# then unmounts whatever is still mounted under DIR and removes the empty
# cgroups the daemon made.
# Keeps DIR (logs) unless --rm is given.
set -uo pipefail
rm_dir=
if [ "${1:-}" = --rm ]; then rm_dir=1; shift; fi
dir=${1:?usage: docker-stop.sh [--rm] DIR}
dir=$(cd "$dir" 2>/dev/null && pwd) || exit 0
sock=$dir/docker.sock
pidf=$dir/docker.pid

if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
  pid=$(cat "$pidf")
  if [ -S "$sock" ]; then
    ids=$(curl -fs --max-time 10 --unix-socket "$sock" 'http://docker/containers/json?all=1' |
      grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4)
    for id in $ids; do
      curl -fs --max-time 30 -X DELETE --unix-socket "$sock" "http://docker/containers/$id?force=1&v=1" >/dev/null
    done
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
fi
rm -f "$pidf"
# The daemon's containerd and shims name DIR on their command line.
for p in /proc/[0-9]*; do
  n=${p#/proc/}
  [ "$n" = $$ ] && continue
  if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$dir/"; then
    case "$(cat "$p/comm" 2>/dev/null)" in
    containerd*|docker*) kill -KILL "$n" 2>/dev/null ;;
    esac
  fi
done
# Leftover mounts (overlay2 layers, container rootfs, netns), deepest first.
awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
  umount -l "$m" 2>/dev/null || true
done
# The cgroups dockerd (cgroupfs driver) made for its containers, /docker and
# the buildx builders' /docker/buildx, once empty, unless another dockerd runs.
if ! pgrep -x dockerd >/dev/null; then
  for c in /sys/fs/cgroup/*/docker /sys/fs/cgroup/docker; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
fi
[ -n "$rm_dir" ] && rm -rf "$dir"
exit 0
