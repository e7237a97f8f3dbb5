package profile

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps the profile format free of every daemon and build
// library: the frontend's tracer, the exporter, the snapshotter and the
// CLI all import it.
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/profile", "github.com/moby/buildkit", "github.com/containerd",
		"github.com/hanwen/go-fuse", "github.com/google/go-containerregistry", "github.com/socikit/socikit/snapshotter",
		"github.com/socikit/socikit/frontend", "github.com/socikit/socikit/exporter", "github.com/socikit/socikit/internal/cli")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("profile depends on %v", bad)
	}
}
