package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// fakeFS "mounts" a layer by writing a marker file into the mountpoint, so
// the remote path can be tested without root or FUSE.
type fakeFS struct {
	mu         sync.Mutex
	fail       error
	mounts     map[string]map[string]string
	namespaces []string
	calls      []string
}

func newFakeFS() *fakeFS { return &fakeFS{mounts: map[string]map[string]string{}} }

func (f *fakeFS) Mount(ctx context.Context, mp string, labels map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ns, _ := namespaces.Namespace(ctx)
	f.namespaces = append(f.namespaces, ns)
	f.calls = append(f.calls, "mount")
	if f.fail != nil {
		return f.fail
	}
	f.mounts[mp] = labels
	return os.WriteFile(filepath.Join(mp, "lazy"), []byte(labels[LabelLayerDigest]), 0o644)
}

func (f *fakeFS) Check(_ context.Context, mp string, _ map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "check")
	if _, ok := f.mounts[mp]; !ok {
		return errors.New("not mounted")
	}
	return nil
}

func (f *fakeFS) Unmount(_ context.Context, mp string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "unmount")
	delete(f.mounts, mp)
	return os.RemoveAll(filepath.Join(mp, "lazy"))
}

func (f *fakeFS) mounted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.mounts)
}

func layerLabels(target, layer string) snapshots.Opt {
	return snapshots.WithLabels(map[string]string{
		LabelTargetRef:      target,
		LabelLayerDigest:    layer,
		LabelImageRef:       "127.0.0.1:5000/busybox:latest",
		LabelManifestDigest: "sha256:" + strings.Repeat("1", 64),
	})
}

