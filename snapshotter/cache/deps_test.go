package cache_test

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps go-fuse in snapshotter/fs only, and the build side out.
func TestDeps(t *testing.T) {
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/snapshotter/cache",
		"github.com/hanwen/go-fuse", "github.com/moby/buildkit", "github.com/socikit/socikit/exporter",
		"github.com/socikit/socikit/frontend")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("snapshotter/cache depends on forbidden packages: %v", bad)
	}
}
