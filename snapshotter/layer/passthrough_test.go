package layer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/snapshotter/fs"
	"github.com/socikit/socikit/snapshotter/fs/fstest"
	"github.com/socikit/socikit/snapshotter/remote"
	"github.com/socikit/socikit/ztoc"
)

func (lf *layerFixture) entry(t testing.TB, name string) (*ztoc.FileEntry, []byte) {
	t.Helper()
	var fe *ztoc.FileEntry
	for i := range lf.z.Files { // the last entry of a name is the one shown
		if fstest.Clean(lf.z.Files[i].Name) == name {
			fe = &lf.z.Files[i]
		}
	}
	if fe == nil {
		t.Fatalf("%s not in the toc", name)
	}
	return fe, fstest.Final(lf.entries)[name].Data
}

// openPassthrough opens path on m until the open is a passthrough one: the
// kernel sends the release of a closed file in the background, and until
// it arrives an open must read through FUSE like the closed one did.
func openPassthrough(t testing.TB, m *Mounted, path string) *os.File {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := m.Stats().PassthroughOpens
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if m.Stats().PassthroughOpens > before {
			return f
		}
		f.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s: no passthrough open (%+v, passthrough error %v)", path, m.Stats(), m.PassthroughErr())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readFile reads the whole of f from offset 0.
func readFile(t testing.TB, f *os.File) []byte {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, fi.Size())
	if n, err := f.ReadAt(b, 0); n != len(b) && err != nil {
		t.Fatalf("read %s: %d bytes, %v", f.Name(), n, err)
	}
	return b
}

func TestMountPassthrough(t *testing.T) {
	requiresRoot(t)
	lf := newLayer(t, 2<<20)
	cdir := t.TempDir()
	m := lf.mount(t, openCache(t, cdir), WithPassthrough(64<<10))
	fe, want := lf.entry(t, "a/big")
	path := filepath.Join(m.Dir(), "a/big")

	// Nothing cached: the first open reads through FUSE, fetching.
	f1, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	if got := readFile(t, f1); !bytes.Equal(got, want) {
		t.Fatal("a/big through FUSE differs")
	}
	// Every span is cached now, but f1 reads through FUSE: the kernel
	// would fail a passthrough open of the same inode (EIO).
	f2, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, f2); !bytes.Equal(got, want) {
		t.Fatal("second open differs")
	}
	if st := m.Stats(); st.PassthroughOpens != 0 || st.FUSEOpens != 2 || st.Reads == 0 {
		t.Fatalf("stats with FUSE opens: %+v", st)
	}
	f1.Close()
	f2.Close()

	// Closed: the next open makes the content file and passes through.
	f3 := openPassthrough(t, m, path)
	defer f3.Close()
	if err := m.PassthroughErr(); err != nil {
		t.Fatal(err)
	}
	cf := filepath.Join(cdir, "sha256", lf.d.Encoded(), "files", strconv.FormatInt(fe.UncompressedOffset, 10))
	if b, err := os.ReadFile(cf); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("content file %s: %d bytes, %v", cf, len(b), err)
	}
	reads := m.Stats().Reads
	unix.Fadvise(int(f3.Fd()), 0, 0, unix.FADV_DONTNEED)
	if got := readFile(t, f3); !bytes.Equal(got, want) {
		t.Fatal("a/big through passthrough differs")
	}
	// Another open while f3 is open passes through too; mmap as well.
	f4, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f4.Close()
	mm, err := unix.Mmap(int(f4.Fd()), 0, len(want), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mm, want) {
		t.Error("mmap through passthrough differs")
	}
	unix.Munmap(mm)
	// Reads at odd offsets and past the end.
	p := make([]byte, 1000)
	for _, off := range []int64{0, 1, 65535, 65536, int64(len(want)) - 10} {
		n, err := f4.ReadAt(p, off)
		if n != min(len(p), len(want)-int(off)) || (err != nil && err != io.EOF) || !bytes.Equal(p[:n], want[off:off+int64(n)]) {
			t.Errorf("ReadAt %d: %d %v", off, n, err)
		}
	}
	st := m.Stats()
	if st.Reads != reads || st.FallbackReads != 0 {
		t.Fatalf("passthrough reads reached the FUSE read handler: %+v (before: %d reads)", st, reads)
	}
	if st.PassthroughOpens < 2 {
		t.Fatalf("stats: %+v", st)
	}

	// Through an overlayfs, as a container sees it.
	upper, work, merged := t.TempDir(), t.TempDir(), t.TempDir()
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+m.Dir()+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	if b, err := os.ReadFile(filepath.Join(merged, "a/big")); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("a/big through overlay: %v", err)
	}
	if st := m.Stats(); st.Reads != reads || st.FallbackReads != 0 {
		t.Fatalf("overlay reads reached the FUSE read handler: %+v", st)
	}
	// Small files are below the minimum and read through FUSE.
	if b, err := os.ReadFile(filepath.Join(m.Dir(), "a/file")); err != nil || string(b) != "hello, lazy world\n" {
		t.Fatalf("a/file: %q %v", b, err)
	}
	if m.Stats().Reads == reads {
		t.Fatal("a small file did not read through FUSE")
	}
}

