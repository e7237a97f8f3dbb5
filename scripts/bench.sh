#!/usr/bin/env bash
# The benchmark harness in one command (docs/benchmark.md), as root on a
# fresh Debian machine:
#
#   scripts/bench.sh            full mode: python, node, jvm and toolchain
#                               images, 3 cold starts per image and contender
#   scripts/bench.sh --quick    quick mode (CI): the python image, 1 cold start,
#                               every contender but socikit-lazyprofile
#
# Options: --images LIST (comma-separated), --runs N, --rate RATE (tc rate of
# the registry link, default 200mbit; 0 = unshaped), --latency D (delay per
# HTTP request, default 20ms), --out DIR (default bench-results/<UTC time>),
# --cache DIR (image contexts and buildkitd state, default
# /var/cache/socikit-bench); anything after -- goes to socikit-bench.
#
# It builds the tools (containerd 2.4.2, socikit-snapshotter, our buildkitd,
# upstream soci-snapshotter v0.16.1, socikit, upstream's index builder,
# socikit-trace, the harness), prepares the image contexts from Debian
# packages (scripts/bench-images.sh, cached; with the byte ranges each app
# reads at start-up, traced by socikit-trace), puts a registry behind a
# shaped link (scripts/bench-net.sh), and runs integration/harness
# (bin/socikit-bench), which builds the `# syntax=` frontend image from the
# working tree (scripts/frontend-image.sh), builds the images with our
# buildkitd, pushes them and measures every contender cold, in one run.
# Results: results.json, results.csv, summary.md, charts and the build logs
# (prepare/) in the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
if [ "$(id -u)" != 0 ]; then echo "bench.sh: run as root (netns, tc, containerd, FUSE)" >&2; exit 1; fi

mode=full images= runs= rate=200mbit latency=20ms out= cache=/var/cache/socikit-bench
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=quick ;;
    --images) images=$2; shift ;;
    --runs) runs=$2; shift ;;
    --rate) rate=$2; shift ;;
    --latency) latency=$2; shift ;;
    --out) out=$2; shift ;;
    --cache) cache=$2; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
contenders=()
if [ $mode = quick ]; then
  images=${images:-python} runs=${runs:-1}
  # socikit-lazyprofile needs a lazy start and a rebuild more per image:
  # full runs only (or -- --contenders ...).
  contenders=(--contenders overlayfs,socikit-auto,socikit-reorder,socikit-profiled,socikit-4m,upstream-soci)
else
  images=${images:-python,node,jvm,toolchain} runs=${runs:-3}
fi
out=${out:-$PWD/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}

echo "== bench: building the tools"
apt_install gcc zlib1g-dev iproute2 ca-certificates
scripts/containerd-build.sh >/dev/null
scripts/buildkit-build.sh >/dev/null
scripts/soci-upstream-build.sh >/dev/null
go build -o bin/socikit ./cmd/socikit
(cd integration && CGO_ENABLED=1 go build -o ../bin/upstreamindex ./internal/upstreamindex)
(cd integration/harness && go build -o ../../bin/socikit-bench .)
# The tracer the frontend runs in its profiling step, static, for the byte
# ranges each app reads (bench-images.sh; the frontend image itself is built
# from the working tree by the harness, scripts/frontend-image.sh).
mkdir -p "$cache"
CGO_ENABLED=0 go build -trimpath -o "$cache/socikit-trace" ./cmd/socikit-trace

echo "== bench: image contexts ($images)"
# shellcheck disable=SC2046 # one argument per image
BENCH_TRACE=$cache/socikit-trace scripts/bench-images.sh --cache "$cache" $(tr ',' ' ' <<<"$images") >/dev/null

echo "== bench: shaped registry (rate $rate, latency $latency per request)"
trap 'echo "== bench: ${SECONDS}s in all"; scripts/bench-net.sh down >/dev/null 2>&1 || true' EXIT
scripts/bench-net.sh up --rate "$rate" --latency "$latency"

rate_mbit=$(awk -v r="$rate" 'BEGIN { n = r + 0; if (r ~ /gbit$/) n *= 1000; else if (r ~ /kbit$/) n /= 1000; print n }')
latency_ms=$(awk -v l="$latency" 'BEGIN { n = l + 0; if (l ~ /us$/) n /= 1000; else if (l ~ /[^m]s$/ && l !~ /ms$/) n *= 1000; print n }')
bin/socikit-bench --repo . --contexts "$cache" --images "$images" --runs "$runs" --mode $mode \
  --rate-mbit "$rate_mbit" --latency-ms "$latency_ms" --out "$out" "${contenders[@]}" "${extra[@]}"
