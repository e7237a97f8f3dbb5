#!/usr/bin/env bash
# Builds docker buildx (the version pinned by scripts/tools/buildx) from the Go
# module proxy into bin/docker-buildx (or $BIN), and makes sure a docker CLI
# client is present (Debian's docker.io client if none is; no docker daemon is
# installed or started: buildx talks to our buildkitd through its remote
# driver).
#
# The plugin is installed where the docker CLI looks for it when DOCKER_CONFIG
# is set: $DOCKER_CONFIG/cli-plugins/docker-buildx, if DOCKER_CONFIG is given;
# otherwise only bin/docker-buildx is written (the e2e tests make their own
# DOCKER_CONFIG and link the plugin there).
#
# A cold build takes ~5 min on 2 cores; later runs reuse bin/docker-buildx when
# its version matches, or the Go build cache.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
BIN=${BIN:-$PWD/bin}
mkdir -p "$BIN"
tools=scripts/tools/buildx

if ! command -v docker >/dev/null; then
  # Debian 12 has no client-only package: docker.io brings the client (20.10,
  # which runs CLI plugins) and a daemon. A policy-rc.d that refuses service
  # starts keeps the daemon from being started by the package's scripts.
  rc=/usr/sbin/policy-rc.d
  added=
  if [ ! -e $rc ] && [ "$(id -u)" = 0 ]; then
    printf '#!/bin/sh\nexit 101\n' >$rc && chmod +x $rc && added=1
  fi
  apt_install docker.io || { [ -z "$added" ] || rm -f $rc; exit 1; }
  [ -z "$added" ] || rm -f $rc
fi

want=$(awk '$1 == "require" && $2 == "github.com/docker/buildx" {print $3}' $tools/go.mod)
have=$("$BIN/docker-buildx" version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "== building docker buildx $want"
  ld="-X github.com/docker/buildx/version.Version=$want -X github.com/docker/buildx/version.Package=github.com/docker/buildx"
  (cd $tools && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$BIN/docker-buildx" github.com/docker/buildx/cmd/buildx)
fi
if [ -n "${DOCKER_CONFIG:-}" ]; then
  mkdir -p "$DOCKER_CONFIG/cli-plugins"
  ln -sf "$BIN/docker-buildx" "$DOCKER_CONFIG/cli-plugins/docker-buildx"
fi
"$BIN/docker-buildx" version
