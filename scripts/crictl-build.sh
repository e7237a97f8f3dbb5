#!/usr/bin/env bash
# Builds crictl (cri-tools) from the Go module proxy into bin/crictl, for the
# CRI runtime tests (integration/runtime, TestCRI*) and examples/kubernetes;
# skipped when bin/crictl already is that version. Installs Debian's
# containernetworking-plugins (the loopback CNI plugin the test containerd's
# CRI plugin is given, scripts/containerd-start.sh --cri).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_install containernetworking-plugins
version=${CRICTL_VERSION:-v1.37.0}
mkdir -p bin
have=$(bin/crictl --version 2>/dev/null | awk '{print $3}' || true)
if [ "$have" != "$version" ]; then
  echo "== building crictl $version"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  GOBIN=$tmp CGO_ENABLED=0 go install -trimpath \
    -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$version" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$version"
  mv "$tmp/crictl" bin/crictl
fi
bin/crictl --version
