#!/usr/bin/env bash
# Starts socikit-snapshotter and a containerd that uses it as the proxy
# snapshotter "socikit", each with state under a directory of their own, and
# prints shell assignments for eval:
#
#   eval "$(scripts/containerd-start.sh [--debian] [--cri] [DIR])"
#   bin/ctr -a "$CONTAINERD_ADDRESS" image pull --snapshotter socikit ...
#   scripts/containerd-stop.sh "$SOCIKIT_DIR"
#
# Default: containerd v2.4.2 from bin/ (scripts/containerd-build.sh) with
# examples/containerd/config-v2.4.toml; --debian: Debian's containerd 1.6
# with config-v1.6.toml. DIR defaults to a new /tmp/socikit-ctrd.XXXXXX.
# SOCIKIT_CONFIG names a snapshotter TOML config (default: none); the
# snapshotter gets DIR/socikit.toml: that config plus, unless it has a
# [containerd] table, this containerd's socket (zTOCs containerd already
# fetched are read from its content store).
# Logs: DIR/containerd.log, DIR/socikit.log.
#
# SOCI_UPSTREAM=1 (containerd 2.4 only) also starts upstream AWS
# soci-snapshotter, bin/soci-snapshotter-grpc (scripts/soci-upstream-build.sh),
# as the proxy snapshotter "soci" (examples/containerd/config-v2.4-soci.toml
# is appended to containerd's config) and prints SOCI_ADDRESS too:
#
#   eval "$(SOCI_UPSTREAM=1 SOCI_PLAIN_HTTP_HOSTS=10.200.0.2:5000 scripts/containerd-start.sh)"
#   bin/ctr -a "$CONTAINERD_ADDRESS" image pull --snapshotter soci --plain-http ...
#
# Its root is DIR/soci, socket DIR/soci.sock, log DIR/soci.log, pid
# DIR/soci.pid. Its config, DIR/soci-config.toml, keeps upstream's defaults
# (background fetcher on, prefetch off, SOCI v2 discovery on, v1 off, its own
# content store) and only sets containerd's address (DIR/containerd.sock) and
# adds, for each host:port in SOCI_PLAIN_HTTP_HOSTS (comma-separated), a
# resolver mirror "http://HOST" with insecure = true, so that upstream talks
# plain HTTP to that registry (loopback hosts are plain HTTP anyway). A mirror
# host without the scheme silently turns upstream's lazy pull into a full one.
# SOCI_CONFIG names an upstream TOML config to use instead (copied to
# DIR/soci-config.toml as is); SOCI_LOG_LEVEL defaults to info (upstream's).
# SOCI_PARALLEL_PULL=1 adds upstream's parallel pull mode to that config
# ([pull_modes.parallel_pull_unpack] with the settings upstream's
# docs/parallel-mode.md gives for ECR: 10 downloads per image of 8 MiB
# chunks, 10 unpacks per image, layers discarded once unpacked), the
# harness's upstream-parallel contender (docs/pull.md).
#
# --cri (containerd 2.4 only) enables containerd's CRI plugin with "socikit"
# as the snapshotter of the images it pulls (examples/containerd/
# config-v2.4-cri.toml is appended, the disabled_plugins list dropped), for
# crictl --runtime-endpoint unix://$CONTAINERD_ADDRESS. No CNI network: a
# loopback conf in DIR/cni (Debian's containernetworking-plugins), so run
# host-network pods. CRI_SNAPSHOTTER replaces socikit as the CRI snapshotter
# (overlayfs: the comparison). CRI_SANDBOX_IMAGE names the pod sandbox (pause) image
# (default registry.k8s.io/pause, which needs the internet). With
# SOCIKIT_CRI=1 the snapshotter also serves the CRI image service proxy
# ([cri] enable) on its socket, and CRI_IMAGE_ADDRESS=$SOCIKIT_ADDRESS is
# printed: crictl --image-endpoint unix://$CRI_IMAGE_ADDRESS pulls through it,
# passing --creds on to the snapshotter's registry fetches.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
flavour=v2.4
cri=
while [ $# -gt 0 ]; do
  case $1 in
    --debian) flavour=v1.6; shift ;;
    --cri) cri=1; shift ;;
    *) break ;;
  esac
done
[ -z "$cri" ] || [ $flavour = v2.4 ] || { echo "--cri needs containerd 2.4" >&2; exit 1; }
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
soci=${SOCI_UPSTREAM:-}
[ "$soci" = 0 ] && soci=
if [ -n "$soci" ]; then
  [ $flavour = v2.4 ] || { echo "SOCI_UPSTREAM needs containerd 2.4 (1.6's proxy snapshotter drops the namespace upstream needs)" >&2; exit 1; }
  [ -x "$here/bin/soci-snapshotter-grpc" ] || { echo "missing bin/soci-snapshotter-grpc: run scripts/soci-upstream-build.sh" >&2; exit 1; }
fi

sed -e "s#@DIR@#$dir#g" -e "s#@SOCIKIT_SOCK@#$sock#g" \
  "$here/examples/containerd/config-$flavour.toml" >"$dir/config.toml"
