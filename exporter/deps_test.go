package exporter

import (
	"slices"
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps the build-time pipeline free of BuildKit, containerd
// (but for github.com/containerd/platforms), FUSE and the runtime side.
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
	// containerd's platform parser and matcher (and its logger) are small
	// modules of their own, not daemon code.
	bad = slices.DeleteFunc(bad, func(p string) bool {
		return p == "github.com/containerd/platforms" || p == "github.com/containerd/log"
	})
	if len(bad) > 0 {
		t.Errorf("exporter depends on %v", bad)
	}
}
