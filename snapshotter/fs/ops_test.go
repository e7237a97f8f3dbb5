package fs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
)

func TestOpCountersBuckets(t *testing.T) {
	var c OpCounters
	// Latencies at, just above and far above bounds.
	for _, d := range []time.Duration{0, OpBuckets[0], OpBuckets[0] + 1, OpBuckets[3], time.Minute} {
		c.Observe(OpRead, d)
	}
	want := OpStat{Count: 5, Total: time.Minute + 2*OpBuckets[0] + 1 + OpBuckets[3]}
	want.Buckets[0], want.Buckets[1], want.Buckets[3], want.Buckets[numBuckets] = 2, 1, 1, 1
	if got := c.Stat(OpRead); got != want {
		t.Errorf("stat %+v, want %+v", got, want)
	}
	c.done(OpRead, time.Now().Add(-time.Hour))
	if s := c.Stat(OpRead); s.Count != 6 || s.Total < time.Hour || s.Buckets[numBuckets] != 2 {
		t.Errorf("after a request of an hour: %+v", s)
	}
	if got := c.Count(OpLookup); got != 0 {
		t.Errorf("lookups %d, want 0", got)
	}
	for op := Op(0); op < NumOps; op++ {
		if op.String() == "unknown" || op.String() == "" {
			t.Errorf("op %d has no name", op)
		}
	}
	if NumOps.String() != "unknown" {
		t.Errorf("NumOps named %q", NumOps.String())
	}
}

func TestOpCountersConcurrent(t *testing.T) {
	var c OpCounters
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.done(OpGetattr, time.Now())
			}
		})
	}
	wg.Wait()
	if got := c.Count(OpGetattr); got != 8000 {
		t.Errorf("count %d, want 8000", got)
	}
}

// syncReader is a Reader over a tar in memory, safe for the concurrent
// requests of a mount.
type syncReader struct{ r *bytes.Reader }

func (s syncReader) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return s.r.ReadAt(p, off)
}

// mountCounted mounts a layer of entries, its requests counted in c, and
// returns the mountpoint; it skips the test unless run as root.
func mountCounted(t *testing.T, entries []fstest.Entry, c *OpCounters) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	z, tb := build(t, entries)
	f, err := New(z, syncReader{bytes.NewReader(tb)}, WithOpCounters(c))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m, err := f.Mount(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return dir
}

// TestOpCountersMount counts the requests of a real mount (root only):
// each kind a read-only start-up sends is counted, a name looked up once
// is one LOOKUP and its negative entry none, a symlink read once is not
// read again, and nothing is counted as a request the mount should not
// get.
func TestOpCountersMount(t *testing.T) {
	var c OpCounters
	dir := mountCounted(t, fstest.Tricky(t.Name(), 1000), &c)
	if _, err := os.ReadFile(filepath.Join(dir, "a/file")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadDir(filepath.Join(dir, "many")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Readlink(filepath.Join(dir, "a/sym")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := unix.Lgetxattr(filepath.Join(dir, "opq"), TrustedOpaque, buf); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	for _, op := range []Op{OpLookup, OpRead, OpOpendir, OpReleasedir, OpReadlink, OpGetxattr, OpStatfs} {
		s := c.Stat(op)
		if s.Count == 0 {
			t.Errorf("%s: not counted", op)
			continue
		}
		var sum int64
		for _, n := range s.Buckets {
			sum += n
		}
		if sum != s.Count || s.Total <= 0 {
			t.Errorf("%s: count %d, buckets sum %d, total %v", op, s.Count, sum, s.Total)
		}
	}
	if c.Count(OpReaddir)+c.Count(OpReaddirplus) == 0 {
		t.Error("readdir: not counted")
	}
	if n := c.Count(OpOther); n != 0 {
		t.Errorf("%d requests of other kinds", n)
	}
	// Symlink targets are cached (EnableSymlinkCaching).
	readlinks := c.Count(OpReadlink)
	for range 3 {
		if _, err := os.Stat(filepath.Join(dir, "a/sym")); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.Count(OpReadlink) - readlinks; got != 0 {
		t.Errorf("three stats through a symlink read before: %d READLINKs, want 0", got)
	}
	before := c.Count(OpLookup)
	for range 3 {
		if _, err := os.Lstat(filepath.Join(dir, "no-such-name")); !os.IsNotExist(err) {
			t.Fatalf("stat of a missing name: %v", err)
		}
	}
	if got := c.Count(OpLookup) - before; got != 1 {
		t.Errorf("three stats of a missing name: %d LOOKUPs, want 1 (then the negative entry)", got)
	}
}

// BenchmarkOpCounters is the cost counting adds to each request (two
// clock reads, three atomic adds), against the ~10 µs or more of a FUSE
// round trip.
func BenchmarkOpCounters(b *testing.B) {
	var c OpCounters
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.done(OpGetattr, time.Now())
		}
	})
}