if [ -n "$cri" ]; then
  # The CRI plugins are disabled by the base config: drop that list.
  sed -i '/^disabled_plugins = \[/,/^\]/d' "$dir/config.toml"
  sed -e "s#@DIR@#$dir#g" -e "s#@CRI_SNAPSHOTTER@#${CRI_SNAPSHOTTER:-socikit}#g" \
    "$here/examples/containerd/config-v2.4-cri.toml" >>"$dir/config.toml"
  if [ -n "${CRI_SANDBOX_IMAGE:-}" ]; then
    printf '  [plugins."io.containerd.cri.v1.images".pinned_images]\n    sandbox = "%s"\n' "$CRI_SANDBOX_IMAGE" >>"$dir/config.toml"
  fi
  mkdir -p "$dir/cni" "$dir/certs.d"
  printf '{"cniVersion": "1.0.0", "name": "socikit-lo", "plugins": [{"type": "loopback"}]}\n' >"$dir/cni/10-loopback.conflist"
fi
if [ -n "$soci" ]; then
  soci_sock=$dir/soci.sock
  sed -e "s#@DIR@#$dir#g" -e "s#@SOCI_SOCK@#$soci_sock#g" \
    "$here/examples/containerd/config-v2.4-soci.toml" >>"$dir/config.toml"
  if [ -n "${SOCI_CONFIG:-}" ]; then
    cp "$SOCI_CONFIG" "$dir/soci-config.toml"
  else
    {
      echo "# upstream soci-snapshotter config written by scripts/containerd-start.sh:"
      echo "# upstream's defaults, plus this containerd's socket and plain HTTP for"
      echo "# SOCI_PLAIN_HTTP_HOSTS."
      echo
      # For layers without a zTOC upstream reads the image through containerd
      # (default /run/containerd/containerd.sock; a wrong one costs a 10 s
      # dial timeout per pull, then containerd unpacks them itself).
      echo "[content_store]"
      echo "  containerd_address = \"$dir/containerd.sock\""
      IFS=, read -ra hosts <<<"${SOCI_PLAIN_HTTP_HOSTS:-}"
      for h in "${hosts[@]}"; do
        h=${h#http://}; h=${h#https://}; h=${h%%/*}; h=${h// /}
        [ -n "$h" ] || continue
        printf '\n[[resolver.host."%s".mirrors]]\n  host = "http://%s"\n  insecure = true\n' "$h" "$h"
      done
      if [ -n "${SOCI_PARALLEL_PULL:-}" ] && [ "$SOCI_PARALLEL_PULL" != 0 ]; then
        printf '\n[pull_modes.parallel_pull_unpack]\n  enable = true\n  max_concurrent_downloads = 50\n'
        printf '  max_concurrent_downloads_per_image = 10\n  concurrent_download_chunk_size = "8mb"\n'
        printf '  max_concurrent_unpacks = 20\n  max_concurrent_unpacks_per_image = 10\n  discard_unpacked_layers = true\n'
      fi
    } >"$dir/soci-config.toml"
  fi
fi

wait_for() { # wait_for SOCKET PID NAME LOG
  for _ in $(seq 1 200); do
    [ -S "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited; its log:" >&2; tail -20 "$4" >&2; exit 1; }
    sleep 0.05
  done
  echo "$3 did not create $1; its log:" >&2; tail -20 "$4" >&2; exit 1
}

{
  [ -n "${SOCIKIT_CONFIG:-}" ] && cat "$SOCIKIT_CONFIG"
  if [ -z "${SOCIKIT_CONFIG:-}" ] || ! grep -q '^\[containerd\]' "$SOCIKIT_CONFIG"; then
    printf '\n[containerd]\naddress = "%s"\n' "$dir/containerd.sock"
  fi
  if [ "${SOCIKIT_CRI:-}" = 1 ] && { [ -z "${SOCIKIT_CONFIG:-}" ] || ! grep -q '^\[cri\]' "$SOCIKIT_CONFIG"; }; then
    printf '\n[cri]\nenable = true\n'
  fi
} >"$dir/socikit.toml.new"
mv "$dir/socikit.toml.new" "$dir/socikit.toml"
cfg=(--config "$dir/socikit.toml")
setsid "$here/bin/socikit-snapshotter" "${cfg[@]}" --root "$dir/socikit" --address "$sock" \
  --log-level "${SOCIKIT_LOG_LEVEL:-debug}" >"$dir/socikit.log" 2>&1 </dev/null &
echo $! >"$dir/socikit.pid"
wait_for "$sock" "$(cat "$dir/socikit.pid")" socikit-snapshotter "$dir/socikit.log"

if [ -n "$soci" ]; then
  setsid "$here/bin/soci-snapshotter-grpc" --config "$dir/soci-config.toml" --root "$dir/soci" \
    --address "$soci_sock" --log-level "${SOCI_LOG_LEVEL:-info}" >"$dir/soci.log" 2>&1 </dev/null &
  echo $! >"$dir/soci.pid"
  wait_for "$soci_sock" "$(cat "$dir/soci.pid")" soci-snapshotter-grpc "$dir/soci.log"
fi

PATH=$path setsid "$containerd" --config "$dir/config.toml" --log-level "${CONTAINERD_LOG_LEVEL:-info}" \
  >"$dir/containerd.log" 2>&1 </dev/null &
echo $! >"$dir/containerd.pid"
wait_for "$dir/containerd.sock" "$(cat "$dir/containerd.pid")" containerd "$dir/containerd.log"

echo "CONTAINERD_ADDRESS=$dir/containerd.sock"
echo "SOCIKIT_ADDRESS=$sock"
[ -n "$soci" ] && echo "SOCI_ADDRESS=$soci_sock"
[ -n "$cri" ] && [ "${SOCIKIT_CRI:-}" = 1 ] && echo "CRI_IMAGE_ADDRESS=$sock"
echo "SOCIKIT_DIR=$dir"
