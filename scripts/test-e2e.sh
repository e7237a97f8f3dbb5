#!/usr/bin/env bash
# End-to-end tests on real components: builds our buildkitd and buildctl
# (scripts/buildkit-build.sh) and docker buildx with a docker CLI client
# (scripts/buildx-build.sh; ~4-5 min cold, seconds when the Go build cache is
# warm), then runs the integration/e2e module's tests (build tag
# integration). They need root (buildkitd's OCI worker, runc, overlayfs) and
# busybox-static for the base image; without root they skip.
# TestSociImageUpstreamAccepts parses the zTOCs with upstream SOCI as a
# library (cgo zlib: gcc, zlib1g-dev); TestSociImageRunsPlain runs the image
# on containerd 2.4.2 from bin/ (scripts/containerd-build.sh, seconds when
# built) with its default overlayfs snapshotter.
# The TestDocker* tests (docker_test.go, docs/docker.md) build the builder
# image without Docker Hub (scripts/builder-image.sh: host-built binaries,
# Debian-package base), start Debian's Docker Engine 20.10 in a directory of
# its own (scripts/docker-start.sh installs docker.io if missing; stopped
# with scripts/docker-stop.sh at the end) and drive buildx's
# docker-container driver on that image; ~1.5 min warm.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_install busybox-static runc ca-certificates gcc zlib1g-dev
scripts/buildkit-build.sh
scripts/buildx-build.sh
scripts/containerd-build.sh
cd integration/e2e
go vet -tags integration ./...
go test -tags integration -count=1 -timeout 20m -v ./... "$@"
