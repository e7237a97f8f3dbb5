#!/usr/bin/env bash
# The main job, end to end on embedded defaults, as root on a fresh Debian
# machine (no network beyond the Go module proxy and Debian's packages):
#   1. builds socikit, our buildkitd + buildctl, containerd v2.4.2 and
#      socikit-snapshotter (minutes the first time, seconds after);
#   2. starts a registry on loopback and pushes a base image made from local
#      files (busybox + a slice of the Go source tree);
#   3. builds examples/hello with buildctl --output type=soci: the layers are
#      compressed and indexed in one pass, the SOCI v2 index is pushed with
#      the image;
#   4. inspects the index and reads a file through the zTOC with HTTP range
#      requests;
#   4b. builds the `# syntax=` frontend image and examples/startup through
#      it: the start-up is profiled inside the build (byte ranges), the
#      layer is reordered, spans are cut around the hot ranges, the prefetch
#      list is exactly the hot spans, the profile is stored with the image;
#      `socikit inspect --svg` draws it;
#   5. converts the base image with `socikit convert` (images built
#      elsewhere) to an OCI layout tar;
#   6. starts containerd with socikit-snapshotter, pulls the image lazily and
#      runs it: the container starts before the image has been downloaded
#      (`socikit status` shows how much was fetched); then the profiled image,
#      and `socikit profile export` writes what the snapshotter saw it read.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
if [ "$(id -u)" != 0 ]; then echo "demo.sh: run as root (buildkitd, containerd and FUSE need it)" >&2; exit 1; fi
apt_install ca-certificates git busybox-static curl python3

mkdir -p bin
echo "== build: socikit, crane (registry), buildkitd + buildctl, containerd + socikit-snapshotter"
go build -o bin/socikit ./cmd/socikit
GOBIN="$PWD/bin" go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
scripts/buildkit-build.sh
scripts/containerd-build.sh

work=$(mktemp -d /tmp/socikit-demo.XXXXXX)
regpid= bkroot= ctrdir=
cleanup() {
  set +e
  [ -n "$ctrdir" ] && scripts/containerd-stop.sh "$ctrdir" >/dev/null 2>&1
  [ -n "$bkroot" ] && [ -f "$bkroot/buildkitd.pid" ] && kill "$(cat "$bkroot/buildkitd.pid")" 2>/dev/null
  [ -n "$regpid" ] && kill "$regpid" 2>/dev/null
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
bin/crane registry serve --address "$reg" >"$work/registry.log" 2>&1 &
regpid=$!
for _ in $(seq 50); do curl -fs "http://$reg/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== base image: busybox + a slice of the Go source tree (~40 MB), pushed to $reg/base:latest"
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/usr/share/doc"
cp /bin/busybox "$root/bin/busybox"
for t in sh ls cat wc echo head seq mkdir; do ln -s busybox "$root/bin/$t"; done
printf 'NAME="socikit demo"\nID=demo\n' >"$root/etc/os-release"
cp -r "$(go env GOROOT)/src/net" "$(go env GOROOT)/src/crypto" "$(go env GOROOT)/src/runtime" "$root/usr/share/doc/"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .
bin/crane append --insecure --oci-empty-base --platform linux/amd64 -f "$work/layer.tar" -t "$reg/base:latest" >/dev/null 2>&1
bin/crane mutate --insecure "$reg/base:latest" --set-platform linux/amd64 -t "$reg/base:latest" >/dev/null 2>&1 || true

echo "== buildctl build --output type=soci (our buildkitd)"
bkroot=$(mktemp -d /tmp/socikit-buildkitd.XXXXXX)
addr=$(BUILDKITD_ROOT=$bkroot BUILDKITD_REGISTRIES="$reg" scripts/buildkit-start.sh)
time bin/buildctl --addr "$addr" build --frontend dockerfile.v0 \
  --local context=examples/hello --local dockerfile=examples/hello \
  --opt context:base=docker-image://$reg/base:latest \
  --output "type=soci,name=$reg/hello:latest,push=true,registry.insecure=true,soci-span-size=auto" 2>&1 | tail -5

echo "== socikit inspect $reg/hello:latest"
bin/socikit inspect --plain-http "$reg/hello:latest"
echo "== socikit get-file (zTOC + HTTP range requests only)"
bin/socikit get-file --plain-http "$reg/hello:latest" etc/os-release
bin/socikit get-file --plain-http -o "$work/got" "$reg/hello:latest" usr/share/doc/net/http/server.go
cmp "$work/got" "$root/usr/share/doc/net/http/server.go" && echo "server.go: identical to the original"

echo "== the # syntax= frontend: its image, then examples/startup built through it"
FRONTEND_OUTPUT_ATTRS=registry.insecure=true scripts/frontend-image.sh --addr "$addr" "$reg/socikit/dockerfile:demo" 2>&1 | tail -1
time bin/buildctl --addr "$addr" build --progress plain --frontend dockerfile.v0 \
  --local context=examples/startup --local dockerfile=examples/startup \
  --opt build-arg:BUILDKIT_SYNTAX="$reg/socikit/dockerfile:demo" \
  --opt context:base=docker-image://$reg/base:latest \
  --output "type=soci,name=$reg/startup:latest,push=true,registry.insecure=true" >"$work/startup-build.log" 2>&1 ||
  { tail -30 "$work/startup-build.log"; exit 1; }
grep -E '\[socikit\]|socikit-trace|socikit:|building SOCI index' "$work/startup-build.log" | grep -v '^#[0-9]* DONE' | cut -c1-150
bin/socikit inspect --plain-http "$reg/startup:latest"
svg=/tmp/socikit-demo-startup.svg
bin/socikit inspect --plain-http --svg "$svg" "$reg/startup:latest" && echo "picture of the spans the start-up reads: $svg"

echo "== socikit convert: the base image (built elsewhere) to an OCI layout tar with a SOCI v2 index"
bin/socikit convert --plain-http "$reg/base:latest" "$work/base-soci.tar"
bin/socikit inspect "$work/base-soci.tar" >"$work/inspect.txt"
head -3 "$work/inspect.txt"

echo "== containerd v2.4.2 + socikit-snapshotter: lazy pull and run"
ctrdir=$(mktemp -d /tmp/socikit-ctrd.XXXXXX)
metrics=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'metrics_address = "%s"\n' "$metrics" >"$ctrdir/socikit.toml"
eval "$(SOCIKIT_CONFIG=$ctrdir/socikit.toml scripts/containerd-start.sh "$ctrdir")"
ctr() { bin/ctr -a "$CONTAINERD_ADDRESS" -n demo "$@"; }
time ctr image pull --snapshotter socikit --plain-http "$reg/hello:latest" >/dev/null
time ctr run --rm --snapshotter socikit "$reg/hello:latest" demo-hello /bin/sh -c 'cat /etc/os-release; wc -c /data/random.bin'
bin/socikit status --address "$metrics"
echo "== the profiled image, lazily: prefetch of the hot spans, then its start-up"
time ctr image pull --snapshotter socikit --plain-http "$reg/startup:latest" >/dev/null
time ctr run --rm --snapshotter socikit "$reg/startup:latest" demo-startup
bin/socikit status --address "$metrics"
echo "== socikit profile export: what the snapshotter saw the start-up read (feed it to the next build)"
bin/socikit profile export --address "$metrics" -o "$work/lazy-profile.json" "$reg/startup:latest"
echo "demo: OK"
