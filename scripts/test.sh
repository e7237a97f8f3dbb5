#!/usr/bin/env bash
# The project's test command: installs what the tests need (as root on a
# fresh Debian machine), then runs vet, golangci-lint (scripts/lint.sh), the
# unit tests with the race detector, the dependency rules (TestDeps), every
# fuzz target for a short budget, the interop tests against
# upstream SOCI, the runtime tests (containerd 2.4.2 and 1.6 with our
# snapshotter, conformance suite) and the build tests (our buildkitd with the
# soci exporter, buildctl, a registry), and the benchmark harness in quick
# mode (one image, every contender, a shaped link). FUZZTIME overrides the per-target
# budget.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_install gcc libc6-dev zlib1g-dev ca-certificates git

echo "== go vet"
go vet ./...
echo "== lint (golangci-lint over every module of go.work: scripts/lint.sh, .golangci.yml)"
scripts/lint.sh
echo "== unit tests"
go test -race -short -count=1 ./...
echo "== dependency rules (TestDeps: skipped under -short, as they run the go command)"
# In every module of go.work (./... alone stops at nested modules).
go test -count=1 -run '^TestDeps$' $(go list -m -f '{{.Dir}}/...')
echo "== fuzz (${FUZZTIME:=10s} per target)"
FUZZTIME=$FUZZTIME scripts/fuzz.sh
echo "== interop with upstream SOCI"
scripts/test-interop.sh
echo "== runtime: containerd + socikit-snapshotter"
scripts/test-runtime.sh
echo "== build: our buildkitd + buildctl --output type=soci"
scripts/test-e2e.sh
echo "== benchmark harness: unit tests, then a quick run (docs/benchmark.md)"
(cd integration/harness && go vet ./... && go test -race -count=1 ./...)
scripts/bench.sh --quick --out "${BENCH_OUT:-$(mktemp -d /tmp/socikit-bench.XXXXXX)}"
