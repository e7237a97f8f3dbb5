package exporter

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps the build-time pipeline free of BuildKit, containerd
// daemon code, FUSE and the runtime side.
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/exporter", "github.com/moby/buildkit", "github.com/containerd",
		"github.com/hanwen/go-fuse", "github.com/socikit/socikit/snapshotter", "github.com/socikit/socikit/frontend",
		"github.com/socikit/socikit/exporter/buildkit")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("exporter depends on %v", bad)
	}
}
