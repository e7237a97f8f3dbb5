//go:build integration

package runtime

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
)

// TestDifferentialPipelinedPull: an image without a SOCI index pulled into
// socikit-snapshotter is fetched and unpacked by the snapshotter itself,
// the pipelined pull (docs/pull.md; here with range requests of 64 KiB,
// four in flight per layer and two layers ahead, so that a layer takes many
// requests), and its tree must be the tree containerd's overlayfs
// snapshotter unpacks from the same image: every path's type, mode, owner,
// size, content hash, symlink target, device numbers, xattrs, mtime (of
// paths with a header of their own) and hard-link group, and what a
// whiteout deletes absent from both. Images: the edge-case corpus, the
// layers of TestDifferentialRootfs, a random corpus, and a 3-layer image
// with 24 MB of the Go installation (busybox below, a layer deleting and
// hiding some of it above). Every layer is the snapshotter's
// (socikit_unpacked_layers_total), none is mounted lazily.
func TestDifferentialPipelinedPull(t *testing.T) {
	requireRoot(t)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	extra := []string{"[pull]", "chunk_size = 65536", "jobs = 4", "layers_ahead = 2"}
	check := func(t *testing.T, repo string, explicit map[string]bool, layers ...[]byte) {
		t.Helper()
		want, got, d := diffViewsConfig(t, extra, repo, 0, 0, layers...)
		if len(want) < 3 {
			t.Fatalf("overlayfs view has %d paths", len(want))
		}
		compareTrees(t, want, got, explicit)
		if v := d.metric(t, "socikit_unpacked_layers_total"); v != fmt.Sprint(len(layers)) {
			t.Errorf("socikit_unpacked_layers_total = %s, want %d (every layer unpacked by the snapshotter)", v, len(layers))
		}
	}
	t.Run("corpus", func(t *testing.T) {
		c := editCorpus(t)
		check(t, "socikit/pipelined-corpus", c.explicit, c.tars()...)
	})
	t.Run("tricky", func(t *testing.T) {
		lower, upper, explicit := diffLayers(t)
		check(t, "socikit/pipelined-tricky", explicit, lower, upper)
	})
	t.Run("random", func(t *testing.T) {
		c := randomCorpus(t, 7)
		check(t, "socikit/pipelined-random", c.explicit, c.tars()...)
	})
	t.Run("go tree", func(t *testing.T) {
		data := goTreeTar(t, 24<<20)
		top, _, _ := topLayer(t, data)
		layers := [][]byte{busyboxTar(t), data, top}
		check(t, "socikit/pipelined-go", tarNames(t, layers...), layers...)
	})
}

// tarNames returns the cleaned names of every header of the tars.
func tarNames(t *testing.T, tars ...[]byte) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, b := range tars {
		tr := tar.NewReader(bytes.NewReader(b))
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names[fstest.Clean(h.Name)] = true
		}
	}
	return names
}
