#!/usr/bin/env bash
# Builds the builder image (the top-level Dockerfile, target builder) with
# buildctl against a running buildkitd (ours: scripts/buildkit-start.sh) and
# pushes it, without Docker Hub:
#
#   scripts/builder-image.sh [--addr ADDR] REF
#   e.g. scripts/builder-image.sh --addr unix:///run/buildkit/buildkitd.sock 127.0.0.1:5000/socikit/buildkit:dev
#
# Two named contexts replace the Dockerfile stages that need Docker Hub:
#   binaries  static binaries built on the host by scripts/builder-binaries.sh
#             (into $BUILDER_BIN, default $TMPDIR/socikit-builder-bin), or
#             the directory $BUILDER_BIN names when BUILDER_PREBUILT=1;
#   base      the Debian-package base from scripts/builder-base.sh (an OCI
#             layout in $TMPDIR/socikit-builder-base), or the layout
#             $BUILDER_BASE names ("DIR@sha256:..."), for moby/buildkit.
# With Docker Hub the Dockerfile needs neither (docker buildx build --target
# builder ... .). The image is pushed with type=image,push=true plus
# $BUILDER_OUTPUT_ATTRS (e.g. registry.insecure=true for a plain-HTTP
# registry). SOCIKIT_VERSION and SOCIKIT_COMMIT go to builder-binaries.sh.
# Prints the pushed reference and digest on the last line: REF@sha256:...
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
addr=${BUILDKIT_HOST:-unix:///run/buildkit/buildkitd.sock}
if [ "${1:-}" = --addr ]; then addr=$2; shift 2; fi
ref=${1:?usage: builder-image.sh [--addr ADDR] REF}
BIN=${BIN:-$PWD/bin}
tmp=${TMPDIR:-/tmp}
bbin=${BUILDER_BIN:-$tmp/socikit-builder-bin}

if [ -z "${BUILDER_PREBUILT:-}" ]; then
  # A work module of its own: bin/ may be rebuilt by someone else meanwhile.
  BIN=$bbin BUILDKITD_WORKDIR=${BUILDKITD_WORKDIR:-$tmp/socikit-builder-work} scripts/builder-binaries.sh >&2
fi
for b in buildkitd buildctl socikit socikit-snapshotter; do
  [ -x "$bbin/$b" ] || { echo "builder-image.sh: $bbin/$b missing" >&2; exit 1; }
done
base=${BUILDER_BASE:-$(scripts/builder-base.sh "$tmp/socikit-builder-base")}
layout=${base%@*}
digest=${base##*@}

meta=$(mktemp -t socikit-builder-meta.XXXXXX)
trap 'rm -f "$meta"' EXIT
"$BIN/buildctl" --addr "$addr" build --progress "${BUILDER_PROGRESS:-plain}" \
  --frontend dockerfile.v0 --local context=. --local dockerfile=. --opt target=builder \
  --opt build-arg:BINARIES=prebuilt --local prebuilt="$bbin" --opt context:prebuilt=local:prebuilt \
  --oci-layout base="$layout" --opt "context:base=oci-layout://base@$digest" \
  --metadata-file "$meta" \
  --output "type=image,name=$ref,push=true${BUILDER_OUTPUT_ATTRS:+,$BUILDER_OUTPUT_ATTRS}" >&2
d=$(sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]*\)".*/\1/p' "$meta" | head -1)
echo "$ref@$d"