// TestMountPassthroughRemount: content files count in the cache size, last
// one process (a reopened cache drops them) and are made again from the
// cached spans, without the registry.
func TestMountPassthroughRemount(t *testing.T) {
	requiresRoot(t)
	lf := newLayer(t, 1<<20)
	cdir := t.TempDir()
	c := openCache(t, cdir)
	m := lf.mount(t, c, WithPassthrough(1), WithBackground(remote.BackgroundOptions{}))
	waitCached(t, m)
	_, want := lf.entry(t, "a/big")
	ix, err := ztoc.NewIndex(lf.z)
	if err != nil {
		t.Fatal(err)
	}
	spanBytes := ix.Spans()[len(ix.Spans())-1].UncompressedEnd + int64(len(ix.Spans()))*cache.SpanOverhead
	if c.Size() != spanBytes {
		t.Fatalf("cache size %d, spans %d", c.Size(), spanBytes)
	}
	f := openPassthrough(t, m, filepath.Join(m.Dir(), "a/big"))
	f.Close()
	if c.Size() != spanBytes+int64(len(want)) {
		t.Fatalf("cache size %d does not count the content file (spans %d)", c.Size(), spanBytes)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}

	c2 := openCache(t, cdir)
	if c2.Size() != spanBytes {
		t.Fatalf("reopened cache size %d, want the spans' %d", c2.Size(), spanBytes)
	}
	lf.reg.srv.Close() // everything from the cache now
	m2 := lf.mount(t, c2, WithPassthrough(1))
	f = openPassthrough(t, m2, filepath.Join(m2.Dir(), "a/big"))
	if got := readFile(t, f); !bytes.Equal(got, want) {
		t.Fatal("a/big after remount differs")
	}
	f.Close()
	// Every file, hard links (one inode, one content file) included.
	compareTree(t, m2.Dir(), lf.entries)
	if st := m2.Stats(); st.PassthroughOpens < 2 || st.ContentErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := m2.Unmount(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Remove(lf.d); err != nil {
		t.Fatal(err)
	}
	if c2.Size() != 0 {
		t.Fatalf("size %d after removing the layer", c2.Size())
	}
}

func waitCached(t testing.TB, m *Mounted) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		cached, total := m.Progress()
		if cached == total {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("background fill: %d of %d spans", cached, total)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMountNoPassthrough: without the option nothing passes through and
// no content file is made.
func TestMountNoPassthrough(t *testing.T) {
	requiresRoot(t)
	lf := newLayer(t, 200<<10)
	cdir := t.TempDir()
	m := lf.mount(t, openCache(t, cdir), WithBackground(remote.BackgroundOptions{}))
	waitCached(t, m)
	compareTree(t, m.Dir(), lf.entries)
	if st := m.Stats(); st.PassthroughOpens != 0 || st.FUSEOpens != 0 || st.Reads == 0 {
		t.Fatalf("stats: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(cdir, "sha256", lf.d.Encoded(), "files")); !os.IsNotExist(err) {
		t.Fatalf("content files made without passthrough: %v", err)
	}
}

// TestContentSource checks content files against the tar without a mount.
func TestContentSource(t *testing.T) {
	lf := newLayer(t, 300<<10)
	c, err := cache.Open(t.TempDir(), cache.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := c.Acquire(lf.d)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Release()
	blob, err := httprange.NewHTTPBlob(http.DefaultClient, lf.reg.srv.URL+"/b", int64(len(lf.blob)))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ztoc.NewIndex(lf.z)
	if err != nil {
		t.Fatal(err)
	}
	f, err := remote.NewFetcher(context.Background(), ix, blob, cl)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := newContentSource(ix, cl)
	var _ fs.ContentSource = src
	fe, want := lf.entry(t, "a/big")
	ctx := context.Background()
	if src.Local(fe.UncompressedOffset, fe.UncompressedSize) {
		t.Fatal("Local before any fetch")
	}
	if cf, err := src.Content(ctx, fe.UncompressedOffset, fe.UncompressedSize); cf != nil || err != nil {
		t.Fatalf("Content before any fetch: %v %v", cf, err)
	}
	// Fetch all but the last span of the file: still not local.
	first, last := ix.SpansOf(fe.UncompressedOffset, fe.UncompressedSize)
	if last == first {
		t.Fatal("a/big should span several spans")
	}
	if err := f.Fetch(ctx, first, last-1); err != nil {
		t.Fatal(err)
	}
	if src.Local(fe.UncompressedOffset, fe.UncompressedSize) {
		t.Fatal("Local with a span missing")
	}
	if err := f.Fetch(ctx, last, last); err != nil {
		t.Fatal(err)
	}
	if !src.Local(fe.UncompressedOffset, fe.UncompressedSize) {
		t.Fatal("not Local with every span cached")
	}
	// Concurrent callers share one copy.
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			cf, err := src.Content(ctx, fe.UncompressedOffset, fe.UncompressedSize)
			if err == nil {
				got, rerr := io.ReadAll(cf)
				cf.Close()
				if rerr != nil || !bytes.Equal(got, want) {
					err = fmt.Errorf("content file differs (%d bytes, %v)", len(got), rerr)
				}
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, b := cl.Files(); n != 1 || b != int64(len(want)) {
		t.Fatalf("Files() = %d, %d", n, b)
	}
	// Every regular file of the layer.
	for name, e := range fstest.Final(lf.entries) {
		if e.Hdr.Typeflag != '0' || len(e.Data) == 0 {
			continue
		}
		fe, _ := lf.entry(t, name)
		if err := f.Fetch(ctx, ix.SpanAt(fe.UncompressedOffset), ix.SpanAt(fe.UncompressedOffset+fe.UncompressedSize-1)); err != nil {
			t.Fatal(err)
		}
		cf, err := src.Content(ctx, fe.UncompressedOffset, fe.UncompressedSize)
		if err != nil || cf == nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _ := io.ReadAll(cf)
		cf.Close()
		if !bytes.Equal(got, e.Data) {
			t.Errorf("%s: content file differs", name)
		}
	}
}

// TestMountPassthroughRefused: with the span cache on overlayfs (a stacked
// filesystem) the kernel refuses backing files (ELOOP); every open then
// reads through FUSE, correctly.
func TestMountPassthroughRefused(t *testing.T) {
	requiresRoot(t)
	lower, upper, work, merged := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	lf := newLayer(t, 300<<10)
	m := lf.mount(t, openCache(t, filepath.Join(merged, "cache")), WithPassthrough(1), WithBackground(remote.BackgroundOptions{}))
	waitCached(t, m)
	for range 2 {
		compareTree(t, m.Dir(), lf.entries)
	}
	st := m.Stats()
	if !errors.Is(m.PassthroughErr(), unix.ELOOP) || st.PassthroughOpens != 0 || st.FUSEOpens == 0 {
		t.Fatalf("passthrough error %v, stats %+v", m.PassthroughErr(), st)
	}
}
