package fdstore_test

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps the build side out of the fd store.
func TestDeps(t *testing.T) {
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/snapshotter/fdstore",
		"github.com/moby/buildkit", "github.com/socikit/socikit/exporter", "github.com/socikit/socikit/frontend")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("snapshotter/fdstore depends on forbidden packages: %v", bad)
	}
}
