#!/usr/bin/env bash
# Builds the builder image's binaries, static (CGO_ENABLED=0), into $BIN
# (default bin/): our buildkitd and buildctl (scripts/buildkit-build.sh),
# socikit, socikit-snapshotter and, where their commands exist,
# socikit-frontend and socikit-trace. The top-level Dockerfile's build stage
# runs this script; scripts/builder-image.sh runs it on the host and passes
# $BIN to the Dockerfile as the "binaries" named context.
#
# Every binary is static and stripped (-s -w). The socikit binaries print --version: SOCIKIT_VERSION (default
# v0.0.0-dev) and SOCIKIT_COMMIT (default: git rev-parse --short=12 HEAD,
# or "unknown" without git) are set with -ldflags -X in
# github.com/socikit/socikit/internal/version. buildkitd prints BuildKit's
# version (v0.34.2+socikit), buildctl BuildKit's.
# BUILDKITD_WORKDIR is passed on to scripts/buildkit-build.sh (its vendored
# work module; give one of your own when another build may run meanwhile).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
BIN=${BIN:-$PWD/bin}
mkdir -p "$BIN"
BIN=$(cd "$BIN" && pwd)
# Static, without symbol tables and DWARF (-s -w): half the compressed size.
export BIN CGO_ENABLED=0 SKIP_RUNC=1 EXTRA_LDFLAGS="-s -w"
version=${SOCIKIT_VERSION:-v0.0.0-dev}
commit=${SOCIKIT_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}

scripts/buildkit-build.sh
ld="-s -w -X github.com/socikit/socikit/internal/version.Version=$version -X github.com/socikit/socikit/internal/version.Commit=$commit"
built=()
for c in socikit socikit-snapshotter socikit-frontend socikit-trace; do
  [ -d "cmd/$c" ] || continue
  go build -trimpath -ldflags "$ld" -o "$BIN/$c" "./cmd/$c"
  built+=("$c")
done
echo "built $BIN/{buildkitd,buildctl} and ${built[*]} ($version, commit $commit)"
