package snapshot

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// startFS is a fakeFS that is a StartObserver.
type startFS struct {
	*fakeFS
	smu     sync.Mutex
	started []string // "key mountpoint..."
}

func (f *startFS) Started(_ context.Context, key string, mps []string) {
	f.smu.Lock()
	defer f.smu.Unlock()
	f.started = append(f.started, key)
	f.started = append(f.started, mps...)
}

func (f *startFS) take() []string {
	f.smu.Lock()
	defer f.smu.Unlock()
	s := f.started
	f.started = nil
	return s
}

// TestStarted: a container's root filesystem (Prepare of a key that is not
// an unpack), its Mounts and views over remote parents are reported with
// the remote parents' mountpoints, topmost first; unpacks and snapshots
// without remote parents are not.
func TestStarted(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "test")
	fsys := &startFS{fakeFS: newFakeFS()}
	s := newTestSnapshotter(t, t.TempDir(), fsys)
	defer s.Close()

	// Two remote layers, then one unpacked on top.
	if _, err := s.Prepare(ctx, "extract-1 sha256:c1", "", layerLabels("sha256:c1", "sha256:l1")); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "extract-2 sha256:c2", "sha256:c1", layerLabels("sha256:c2", "sha256:l2")); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	fsys.mu.Lock()
	fsys.fail = ErrNotIndexed
	fsys.mu.Unlock()
	if _, err := s.Prepare(ctx, "extract-3 sha256:c3", "sha256:c2", layerLabels("sha256:c3", "sha256:l3")); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "sha256:c3", "extract-3 sha256:c3"); err != nil {
		t.Fatal(err)
	}
	if got := fsys.take(); len(got) != 0 {
		t.Fatalf("unpacks reported as starts: %v", got)
	}
	// mp is the mountpoint FileSystem.Mount was given for target name.
	mp := func(name string) string {
		t.Helper()
		fsys.mu.Lock()
		defer fsys.mu.Unlock()
		for m, labels := range fsys.mounts {
			if labels[LabelTargetRef] == name {
				return m
			}
		}
		t.Fatalf("%s is not mounted", name)
		return ""
	}
	want := []string{"rootfs", mp("sha256:c2"), mp("sha256:c1")}

	if _, err := s.Prepare(ctx, "rootfs", "sha256:c3"); err != nil {
		t.Fatal(err)
	}
	if got := fsys.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("Prepare: started %v, want %v", got, want)
	}
	if _, err := s.Mounts(ctx, "rootfs"); err != nil {
		t.Fatal(err)
	}
	if got := fsys.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("Mounts: started %v, want %v", got, want)
	}
	if _, err := s.View(ctx, "view", "sha256:c1"); err != nil {
		t.Fatal(err)
	}
	if got, w := fsys.take(), []string{"view", mp("sha256:c1")}; !reflect.DeepEqual(got, w) {
		t.Errorf("View: started %v, want %v", got, w)
	}
	// No remote parent, no parent: nothing.
	if _, err := s.Prepare(ctx, "base", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "plain", "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "rootfs2", "plain"); err != nil {
		t.Fatal(err)
	}
	if got := fsys.take(); len(got) != 0 {
		t.Errorf("snapshots without remote parents reported: %v", got)
	}
}
