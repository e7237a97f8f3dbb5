package snapshot

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// gatedFS is a fakeFS whose mounts wait for gate to be closed, counting
// how many wait at once.
type gatedFS struct {
	*fakeFS
	gate     chan struct{}
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	started  chan string
}

func (g *gatedFS) Mount(ctx context.Context, mp string, labels map[string]string) error {
	n := g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	for {
		m := g.maxSeen.Load()
		if n <= m || g.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	g.started <- mp
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.fakeFS.Mount(ctx, mp, labels)
}

// TestRestoreInBackground: New returns while the remote snapshots of the
// metadata are still being mounted again, at most WithRestoreJobs at a
// time; a snapshot stacked on one of them waits for it.
func TestRestoreInBackground(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "test")
	root := t.TempDir()
	const layers = 5
	s := newTestSnapshotter(t, root, newFakeFS())
	for i := range layers {
		if _, err := s.Prepare(ctx, fmt.Sprintf("x%d", i), "", layerLabels(fmt.Sprintf("sha256:c%d", i), fmt.Sprintf("sha256:l%d", i))); !errdefs.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	g := &gatedFS{fakeFS: newFakeFS(), gate: make(chan struct{}), started: make(chan string, layers)}
	start := time.Now()
	s, err := New(ctx, root, g, WithRestoreJobs(2))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("New took %v with every restore blocked", took)
	}
	<-g.started
	<-g.started // two mounts waiting: the limit
	select {
	case mp := <-g.started:
		t.Fatalf("a third restore (%s) started with WithRestoreJobs(2)", mp)
	case <-time.After(100 * time.Millisecond):
	}

	// A container's snapshot over a layer still restoring waits for it.
	var wg sync.WaitGroup
	wg.Add(1)
	var prepErr error
	go func() {
		defer wg.Done()
		_, prepErr = s.Prepare(ctx, "rootfs", "sha256:c3")
	}()
	if _, err := s.Stat(ctx, "sha256:c3"); err != nil { // metadata calls do not wait
		t.Fatal(err)
	}
	close(g.gate)
	wg.Wait()
	if prepErr != nil {
		t.Fatalf("Prepare over a restored layer: %v", prepErr)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.WaitRestore(wctx); err != nil {
		t.Fatal(err)
	}
	if got := g.mounted(); got != layers {
		t.Errorf("%d layers mounted after the restore, want %d (calls %v)", got, layers, g.calls)
	}
	if m := g.maxSeen.Load(); m != 2 {
		t.Errorf("at most %d restores at once, want 2", m)
	}
	g.mu.Lock()
	mounts := 0
	for _, c := range g.calls {
		if c == "mount" {
			mounts++
		}
	}
	g.mu.Unlock()
	if mounts != layers {
		t.Errorf("%d mounts, want %d: the Prepare must not mount a restoring layer a second time", mounts, layers)
	}
}

// TestCloseStopsRestore: Close does not wait for mounts that cannot finish.
func TestCloseStopsRestore(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "test")
	root := t.TempDir()
	s := newTestSnapshotter(t, root, newFakeFS())
	if _, err := s.Prepare(ctx, "x", "", layerLabels("sha256:c", "sha256:l")); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	g := &gatedFS{fakeFS: newFakeFS(), gate: make(chan struct{}), started: make(chan string, 1)}
	s, err := New(ctx, root, g)
	if err != nil {
		t.Fatal(err)
	}
	<-g.started
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a blocked restore")
	}
}
