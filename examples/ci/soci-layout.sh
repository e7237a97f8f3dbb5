#!/bin/sh
# Builds a Dockerfile with our buildkitd and writes the image and its SOCI
# index into an OCI layout tar: no registry involved.
#
#   soci-layout.sh CONTEXT OUT.tar [buildctl build flags...]
#
# BUILDKIT_HOST names our buildkitd (scripts/buildkit-start.sh prints it).
# SOCI_ATTRS adds soci-* attributes (default soci-index=v2; any soci-* key
# makes our buildkitd answer type=oci with the SOCI-indexed layout).
# Extra flags go to buildctl build, e.g. the base image:
#   --opt context:base=docker-image://docker.io/library/busybox:latest
set -eu
if [ $# -lt 2 ]; then
  echo "usage: $0 CONTEXT OUT.tar [buildctl build flags...]" >&2
  exit 2
fi
ctx=$1
out=$2
shift 2
exec "${BUILDCTL:-buildctl}" build \
  --frontend dockerfile.v0 \
  --local context="$ctx" --local dockerfile="$ctx" \
  --output "type=oci,dest=$out,${SOCI_ATTRS:-soci-index=v2}" \
  "$@"
