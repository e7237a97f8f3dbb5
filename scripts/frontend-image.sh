#!/usr/bin/env bash
# Builds the `# syntax=` frontend image (frontend/Dockerfile: static
# socikit-frontend + socikit-trace on scratch) with buildctl against a
# running buildkitd and pushes it:
#   scripts/frontend-image.sh --addr unix:///run/buildkit/buildkitd.sock REG/socikit/dockerfile:TAG
# Extra --output attributes (e.g. registry.insecure=true for a plain-HTTP
# registry) come from FRONTEND_OUTPUT_ATTRS. The binaries carry the module
# version and commit (--version).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
addr=${BUILDKIT_HOST:-unix:///run/buildkit/buildkitd.sock}
if [ "${1:-}" = --addr ]; then addr=$2; shift 2; fi
ref=${1:?usage: frontend-image.sh [--addr ADDR] REF}
BIN=${BIN:-$PWD/bin}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
ld="-s -w -X github.com/socikit/socikit/internal/version.Commit=$commit -X github.com/socikit/socikit/internal/version.Version=${SOCIKIT_VERSION:-v0.0.0-dev}"
CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$ctx/socikit-frontend" ./cmd/socikit-frontend
CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$ctx/socikit-trace" ./cmd/socikit-trace
"$BIN/buildctl" --addr "$addr" build --frontend dockerfile.v0 \
  --local context="$ctx" --local dockerfile=frontend \
  --output "type=image,name=$ref,push=true${FRONTEND_OUTPUT_ATTRS:+,$FRONTEND_OUTPUT_ATTRS}"
echo "pushed $ref"
