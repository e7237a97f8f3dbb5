#!/usr/bin/env bash
# Installs the Debian runtime packages the snapshotter tests need (runc,
# containerd 1.6, fuse3) and builds containerd v2.4.2, its runc shim and ctr
# from the Go module proxy into bin/ (pinned by scripts/tools/containerd).
#
# containerd 2.4 needs its own containerd-shim-runc-v2 first on its PATH:
# Debian's 1.6 shim fails with "type with url ...: not found". The Go build
# cache is reused, so a second run takes seconds.
#
# Output: bin/containerd, bin/containerd-shim-runc-v2, bin/ctr,
# bin/socikit-snapshotter.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_install runc containerd fuse3 ca-certificates

mkdir -p bin
bin=$PWD/bin
tools=scripts/tools/containerd
want=$(awk '$1 == "require" && $2 ~ /containerd\/v2$/ {print $3}' $tools/go.mod)
have=$("$bin/containerd" --version 2>/dev/null | awk '{print $3}' || true)
if [ "$have" != "$want" ] || [ ! -x "$bin/containerd-shim-runc-v2" ] || [ ! -x "$bin/ctr" ]; then
  echo "== building containerd $want (containerd, containerd-shim-runc-v2, ctr)"
  # Version info as the upstream Makefile sets it, so `containerd --version` tells.
  ld="-X github.com/containerd/containerd/v2/version.Version=$want"
  (cd $tools && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ld -extldflags -static" -tags "no_btrfs no_devmapper no_zfs" -o "$bin/" \
      github.com/containerd/containerd/v2/cmd/containerd \
      github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
      github.com/containerd/containerd/v2/cmd/ctr)
fi
echo "== building socikit-snapshotter"
go build -o "$bin/socikit-snapshotter" ./cmd/socikit-snapshotter
"$bin/containerd" --version
