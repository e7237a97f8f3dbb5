package buildkit

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps the BuildKit adapter on the build side: it may use
// BuildKit (and the containerd packages BuildKit's exporter API is made of)
// but never the runtime side, FUSE or the frontend.
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/exporter/buildkit",
		"github.com/hanwen/go-fuse", "github.com/socikit/socikit/snapshotter",
		"github.com/socikit/socikit/frontend", "github.com/socikit/socikit/internal/cli")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("exporter/buildkit depends on forbidden packages: %v", bad)
	}
}
