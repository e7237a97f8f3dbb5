#!/usr/bin/env bash
# Builds our buildkitd and a matching buildctl into bin/ (or $BIN):
#   bin/buildkitd  BuildKit v0.34.2's stock cmd/buildkitd (same flags, same
#                  buildkitd.toml) plus cmd/buildkitd/socikit.go, added with
#                  go build -overlay, which adds --output type=soci;
#   bin/buildctl   BuildKit v0.34.2's stock buildctl.
# Both come from the module in cmd/buildkitd, which pins BuildKit. No BuildKit
# code is copied into the repository: the overlay JSON that maps our file into
# BuildKit's package directory in the module cache is generated here.
# EXTRA_LDFLAGS is appended to both -ldflags (e.g. "-s -w" for smaller
# binaries, as scripts/builder-binaries.sh does for the builder image).
# Installs runc (Debian) if it is missing. Reuses the Go build cache: the
# first build takes minutes on 2 cores, later ones seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$PWD
BIN=${BIN:-$ROOT/bin}
mkdir -p "$BIN"

[ -n "${SKIP_RUNC:-}" ] || command -v runc >/dev/null || apt_install runc

# Go refuses overlays of files in the module cache, so the build runs in a
# work module (a copy of cmd/buildkitd/go.mod) whose dependencies are vendored;
# the overlay adds our file to the vendored cmd/buildkitd package.
W=${BUILDKITD_WORKDIR:-${TMPDIR:-/tmp}/socikit-buildkitd-build}
rm -rf "$W/vendor"
mkdir -p "$W"
sed "s#=> \.\./\.\.#=> $ROOT#" cmd/buildkitd/go.mod >"$W/go.mod"
cp cmd/buildkitd/go.sum "$W/go.sum"
# Our file, so that go mod vendor copies what it imports (go mod considers
# every build tag; the copy is never compiled in the work module).
cp cmd/buildkitd/socikit.go "$W/socikit.go"
cd "$W"
go mod vendor
BKVER=$(go list -mod=vendor -m -f '{{.Version}}' github.com/moby/buildkit)
overlay="$W/overlay.json"
printf '{"Replace":{"%s":"%s"}}\n' "$W/vendor/github.com/moby/buildkit/cmd/buildkitd/zz_socikit.go" "$ROOT/cmd/buildkitd/socikit.go" >"$overlay"

ldflags="-X github.com/moby/buildkit/version.Version=$BKVER+socikit -X github.com/moby/buildkit/version.Package=github.com/socikit/socikit/cmd/buildkitd ${EXTRA_LDFLAGS:-}"
go build -mod=vendor -trimpath -tags socikit_overlay -overlay "$overlay" -ldflags "$ldflags" -o "$BIN/buildkitd" github.com/moby/buildkit/cmd/buildkitd
go build -mod=vendor -trimpath -ldflags "-X github.com/moby/buildkit/version.Version=$BKVER ${EXTRA_LDFLAGS:-}" -o "$BIN/buildctl" github.com/moby/buildkit/cmd/buildctl
echo "built $BIN/buildkitd and $BIN/buildctl (BuildKit $BKVER)"
