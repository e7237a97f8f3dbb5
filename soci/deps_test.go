package soci_test

import (
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps soci a format package: the SOCI index and prefetch
// documents, on image-spec and go-digest alone, so that the build side
// (exporter) and the runtime side (snapshotter) can both parse them without
// pulling in each other, a daemon or a registry client.
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/soci",
		"github.com/moby/buildkit", "github.com/containerd", "github.com/hanwen/go-fuse",
		"github.com/google/go-containerregistry", "github.com/sirupsen/logrus", "testing",
		"github.com/socikit/socikit/snapshotter", "github.com/socikit/socikit/exporter",
		"github.com/socikit/socikit/frontend", "github.com/socikit/socikit/internal/cli")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("soci depends on forbidden packages: %v", bad)
	}
}
