package snapshot

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps the snapshotter off the build side, and this package off
// FUSE: the layer filesystem comes in through the FileSystem seam.
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	for pkg, forbidden := range map[string][]string{
		"github.com/socikit/socikit/snapshotter/snapshot": {"github.com/moby/buildkit", "github.com/hanwen/go-fuse",
			"github.com/socikit/socikit/exporter", "github.com/socikit/socikit/frontend", "github.com/socikit/socikit/snapshotter/fs"},
		"github.com/socikit/socikit/snapshotter/service": {"github.com/moby/buildkit",
			"github.com/socikit/socikit/exporter", "github.com/socikit/socikit/frontend"},
	} {
		bad, err := depcheck.Forbidden(pkg, forbidden...)
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) > 0 {
			t.Errorf("%s depends on %v", pkg, bad)
		}
	}
}
