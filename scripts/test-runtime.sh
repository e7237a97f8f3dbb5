#!/usr/bin/env bash
# Runs the runtime tests of socikit-snapshotter (integration/runtime, build
# tag "integration"): containerd's snapshotter conformance suite against our
# snapshotter, and containerd 2.4.2 and Debian's 1.6 pulling and running
# images from a registry on loopback through socikit-snapshotter, lazily
# (SOCI v2 image on 2.4) and by the fallback path; partial fetch measured,
# corrupted spans and a vanished registry, an image indexed by upstream SOCI,
# and a differential rootfs against containerd's overlayfs unpack
# (docs/snapshotter.md); pods through containerd's CRI plugin with crictl,
# lazily, with registry credentials through the snapshotter's CRI image
# service proxy or its docker config, and the Kubernetes example's manifests
# (docs/kubernetes.md). Needs root (mounts, FUSE, runc). Builds what it needs
# first (scripts/containerd-build.sh, scripts/crictl-build.sh, bin/socikit).
# Extra arguments go to `go test` (e.g. -run Conformance).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# gcc + zlib1g-dev: TestUpstreamIndexed builds upstream SOCI (cgo zlib).
apt_install busybox-static gcc zlib1g-dev
scripts/containerd-build.sh
scripts/crictl-build.sh
echo "== building socikit"
go build -o bin/socikit ./cmd/socikit
echo "== runtime tests"
cd integration/runtime
go vet -tags integration ./...
go test -tags integration -count=1 -timeout 20m "$@" ./...
