//go:build tools

// Package tools records the buildx command scripts/buildx-build.sh builds,
// so that `go mod tidy` keeps its dependencies pinned.
package tools

import (
	_ "github.com/docker/buildx/cmd/buildx"
)
