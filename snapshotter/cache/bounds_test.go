package cache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// spanFile returns the path of span id of layer d in c.
func spanFile(c *Cache, d string, id SpanID) string {
	return filepath.Join(c.Dir(), "sha256", dg(d).Encoded(), fmt.Sprint(id))
}

// TestCorruptSpanFile damages span files on disk in the ways a disk, a
// full filesystem or another process can, and checks that no read returns
// their bytes: each is detected (ErrCorrupt or not cached), dropped, and
// a new Put makes the span readable again.
func TestCorruptSpanFile(t *testing.T) {
	data := bytes.Repeat([]byte("socikit-span-"), 4096)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"flipped byte", func(t *testing.T, p string) {
			b, _ := os.ReadFile(p)
			b[1000] ^= 0x40
			os.WriteFile(p, b, 0o600)
		}},
		{"truncated", func(t *testing.T, p string) { os.Truncate(p, 5000) }},
		{"trailer cut", func(t *testing.T, p string) { os.Truncate(p, int64(len(data))) }},
		{"grown", func(t *testing.T, p string) {
			f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("xx"))
			f.Close()
		}},
		{"zeroed", func(t *testing.T, p string) { os.WriteFile(p, make([]byte, len(data)+trailerSize), 0o600) }},
		{"removed", func(t *testing.T, p string) { os.Remove(p) }},
		{"old format", func(t *testing.T, p string) {
			os.WriteFile(p, append(bytes.Clone(data[:len(data)-trailerSize]), data[:trailerSize]...), 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c, err := Open(dir, WithNoSync())
			if err != nil {
				t.Fatal(err)
			}
			l, _ := c.Acquire(dg("a"))
			if err := l.Put(2, data); err != nil {
				t.Fatal(err)
			}
			l.Release()
			tc.damage(t, spanFile(c, "a", 2))
			// A new process: the span is checked at its first open.
			c2, err := Open(dir, WithNoSync())
			if err != nil {
				t.Fatal(err)
			}
			l2, _ := c2.Acquire(dg("a"))
			defer l2.Release()
			p := make([]byte, 100)
			if _, ok := l2.Has(2); ok {
				n, err := l2.ReadAt(2, p, 950)
				if err == nil {
					t.Fatalf("read of a damaged span succeeded: %q", p[:n])
				}
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("read of a damaged span: %v, want ErrCorrupt", err)
				}
			}
			if _, ok := l2.Has(2); ok {
				t.Fatal("damaged span still cached")
			}
			if c2.Size() != 0 {
				t.Fatalf("size %d after the damaged span was dropped", c2.Size())
			}
			// Fetched again: readable.
			if err := l2.Put(2, data); err != nil {
				t.Fatal(err)
			}
			if n, err := l2.ReadAt(2, p, 950); err != nil || !bytes.Equal(p[:n], data[950:1050]) {
				t.Fatalf("read after Put: %d %v", n, err)
			}
		})
	}
}

// TestTruncatedWhileOpen truncates a span file this process has open and
// checked: the short read is an error (ErrCorrupt), never short data.
func TestTruncatedWhileOpen(t *testing.T) {
	c, _ := Open(t.TempDir(), WithNoSync())
	l, _ := c.Acquire(dg("a"))
	defer l.Release()
	data := bytes.Repeat([]byte{7}, 10000)
	l.Put(0, data)
	p := make([]byte, 100)
	if _, err := l.ReadAt(0, p, 0); err != nil {
		t.Fatal(err)
	}
	os.Truncate(spanFile(c, "a", 0), 5000)
	if n, err := l.ReadAt(0, p, 4950); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read across the cut: %d %v, want ErrCorrupt", n, err)
	}
	if _, ok := l.Has(0); ok {
		t.Fatal("truncated span still cached")
	}
}

// fullDisk makes span files whose writes fail with ENOSPC once the files
// under dir would exceed limit bytes: a filesystem that fills up, and
// gets space back when files are removed.
type fullDisk struct {
	dir   string
	limit int64
}

func (d *fullDisk) used() int64 {
	var n int64
	filepath.Walk(d.dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

type limitedFile struct {
	*os.File
	d *fullDisk
}

func (f limitedFile) Write(p []byte) (int, error) {
	if f.d.used()+int64(len(p)) > f.d.limit {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

func (d *fullDisk) create(dir, pattern string) (file, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return limitedFile{f, d}, nil
}

// TestNoSpace fills the disk while caching: layers nobody uses are
// evicted to make room; with nothing left to evict, Put fails with ENOSPC
// and stores nothing (no partial or temporary file, nothing served); once
// space returns, writes resume.
func TestNoSpace(t *testing.T) {
	dir := t.TempDir()
	disk := &fullDisk{dir: dir, limit: 1 << 20}
	c, err := Open(dir, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	c.opts.create = disk.create
	span := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	old, _ := c.Acquire(dg("old"))
	for id := range 3 {
		if err := old.Put(SpanID(id), span); err != nil {
			t.Fatal(err)
		}
	}
	old.Release()
	l, _ := c.Acquire(dg("busy"))
	defer l.Release()
	// The fourth span does not fit beside "old": "old", unused, goes.
	if err := l.Put(0, span); err != nil {
		t.Fatalf("Put with an unused layer to evict: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sha256", dg("old").Encoded())); !os.IsNotExist(err) {
		t.Fatalf("unused layer kept while the disk was full: %v", err)
	}
	// Nothing left to evict: the Put fails, storing nothing.
	disk.limit = disk.used() + 1000
	err = l.Put(1, span)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on a full disk: %v, want ENOSPC", err)
	}
	if _, ok := l.Has(1); ok {
		t.Fatal("span stored after ENOSPC")
	}
	if _, err := l.ReadAt(1, make([]byte, 10), 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read of the span that did not fit: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "sha256", dg("busy").Encoded()))
	for _, e := range ents {
		if filepath.Ext(e.Name()) == tmpSuffix {
			t.Fatalf("temporary file %s left after ENOSPC", e.Name())
		}
	}
	if got, want := c.Size(), int64(len(span))+trailerSize; got != want {
		t.Fatalf("size %d after ENOSPC, want %d", got, want)
	}
	// Space returns: writing resumes.
	disk.limit = 1 << 30
	if err := l.Put(1, span); err != nil {
		t.Fatalf("Put after space returned: %v", err)
	}
	p := make([]byte, 16)
	if _, err := l.ReadAt(1, p, 16); err != nil || string(p) != "0123456789abcdef" {
		t.Fatalf("read after space returned: %v %q", err, p)
	}
}

// TestDefaultMaxSize: without WithMaxSize the cache is limited to the
// smaller of 10 GiB and half its filesystem; WithMaxSize(0) is no limit.
func TestDefaultMaxSize(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if want := min(DefaultMaxSizeCap, int64(st.Blocks)*st.Bsize/2); c.MaxSize() != want || want <= 0 {
		t.Fatalf("default limit %d, want %d", c.MaxSize(), want)
	}
	if c, _ := Open(dir, WithMaxSize(0)); c.MaxSize() != 0 {
		t.Fatalf("WithMaxSize(0): limit %d", c.MaxSize())
	}
}
