package snapshot

import (
	"context"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
)

// collectFS is a fakeFS that is a Collector: it records the layers the
// snapshots name at each Collect.
type collectFS struct {
	*fakeFS
	cmu      sync.Mutex
	collects [][]string // layer digests listed, per Collect
}

func (f *collectFS) Collect(ctx context.Context, labels func(context.Context) ([]map[string]string, error)) error {
	ls, err := labels(ctx)
	if err != nil {
		return err
	}
	var layers []string
	for _, l := range ls {
		layers = append(layers, l[LabelLayerDigest])
	}
	f.cmu.Lock()
	f.collects = append(f.collects, layers)
	f.cmu.Unlock()
	return nil
}

func (f *collectFS) last(t *testing.T) (n int, layers []string) {
	t.Helper()
	f.cmu.Lock()
	defer f.cmu.Unlock()
	if len(f.collects) == 0 {
		t.Fatal("no Collect")
	}
	return len(f.collects), f.collects[len(f.collects)-1]
}

// TestCollectAfterRemoveAndRestore: a Collector FileSystem is asked to
// collect once the restore at start is over, and after each removal,
// with the layers of the snapshots left.
func TestCollectAfterRemoveAndRestore(t *testing.T) {
	ctx := context.Background()
	fsys := &collectFS{fakeFS: newFakeFS()}
	root := t.TempDir()
	s := newTestSnapshotter(t, root, fsys)
	if err := s.WaitRestore(ctx); err != nil {
		t.Fatal(err)
	}
	if n, layers := fsys.last(t); n != 1 || len(layers) != 0 {
		t.Fatalf("at start with no snapshot: %d collects, layers %v", n, layers)
	}
	for _, l := range []string{"1", "2"} {
		if _, err := s.Prepare(ctx, "extract-"+l, "", layerLabels("sha256:chain"+l, "sha256:layer"+l)); !errdefs.IsAlreadyExists(err) {
			t.Fatalf("Prepare: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = newTestSnapshotter(t, root, fsys)
	defer s.Close()
	if err := s.WaitRestore(ctx); err != nil {
		t.Fatal(err)
	}
	if _, layers := fsys.last(t); len(layers) != 2 {
		t.Fatalf("after the restore: layers %v, want both", layers)
	}
	if err := s.Remove(ctx, "sha256:chain1"); err != nil {
		t.Fatal(err)
	}
	if _, layers := fsys.last(t); len(layers) != 1 || layers[0] != "sha256:layer2" {
		t.Fatalf("after the removal of layer1: layers %v, want layer2 only", layers)
	}
}
