package layer

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/snapshotter/fs/fstest"
	"github.com/socikit/socikit/snapshotter/remote"
	"github.com/socikit/socikit/ztoc"
)

func requiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (FUSE direct mount)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
}

type registry struct {
	blob     atomic.Pointer[[]byte]
	requests atomic.Int64
	srv      *httptest.Server
}

func (r *registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(*r.blob.Load()))
}

type layerFixture struct {
	entries []fstest.Entry
	blob    []byte
	z       *ztoc.Ztoc
	reg     *registry
	d       digest.Digest
}

func newLayer(t testing.TB, bigSize int) *layerFixture {
	t.Helper()
	entries := fstest.Tricky(t.Name(), bigSize)
	tb, err := fstest.Tar(entries)
	if err != nil {
		t.Fatal(err)
	}
	var blob bytes.Buffer
	z, err := ztoc.Compress(&blob, bytes.NewReader(tb), ztoc.WithSpanSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	reg := &registry{}
	b := blob.Bytes()
	reg.blob.Store(&b)
	reg.srv = newServer(reg)
	t.Cleanup(reg.srv.Close)
	return &layerFixture{entries: entries, blob: b, z: z, reg: reg, d: digestOf(b)}
}

func newServer(r *registry) *httptest.Server { return httptest.NewServer(r) }

func digestOf(b []byte) digest.Digest { return digest.FromBytes(b) }

func (lf *layerFixture) mount(t testing.TB, c *cache.Cache, opts ...Option) *Mounted {
	t.Helper()
	blob, err := httprange.NewHTTPBlob(http.DefaultClient, lf.reg.srv.URL+"/v2/x/blobs/"+lf.d.String(), int64(len(lf.blob)),
		httprange.WithRetries(1), httprange.WithBackoff(10*time.Millisecond), httprange.WithRequestTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o755)
	m, err := Mount(context.Background(), dir, Source{Digest: lf.d, Ztoc: lf.z, Blob: blob}, c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Unmount() })
	return m
}