func newTestSnapshotter(t *testing.T, root string, fsys FileSystem) *Snapshotter {
	t.Helper()
	s, err := New(context.Background(), root, fsys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPrepareWithoutLabelsIsOverlay(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "test")
	fsys := newFakeFS()
	s := newTestSnapshotter(t, t.TempDir(), fsys)
	defer s.Close()

	ms, err := s.Prepare(ctx, "base-active", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Type != "bind" {
		t.Fatalf("base mounts = %+v, want one bind mount", ms)
	}
	if err := os.WriteFile(filepath.Join(ms[0].Source, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "base", "base-active"); err != nil {
		t.Fatal(err)
	}
	ms, err = s.Prepare(ctx, "rootfs", "base")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Type != "overlay" || !hasPrefixOption(ms[0], "lowerdir=") || !hasPrefixOption(ms[0], "upperdir=") {
		t.Fatalf("child mounts = %+v, want overlay with lowerdir and upperdir", ms)
	}
	if len(fsys.calls) != 0 {
		t.Errorf("FileSystem called %v for a snapshot without remote labels", fsys.calls)
	}
}

func hasPrefixOption(m mount.Mount, prefix string) bool {
	for _, o := range m.Options {
		if strings.HasPrefix(o, prefix) {
			return true
		}
	}
	return false
}

func TestRemotePrepareCommitsTarget(t *testing.T) {
	ctx := context.Background() // no namespace, as containerd 1.6 sends it (#6061)
	fsys := newFakeFS()
	root := t.TempDir()
	s := newTestSnapshotter(t, root, fsys)

	_, err := s.Prepare(ctx, "extract-1 sha256:chain1", "", layerLabels("sha256:chain1", "sha256:layer1"))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of an indexed layer: err = %v, want ErrAlreadyExists", err)
	}
	if got := fsys.namespaces; len(got) != 1 || got[0] != DefaultNamespace {
		t.Errorf("FileSystem saw namespaces %q, want [%q]", got, DefaultNamespace)
	}
	info, err := s.Stat(ctx, "sha256:chain1")
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != snapshots.KindCommitted || info.Labels[LabelRemote] == "" || info.Labels[LabelLayerDigest] != "sha256:layer1" {
		t.Fatalf("target info = %+v, want a committed remote snapshot with the layer labels", info)
	}
	if _, err := s.Stat(ctx, "extract-1 sha256:chain1"); !errdefs.IsNotFound(err) {
		t.Errorf("the extraction key still exists: %v", err)
	}

	// A container on top sees the lazily mounted layer as its lowerdir.
	ms, err := s.Prepare(ctx, "rootfs", "sha256:chain1")
	if err != nil {
		t.Fatal(err)
	}
	lower := optionValue(ms[0], "lowerdir")
	if _, err := os.Stat(filepath.Join(lower, "lazy")); err != nil {
		t.Fatalf("lowerdir %s is not the remote mount: %v", lower, err)
	}

	// Restart: Close unmounts, New mounts again with the stored labels.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fsys.mounted() != 0 {
		t.Fatalf("Close left %d mounts", fsys.mounted())
	}
	s = newTestSnapshotter(t, root, fsys)
	defer s.Close()
	if err := s.WaitRestore(ctx); err != nil {
		t.Fatal(err)
	}
	fsys.mu.Lock()
	got := fsys.mounts[lower]
	fsys.mu.Unlock()
	if got := got; got[LabelLayerDigest] != "sha256:layer1" {
		t.Fatalf("after restart the layer is mounted with labels %v", got)
	}

	// Remove unmounts.
	if err := s.Remove(ctx, "rootfs"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "sha256:chain1"); err != nil {
		t.Fatal(err)
	}
	if fsys.mounted() != 0 {
		t.Errorf("Remove left %d mounts", fsys.mounted())
	}
	if _, err := os.Stat(filepath.Dir(lower)); !os.IsNotExist(err) {
		t.Errorf("snapshot directory %s not removed: %v", filepath.Dir(lower), err)
	}
}

func optionValue(m mount.Mount, key string) string {
	for _, o := range m.Options {
		if k, v, ok := strings.Cut(o, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func TestRemoteFallback(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"not indexed", ErrNotIndexed},
		{"mount error", errors.New("registry unreachable")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := namespaces.WithNamespace(context.Background(), "test")
			fsys := newFakeFS()
			fsys.fail = tc.err
			s := newTestSnapshotter(t, t.TempDir(), fsys)
			defer s.Close()

			ms, err := s.Prepare(ctx, "extract-1", "", layerLabels("sha256:chain1", "sha256:layer1"))
			if err != nil {
				t.Fatalf("Prepare with a failing FileSystem: %v, want the normal active snapshot", err)
			}
			if len(ms) != 1 || ms[0].Type != "bind" {
				t.Fatalf("mounts = %+v", ms)
			}
			entries, err := os.ReadDir(ms[0].Source)
			if err != nil || len(entries) != 0 {
				t.Fatalf("fallback snapshot is not an empty directory: %v %v", entries, err)
			}
			if _, err := s.Stat(ctx, "sha256:chain1"); !errdefs.IsNotFound(err) {
				t.Errorf("target exists after a failed lazy mount: %v", err)
			}
			if err := s.Commit(ctx, "sha256:chain1", "extract-1"); err != nil {
				t.Fatal(err)
			}
			info, err := s.Stat(ctx, "sha256:chain1")
			if err != nil || info.Labels[LabelRemote] != "" {
				t.Errorf("unpacked layer info = %+v, %v; want a plain committed snapshot", info, err)
			}
		})
	}
}

func TestRemoteParentRemountedWhenLost(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "test")
	fsys := newFakeFS()
	s := newTestSnapshotter(t, t.TempDir(), fsys)
	defer s.Close()
	if _, err := s.Prepare(ctx, "x", "", layerLabels("sha256:c", "sha256:l")); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	fsys.mu.Lock()
	clear(fsys.mounts) // the layer filesystem lost its mount
	fsys.mu.Unlock()
	if _, err := s.Prepare(ctx, "rootfs", "sha256:c"); err != nil {
		t.Fatal(err)
	}
	if fsys.mounted() != 1 {
		t.Errorf("remote parent not mounted again: calls %v", fsys.calls)
	}

	// And if it cannot be mounted, the child is refused rather than half mounted.
	fsys.mu.Lock()
	clear(fsys.mounts)
	fsys.fail = errors.New("gone")
	fsys.mu.Unlock()
	if _, err := s.Prepare(ctx, "rootfs2", "sha256:c"); !errdefs.IsUnavailable(err) {
		t.Fatalf("Prepare over a lost remote layer: %v, want ErrUnavailable", err)
	}
	if _, err := s.Stat(ctx, "rootfs2"); !errdefs.IsNotFound(err) {
		t.Errorf("refused snapshot left behind: %v", err)
	}
}

func TestWithMountOptions(t *testing.T) {
	if _, err := New(context.Background(), t.TempDir(), nil, WithMountOptions("a,b")); err == nil {
		t.Error("WithMountOptions accepted a comma-joined option")
	}
}

// TestCleanupDuringPrepare: Cleanup running while snapshots are prepared
// never removes the directory of one being created (it listed them in a
// read transaction: a "new-" directory made by a concurrent Prepare was
// an orphan to it).
func TestCleanupDuringPrepare(t *testing.T) {
	s := newTestSnapshotter(t, t.TempDir(), newFakeFS())
	ctx := namespaces.WithNamespace(context.Background(), "test")
	if _, err := s.Prepare(ctx, "first", ""); err != nil { // the metadata buckets exist
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := s.Cleanup(ctx); err != nil {
				done <- err
				return
			}
		}
	}()
	for i := range 300 {
		key := fmt.Sprintf("active-%d", i)
		if _, err := s.Prepare(ctx, key, ""); err != nil {
			close(stop)
			t.Fatalf("prepare %d with Cleanup running: %v", i, err)
		}
		if err := s.Remove(ctx, key); err != nil {
			close(stop)
			t.Fatal(err)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
