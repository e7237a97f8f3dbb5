package httprange_test

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps the range client small enough for the CLI to share: ggcr
// for registry auth and containerd's logger, no daemon-side stack.
func TestDeps(t *testing.T) {
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/internal/httprange",
		"github.com/socikit/socikit/snapshotter", "github.com/socikit/socikit/exporter", "github.com/socikit/socikit/frontend",
		"github.com/moby/buildkit", "github.com/hanwen/go-fuse", "github.com/containerd/containerd", "github.com/containerd/errdefs")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("internal/httprange depends on forbidden packages: %v", bad)
	}
}
