#!/usr/bin/env bash
# Builds upstream AWS soci-snapshotter (v0.16.1, pinned by
# scripts/tools/soci-snapshotter/go.mod) into bin/soci-snapshotter-grpc: the
# benchmark harness's contender, run beside socikit-snapshotter by
# `SOCI_UPSTREAM=1 scripts/containerd-start.sh`.
#
# How and why: upstream's daemon main lives in its `cmd` module, which is not
# on the Go module proxy (it requires the library through a local replace),
# so `go install .../cmd/soci-snapshotter-grpc@v0.16.1` cannot work.
# scripts/tools/soci-snapshotter is a module of our own that requires the
# library module github.com/awslabs/soci-snapshotter v0.16.1 from the proxy
# (and containerd v2.2.9 etc., exactly as upstream's go.mod asks) and holds a
# thin main (~175 lines with comments) that wires upstream's config parsing,
# service.NewSociSnapshotterService (docker config keychain) and bbolt
# metadata store to containerd's snapshotservice on a unix socket. All of the
# snapshotter's behaviour and defaults are upstream's; see the main's doc
# comment for what is not wired (CRI/kube keychains, socket activation).
#
# Upstream's zTOC code is cgo and links zlib statically (-l:libz.a), hence
# gcc and zlib1g-dev. Cold (empty Go build cache, modules already
# downloaded) it compiled in 1 min 47 s on 2 shared cores; with a warm build
# cache it takes ~5-8 s. Module downloads add a little on a fresh machine. The
# build is skipped when bin/soci-snapshotter-grpc is newer than the tools
# module's files (FORCE=1 rebuilds).
#
# Output: bin/soci-snapshotter-grpc (`bin/soci-snapshotter-grpc --version`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_install gcc libc6-dev zlib1g-dev fuse3 ca-certificates

mkdir -p bin
out=$PWD/bin/soci-snapshotter-grpc
tools=scripts/tools/soci-snapshotter
mod=github.com/awslabs/soci-snapshotter
want=$(awk -v m=$mod '$1 == m {print $2} $1 == "require" && $2 == m {print $3}' $tools/go.mod)
[ -n "$want" ] || { echo "no $mod requirement in $tools/go.mod" >&2; exit 1; }
have=$("$out" --version 2>/dev/null | awk '{print $2}' || true)
stale=
for f in $tools/go.mod $tools/go.sum $tools/*.go; do
  [ "$f" -nt "$out" ] && stale=1
done
if [ -n "${FORCE:-}" ] || [ "$have" != "$want" ] || [ -n "$stale" ]; then
  echo "== building upstream soci-snapshotter $want (bin/soci-snapshotter-grpc)"
  start=$(date +%s)
  (cd $tools && GOWORK=off CGO_ENABLED=1 go build -trimpath \
      -ldflags "-X $mod/version.Version=$want" -o "$out" .)
  echo "== built in $(($(date +%s) - start)) s"
fi
"$out" --version
