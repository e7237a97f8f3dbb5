# socikit images. Targets:
#   builder    (the last stage, the default) the builder image for
#              docker buildx create --driver docker-container --driver-opt image=...:
#              our buildkitd (stock BuildKit v0.34.2 plus --output type=soci)
#              and buildctl in /usr/bin, on moby/buildkit:v0.34.2 (its runc),
#              with socikit, socikit-snapshotter, socikit-frontend and
#              socikit-trace beside them
#   binaries   the static binaries alone (docker buildx build --target binaries -o bin/builder .)
# No "# syntax=" line: BuildKit's built-in Dockerfile frontend reads this file
# (named contexts need BuildKit v0.10 or later), so no docker/dockerfile image
# is pulled.
#
# With Docker Hub:   docker buildx build -t REG/socikit/buildkit:TAG --push .
# Without it (scripts/builder-image.sh, the tests), named contexts replace
# what needs Docker Hub:
#   --build-context base=oci-layout://DIR@sha256:...
#       a base made from Debian packages (scripts/builder-base.sh) instead
#       of moby/buildkit;
#   --build-arg BINARIES=prebuilt --build-context prebuilt=DIR
#       binaries built on the host (scripts/builder-binaries.sh) instead of
#       the golang stage (a stage replaced by a named context still resolves
#       the stages it copies from, hence the argument).
# GO_VERSION is the Go release of the build stage's golang image.
ARG GO_VERSION=1.26
# BUILDKIT_VERSION is the stock BuildKit image the base stage is.
ARG BUILDKIT_VERSION=v0.34.2
# SOCIKIT_VERSION is the version the socikit binaries print with --version.
ARG SOCIKIT_VERSION=v0.0.0-dev
# SOCIKIT_COMMIT is the commit they print (.git is not in the build context).
ARG SOCIKIT_COMMIT=unknown
# BINARIES is the stage or named context the builder takes its binaries from.
ARG BINARIES=binaries

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Static binaries, as BuildKit's own Dockerfile builds: the stock image is Alpine.
ENV CGO_ENABLED=0 SKIP_RUNC=1
COPY . .
ARG SOCIKIT_VERSION
ARG SOCIKIT_COMMIT
RUN --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=cache,target=/go/pkg/mod \
    BIN=/out scripts/builder-binaries.sh

FROM scratch AS binaries
COPY --from=build /out/ /

FROM ${BINARIES} AS builder-binaries

FROM moby/buildkit:${BUILDKIT_VERSION} AS base

FROM base AS builder
COPY --from=builder-binaries / /usr/bin/
ENTRYPOINT ["buildkitd"]
