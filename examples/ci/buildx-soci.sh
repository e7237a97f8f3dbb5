#!/bin/sh
# The shell form of the soci-push job of github-workflow.yml: a docker buildx
# builder on the socikit builder image (docker-container driver), then a
# build that pushes the image with its SOCI index.
#
#   buildx-soci.sh CONTEXT IMAGE [docker buildx build flags...]
#
# SOCIKIT_BUILDER_IMAGE  the builder image (scripts/builder-image.sh, or the
#                        top-level Dockerfile built with Docker Hub); required
# BUILDER_NAME           the buildx builder (default socikit); created when
#                        missing, as docker/setup-buildx-action does
# BUILDKITD_CONFIG       a buildkitd.toml for the builder (--buildkitd-config),
#                        e.g. a plain-HTTP registry: [registry."HOST:PORT"] http = true
# BUILDER_NETWORK        the builder container's network (--driver-opt network=),
#                        host for a registry on the runner's loopback
# SOCI_ATTRS             extra type=soci attributes (default soci-index=v2)
# Extra flags go to docker buildx build, e.g. --build-context base=... or
# --provenance=mode=max. DOCKER (default docker) is the docker CLI.
set -eu
if [ $# -lt 2 ]; then
  echo "usage: $0 CONTEXT IMAGE [docker buildx build flags...]" >&2
  exit 2
fi
ctx=$1
image=$2
shift 2
: "${SOCIKIT_BUILDER_IMAGE:?set SOCIKIT_BUILDER_IMAGE to the socikit builder image}"
docker=${DOCKER:-docker}
name=${BUILDER_NAME:-socikit}

# docker/setup-buildx-action with driver: docker-container,
# driver-opts: image=...[,network=...], buildkitd-config: ...
if ! "$docker" buildx inspect "$name" >/dev/null 2>&1; then
  "$docker" buildx create --name "$name" --driver docker-container \
    --driver-opt "image=$SOCIKIT_BUILDER_IMAGE" \
    ${BUILDER_NETWORK:+--driver-opt "network=$BUILDER_NETWORK"} \
    ${BUILDKITD_CONFIG:+--buildkitd-config "$BUILDKITD_CONFIG"} \
    --bootstrap
fi

# docker/build-push-action with outputs: type=soci,name=IMAGE,push=true
exec "$docker" buildx build --builder "$name" \
  --output "type=soci,name=$image,push=true,${SOCI_ATTRS:-soci-index=v2}" \
  "$@" "$ctx"
