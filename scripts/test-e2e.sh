#!/usr/bin/env bash
# End-to-end tests on real components: builds our buildkitd and buildctl
# (scripts/buildkit-build.sh) and docker buildx with a docker CLI client
# (scripts/buildx-build.sh; ~4-5 min cold, seconds when the Go build cache is
# warm), then runs the integration/e2e module's tests (build tag
# integration). They need root (buildkitd's OCI worker, runc, overlayfs) and
# busybox-static for the base image; without root they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_install busybox-static runc ca-certificates
scripts/buildkit-build.sh
scripts/buildx-build.sh
cd integration/e2e
go vet -tags integration ./...
go test -tags integration -count=1 -timeout 20m -v ./... "$@"
