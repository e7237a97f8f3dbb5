package frontend

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps the frontend off the runtime side: no snapshotter, no
// FUSE, and not the exporter (its BuildKit adapter runs in buildkitd, not
// in the frontend's container). Containerd packages come with BuildKit's
// frontend libraries and are not checked.
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/frontend", "github.com/hanwen/go-fuse",
		"github.com/socikit/socikit/snapshotter", "github.com/socikit/socikit/exporter")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("frontend depends on %v", bad)
	}
}
