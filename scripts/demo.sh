#!/usr/bin/env bash
# The main job, end to end on embedded defaults: builds socikit, makes an
# image from local files (no network needed), pushes it to a registry on
# loopback, converts it to a SOCI v2 image, inspects the index, and reads a
# file through the zTOC with HTTP range requests; then the same to an OCI
# layout tar. Until the exporter and snapshotter land, this is the demo of
# the core.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_install ca-certificates git busybox-static

mkdir -p bin
echo "== build socikit and crane (registry + image tool, from the Go module proxy)"
go build -o bin/socikit ./cmd/socikit
GOBIN="$PWD/bin" go install github.com/google/go-containerregistry/cmd/crane@v0.22.1

work=$(mktemp -d)
regpid=
cleanup() { [ -n "$regpid" ] && kill "$regpid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "== make an image: busybox + a slice of the Go source tree (~40 MB)"
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/usr/share/doc"
cp /bin/busybox "$root/bin/busybox"
printf 'NAME="socikit demo"\nID=demo\n' >"$root/etc/os-release"
cp -r "$(go env GOROOT)/src/net" "$(go env GOROOT)/src/crypto" "$(go env GOROOT)/src/runtime" "$root/usr/share/doc/"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 5055)
reg=127.0.0.1:$port
bin/crane registry serve --address "$reg" >"$work/registry.log" 2>&1 &
regpid=$!
for _ in $(seq 50); do curl -fs "http://$reg/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
bin/crane append --insecure --oci-empty-base -f "$work/layer.tar" -t "$reg/demo:latest" >/dev/null
echo "pushed $reg/demo:latest"

echo "== socikit convert (SOCI v2, 1 MiB spans)"
time bin/socikit convert --plain-http --span-size 1048576 "$reg/demo:latest" "$reg/demo:soci"

echo "== socikit inspect"
bin/socikit inspect --plain-http "$reg/demo:soci"

echo "== socikit get-file (zTOC + HTTP range requests only)"
bin/socikit get-file --plain-http "$reg/demo:soci" etc/os-release
bin/socikit get-file --plain-http -o "$work/got" "$reg/demo:soci" usr/share/doc/net/http/server.go
cmp "$work/got" "$root/usr/share/doc/net/http/server.go" && echo "server.go: identical to the original"

echo "== the same image to an OCI layout tar (the CI case without a registry), v1 index"
bin/socikit convert --plain-http --index-version v1 "$reg/demo:latest" "$work/demo-soci.tar"
bin/socikit inspect "$work/demo-soci.tar"
echo "demo: OK"
