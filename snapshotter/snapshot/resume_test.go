package snapshot

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// resumingFS is a fakeFS that has kept mounts (a Resumer): resumable
// mountpoints are served without Mount; broken ones fail to resume.
type resumingFS struct {
	*fakeFS
	mu        sync.Mutex
	resumable map[string]bool // mountpoint -> resumes (false: fails)
	resumed   []string
	done      int
}

func (r *resumingFS) Resume(ctx context.Context, mp string, labels map[string]string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok, kept := r.resumable[mp]
	if !kept {
		return false, nil
	}
	if !ok {
		return true, errors.New("broken kept mount")
	}
	r.resumed = append(r.resumed, mp)
	r.fakeFS.mu.Lock()
	r.fakeFS.mounts[mp] = labels
	r.fakeFS.mu.Unlock()
	return true, nil
}

func (r *resumingFS) RestoreDone(context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done++
}

// TestRestoreResumes: the restore asks the Resumer first; a kept mount
// resumed is not mounted again, one it fails to resume or does not have
// is mounted; RestoreDone is called once, after the restore.
func TestRestoreResumes(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "test")
	root := t.TempDir()
	f1 := newFakeFS()
	s := newTestSnapshotter(t, root, f1)
	for i := range 3 {
		if _, err := s.Prepare(ctx, fmt.Sprintf("x%d", i), "", layerLabels(fmt.Sprintf("sha256:c%d", i), fmt.Sprintf("sha256:l%d", i))); !errdefs.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	f1.mu.Lock()
	mps := slices.Sorted(maps.Keys(f1.mounts))
	f1.mu.Unlock()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(mps) != 3 {
		t.Fatalf("%d remote mountpoints", len(mps))
	}

	r := &resumingFS{fakeFS: newFakeFS(), resumable: map[string]bool{mps[0]: true, mps[1]: false}}
	s, err := New(ctx, root, r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WaitRestore(ctx); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.resumed) != 1 || r.resumed[0] != mps[0] {
		t.Errorf("resumed %v, want %s", r.resumed, mps[0])
	}
	if r.done != 1 {
		t.Errorf("RestoreDone called %d times", r.done)
	}
	mounts := 0
	for _, c := range r.fakeFS.calls {
		if c == "mount" {
			mounts++
		}
	}
	if mounts != 2 { // the broken kept mount and the one not kept
		t.Errorf("%d mounts after the restore (%v), want 2", mounts, r.fakeFS.calls)
	}
	for _, mp := range mps {
		if _, ok := r.fakeFS.mounts[mp]; !ok {
			t.Errorf("%s not served after the restore", mp)
		}
	}
}
