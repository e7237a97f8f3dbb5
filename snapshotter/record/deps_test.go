package record_test

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps the recorder small: the profile format, no FUSE, no
// containerd, no build side.
func TestDeps(t *testing.T) {
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/snapshotter/record",
		"github.com/moby/buildkit", "github.com/containerd", "github.com/hanwen/go-fuse",
		"github.com/socikit/socikit/exporter", "github.com/socikit/socikit/frontend")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("snapshotter/record depends on forbidden packages: %v", bad)
	}
}
