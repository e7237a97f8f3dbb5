package ztoc_test

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps ztoc free of the daemons' dependencies: it is the format
// library every other part (and other projects) builds on.
func TestDeps(t *testing.T) {
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/ztoc",
		"github.com/moby/buildkit", "github.com/containerd", "github.com/hanwen/go-fuse",
		"github.com/google/go-containerregistry", "github.com/sirupsen/logrus", "testing")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("ztoc depends on forbidden packages: %v", bad)
	}
}
