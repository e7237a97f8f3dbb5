package cli

import (
	"slices"
	"testing"

	"github.com/socikit/socikit/internal/depcheck"
)

// TestDeps keeps the CLI off the daemon-side stacks: it works on images
// through go-containerregistry only, and shares the exporter package (not
// its BuildKit adapter) with the soci exporter. `socikit pull`, which needs
// containerd's client, is the package internal/cli/pull, registered by
// cmd/socikit with WithCommand.
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	for _, pkg := range []string{"github.com/socikit/socikit/internal/cli", "github.com/socikit/socikit/internal/image"} {
		bad, err := depcheck.Forbidden(pkg, "github.com/moby/buildkit", "github.com/containerd", "github.com/hanwen/go-fuse",
			"github.com/socikit/socikit/snapshotter", "github.com/socikit/socikit/exporter/buildkit", "github.com/socikit/socikit/frontend")
		if err != nil {
			t.Fatal(err)
		}
		// containerd's platform parser and matcher (and its logger) are
		// small modules of their own, not the daemon's client.
		bad = slices.DeleteFunc(bad, func(p string) bool {
			return p == "github.com/containerd/platforms" || p == "github.com/containerd/log"
		})
		if len(bad) > 0 {
			t.Errorf("%s depends on %v", pkg, bad)
		}
	}
}
