# syntax=docker/dockerfile:1
# socikit images. Targets:
#   builder    the stock moby/buildkit:v0.34.2 image with our buildkitd in
#              place of the stock one (adds --output type=soci); for
#              docker buildx create --driver docker-container --driver-opt image=...
#   binaries   bin/buildkitd and bin/buildctl only (docker buildx build --target binaries -o .)
# GO_VERSION is the Go release of the build stage's golang image.
ARG GO_VERSION=1.26
# BUILDKIT_VERSION is the stock BuildKit image the builder stage starts from.
ARG BUILDKIT_VERSION=v0.34.2

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# The stock image is Alpine: build static binaries, as BuildKit's own Dockerfile does.
ENV CGO_ENABLED=0 SKIP_RUNC=1
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=cache,target=/go/pkg/mod \
    BIN=/out scripts/buildkit-build.sh

FROM scratch AS binaries
COPY --from=build /out/buildkitd /out/buildctl /

FROM moby/buildkit:${BUILDKIT_VERSION} AS builder
COPY --from=build /out/buildkitd /out/buildctl /usr/bin/