func openCache(t testing.TB, dir string) *cache.Cache {
	t.Helper()
	c, err := cache.Open(dir, cache.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// compareTree checks the mounted tree against the tar's entries.
func compareTree(t *testing.T, root string, entries []fstest.Entry) {
	t.Helper()
	for p, e := range fstest.Final(entries) {
		h := e.Hdr
		full := filepath.Join(root, p)
		var st syscall.Stat_t
		if err := syscall.Lstat(full, &st); err != nil {
			t.Errorf("%q: %v", p, err)
			continue
		}
		if h.Typeflag == '1' {
			var tst syscall.Stat_t
			syscall.Lstat(filepath.Join(root, fstest.Clean(h.Linkname)), &tst)
			if tst.Ino != st.Ino || st.Nlink != 2 {
				t.Errorf("%q: hard link ino %d (target %d) nlink %d", p, st.Ino, tst.Ino, st.Nlink)
			}
			continue
		}
		if p != "." {
			if st.Mode&07777 != uint32(h.Mode)&07777 {
				t.Errorf("%q: mode %o, want %o", p, st.Mode&07777, h.Mode)
			}
			if st.Uid != uint32(h.Uid) || st.Gid != uint32(h.Gid) {
				t.Errorf("%q: owner %d:%d", p, st.Uid, st.Gid)
			}
			if st.Mtim.Sec != h.ModTime.Unix() || st.Mtim.Nsec != int64(h.ModTime.Nanosecond()) {
				t.Errorf("%q: mtime %v, want %v", p, st.Mtim, h.ModTime)
			}
		}
		switch h.Typeflag {
		case '0':
			got, err := os.ReadFile(full)
			if err != nil || !bytes.Equal(got, e.Data) {
				t.Errorf("%q: content %d bytes (%v), want %d", p, len(got), err, len(e.Data))
			}
		case '2':
			if l, err := os.Readlink(full); err != nil || l != h.Linkname {
				t.Errorf("%q: link %q %v", p, l, err)
			}
		case '3', '4':
			if unix.Major(st.Rdev) != uint32(h.Devmajor) || unix.Minor(st.Rdev) != uint32(h.Devminor) {
				t.Errorf("%q: device %d:%d", p, unix.Major(st.Rdev), unix.Minor(st.Rdev))
			}
		case '6':
			if st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
				t.Errorf("%q: not a fifo", p)
			}
		}
		for k, v := range h.PAXRecords {
			if name, ok := cutPrefix(k, "SCHILY.xattr."); ok {
				buf := make([]byte, 256)
				n, err := unix.Lgetxattr(full, name, buf)
				if err != nil || string(buf[:n]) != v {
					t.Errorf("%q: xattr %s = %q %v", p, name, buf[:max(n, 0)], err)
				}
			}
		}
	}
	for _, p := range fstest.Whiteouts(entries) {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(root, p), &st); err != nil || st.Mode != syscall.S_IFCHR || st.Rdev != 0 {
			t.Errorf("whiteout %q: mode %o rdev %d %v", p, st.Mode, st.Rdev, err)
		}
	}
	for _, p := range fstest.Opaque(entries) {
		buf := make([]byte, 8)
		n, err := unix.Lgetxattr(filepath.Join(root, p), "trusted.overlay.opaque", buf)
		if err != nil || string(buf[:n]) != "y" {
			t.Errorf("opaque %q: %q %v", p, buf[:max(n, 0)], err)
		}
	}
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

func TestMountTree(t *testing.T) {
	requiresRoot(t)
	lf := newLayer(t, 3<<20)
	cdir := t.TempDir()
	c := openCache(t, cdir)
	m := lf.mount(t, c, WithPrefetch([]ztoc.SpanID{0, 1}, time.Second))
	if err := m.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	compareTree(t, m.Dir(), lf.entries)
	if t.Failed() {
		return
	}
	// Every span the test read is cached; a remount in a new process (a
	// reopened cache) reads the whole tree without a request.
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	c2 := openCache(t, cdir)
	before := lf.reg.requests.Load()
	m2 := lf.mount(t, c2)
	compareTree(t, m2.Dir(), lf.entries)
	if got := lf.reg.requests.Load() - before; got != 0 {
		t.Fatalf("remount over a warm cache made %d requests", got)
	}
}

func TestMountBackground(t *testing.T) {
	requiresRoot(t)
	lf := newLayer(t, 2<<20)
	m := lf.mount(t, openCache(t, t.TempDir()), WithBackground(remote.BackgroundOptions{}))
	deadline := time.Now().Add(20 * time.Second)
	for {
		cached, total := m.Progress()
		if cached == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background fill: %d of %d spans", cached, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lf.reg.srv.Close() // everything must now come from the cache
	compareTree(t, m.Dir(), lf.entries)
}

func TestMountCorruptSpanEIO(t *testing.T) {
	requiresRoot(t)
	lf := newLayer(t, 2<<20)
	// Corrupt a span inside a/big's data.
	var big *ztoc.FileEntry
	for i := range lf.z.Files {
		if lf.z.Files[i].Name == "a/big" {
			big = &lf.z.Files[i]
		}
	}
	ix, _ := ztoc.NewIndex(lf.z)
	id := ix.SpanAt(big.UncompressedOffset + big.UncompressedSize/2)
	s := ix.Spans()[id]
	bad := bytes.Clone(lf.blob)
	bad[(s.CompressedStart+s.CompressedEnd)/2] ^= 0x55
	lf.reg.blob.Store(&bad)
	m := lf.mount(t, openCache(t, t.TempDir()))

	f, err := os.Open(filepath.Join(m.Dir(), "a/big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, 4096)
	_, err = f.ReadAt(p, s.UncompressedStart-big.UncompressedOffset+100)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of corrupted span: %v, want EIO", err)
	}
	if m.Err() == nil || !errors.Is(m.Err(), ztoc.ErrDigestMismatch) {
		t.Fatalf("Err() = %v", m.Err())
	}
	// Bytes outside the bad span still read correctly.
	got, err := os.ReadFile(filepath.Join(m.Dir(), "a/file"))
	if err != nil || string(got) != "hello, lazy world\n" {
		t.Fatalf("a/file: %q %v", got, err)
	}
}

func TestMountServerGone(t *testing.T) {
	requiresRoot(t)
	lf := newLayer(t, 1<<20)
	m := lf.mount(t, openCache(t, t.TempDir()))
	lf.reg.srv.Close()
	start := time.Now()
	_, err := os.ReadFile(filepath.Join(m.Dir(), "a/big"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read with the registry gone: %v, want EIO", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	// Metadata needs no network.
	if _, err := os.Lstat(filepath.Join(m.Dir(), "a/sym")); err != nil {
		t.Fatal(err)
	}
}

func TestOverlay(t *testing.T) {
	requiresRoot(t)
	lf := newLayer(t, 100<<10)
	m := lf.mount(t, openCache(t, t.TempDir()))
	base := t.TempDir()
	for _, p := range []string{"a/gone", "opq/old", "a/file", "baseonly"} {
		os.MkdirAll(filepath.Join(base, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(base, p), []byte("lower "+p), 0o644)
	}
	upper, work, merged := t.TempDir(), t.TempDir(), t.TempDir()
	opts := "lowerdir=" + m.Dir() + ":" + base + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)

	for _, p := range []string{"a/gone", "opq/old"} {
		if _, err := os.Lstat(filepath.Join(merged, p)); !os.IsNotExist(err) {
			t.Errorf("%s visible through the overlay: %v", p, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(merged, "baseonly")); err != nil || string(b) != "lower baseonly" {
		t.Errorf("baseonly: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(merged, "a/file")); err != nil || string(b) != "hello, lazy world\n" {
		t.Errorf("a/file: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(merged, "opq/kept")); err != nil || string(b) != "kept\n" {
		t.Errorf("opq/kept: %q %v", b, err)
	}
	// Copy-up of a lazily read file.
	if err := os.WriteFile(filepath.Join(merged, "a/big"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(upper, "a/big")); string(b) != "new" {
		t.Errorf("upper a/big = %q", b)
	}
	// Overlay's tree equals the layer's for what the layer holds.
	ents, err := os.ReadDir(filepath.Join(m.Dir(), "many"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("readdir: %v", err)
	}
	for _, e := range ents {
		a, _ := os.ReadFile(filepath.Join(m.Dir(), "many", e.Name()))
		b, err := os.ReadFile(filepath.Join(merged, "many", e.Name()))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("many/%s differs through the overlay: %v", e.Name(), err)
		}
	}
}

// TestMountCheckUnmount: the lifecycle the daemon drives (service.Layers
// keeps the Mounted by mountpoint): Check answers while mounted, Unmount
// leaves the directory unmounted.
func TestMountCheckUnmount(t *testing.T) {
	requiresRoot(t)
	lf := newLayer(t, 100<<10)
	blob, err := httprange.NewHTTPBlob(http.DefaultClient, lf.reg.srv.URL+"/b", int64(len(lf.blob)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx := context.Background()
	m, err := Mount(ctx, dir, Source{Digest: lf.d, Ztoc: lf.z, Blob: blob}, openCache(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "opq/kept")); err != nil || string(b) != "kept\n" {
		t.Fatalf("read: %q %v", b, err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Type == fuseSuperMagic {
		t.Fatalf("still mounted after Unmount: %v", err)
	}
}
