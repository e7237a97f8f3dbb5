#!/usr/bin/env bash
# Interop tests of socikit's zTOCs against upstream AWS SOCI
# (github.com/awslabs/soci-snapshotter, pinned in integration/go.mod).
#
# Usage: scripts/test-interop.sh [--bench] [go test flags...]
#   --bench   also run the index/compress benchmarks (-benchtime=3x) and
#             print their ns/op ratios
#   other arguments go to `go test` (e.g. -v, -run TestGoTarTestdata)
#
# Upstream's zinfo is C (cgo) linked against zlib, so this needs gcc and
# zlib1g-dev; they are installed when missing. SOCIKIT_TESTDATA=dir keeps the
# generated test layers between runs.
set -euo pipefail

bench=0
args=()
for a in "$@"; do
	case "$a" in
	--bench) bench=1 ;;
	*) args+=("$a") ;;
	esac
done

need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
if ((${#need[@]})); then
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
	export DEBIAN_FRONTEND=noninteractive
	if ! $sudo apt-get install -y --no-install-recommends "${need[@]}"; then
		$sudo apt-get update
		$sudo apt-get install -y --no-install-recommends "${need[@]}"
	fi
fi

cd "$(dirname "$0")/../integration"
export CGO_ENABLED=1 TZ=UTC

go test -tags integration -count=1 -timeout 20m "${args[@]}" ./...

if ((bench)); then
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
	go test -tags integration -count=1 -timeout 20m -run '^$' -bench . -benchtime=3x -benchmem ./... | tee "$out"
	awk '
		/^Benchmark/ { name = $1; sub(/-[0-9]+$/, "", name); ns[name] = $3 }
		END {
			if (ns["BenchmarkIndexUpstream"] && ns["BenchmarkIndexSocikit"])
				printf "index:       socikit/upstream time = %.2f\n", ns["BenchmarkIndexSocikit"] / ns["BenchmarkIndexUpstream"]
			if (ns["BenchmarkMultiLayerUpstream"] && ns["BenchmarkMultiLayerSocikit"])
				printf "multi-layer: socikit/upstream time = %.2f\n", ns["BenchmarkMultiLayerSocikit"] / ns["BenchmarkMultiLayerUpstream"]
			if (ns["BenchmarkCompressPlainGzip"] && ns["BenchmarkCompressSocikit"])
				printf "compress:    socikit/plain-gzip time = %.2f\n", ns["BenchmarkCompressSocikit"] / ns["BenchmarkCompressPlainGzip"]
		}' "$out"
fi
