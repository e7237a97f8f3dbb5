package fs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
)

// memContent is a ContentSource over the tar in memory: bytes below
// localEnd are local; content files are written to dir.
type memContent struct {
	tb       []byte
	dir      string
	mu       sync.Mutex
	localEnd int64
	made     int
	err      error
}

func (m *memContent) Local(off, n int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return off+n <= m.localEnd
}

func (m *memContent) Content(ctx context.Context, off, n int64) (*os.File, error) {
	if m.err != nil {
		return nil, m.err
	}
	if !m.Local(off, n) {
		return nil, nil
	}
	p := filepath.Join(m.dir, strconv.FormatInt(off, 10))
	if _, err := os.Stat(p); err != nil {
		m.made++
		if err := os.WriteFile(p, m.tb[off:off+n], 0o600); err != nil {
			return nil, err
		}
	}
	return os.Open(p)
}

func (m *memContent) setLocal(end int64) {
	m.mu.Lock()
	m.localEnd = end
	m.mu.Unlock()
}

func open(t *testing.T, n *node) fusefs.FileHandle {
	t.Helper()
	fh, flags, errno := n.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 || flags&fuse.FOPEN_KEEP_CACHE == 0 {
		t.Fatalf("open: %v, flags %x", errno, flags)
	}
	return fh
}

func release(fh fusefs.FileHandle) {
	if r, ok := fh.(fusefs.FileReleaser); ok {
		r.Release(context.Background())
	}
}

func readHandle(t *testing.T, n *node, fh fusefs.FileHandle) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 70000)
	for off := int64(0); ; {
		rr, errno := n.Read(context.Background(), fh, buf, off)
		if errno != 0 {
			t.Fatalf("read: %v", errno)
		}
		b, _ := rr.Bytes(nil)
		if len(b) == 0 {
			return out
		}
		out = append(out, b...)
		off += int64(len(b))
	}
}

func TestPassthroughHandles(t *testing.T) {
	entries := fstest.Tricky(t.Name(), 300<<10)
	z, tb := build(t, entries)
	src := &memContent{tb: tb, dir: t.TempDir()}
	f, root := newTestFS(t, &memReader{b: tb}, z, WithPassthrough(src, 100<<10))
	if f.Options().MountOptions.DisabledCapabilities&fuse.CAP_PASSTHROUGH != 0 {
		t.Fatal("passthrough capability disabled with WithPassthrough")
	}
	big, _ := walk(t, root, "a/big")
	want := fstest.Final(entries)["a/big"].Data

	// Below the minimum: no handle, as without passthrough.
	small, _ := walk(t, root, "a/file")
	if fh := open(t, small); fh != nil {
		t.Fatalf("handle %T for a small file", fh)
	}
	// Not local: reads through FUSE.
	h1 := open(t, big)
	if _, ok := h1.(*fuseHandle); !ok {
		t.Fatalf("handle %T with nothing local", h1)
	}
	if got := readHandle(t, big, h1); !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	// Local now, but h1 reads through FUSE: so does the next open.
	src.setLocal(int64(len(tb)))
	h2 := open(t, big)
	if _, ok := h2.(*fuseHandle); !ok {
		t.Fatalf("handle %T while a FUSE handle is open", h2)
	}
	release(h1)
	release(h2)
	// Passthrough once no FUSE handle is open, and for every open after
	// that while one is.
	h3 := open(t, big)
	p3, ok := h3.(*ptHandle)
	if !ok {
		t.Fatalf("handle %T with the content local", h3)
	}
	fd, ok := p3.PassthroughFd()
	if !ok {
		t.Fatal("no passthrough fd")
	}
	got := make([]byte, len(want)+10)
	if n, err := syscall.Pread(fd, got, 0); n != len(want) || err != nil || !bytes.Equal(got[:n], want) {
		t.Fatalf("backing file: %d bytes, %v", n, err)
	}
	src.setLocal(0) // however the source changes
	h4 := open(t, big)
	if _, ok := h4.(*ptHandle); !ok {
		t.Fatalf("handle %T while a passthrough handle is open", h4)
	}
	// A read on a passthrough handle means the kernel did not take it:
	// counted, and served.
	if got := readHandle(t, big, h4); !bytes.Equal(got, want) {
		t.Fatal("fallback read differs")
	}
	st := f.Stats()
	if st.PassthroughOpens != 2 || st.FUSEOpens != 2 || st.FallbackReads == 0 || src.made != 1 {
		t.Fatalf("stats %+v, %d content files made", st, src.made)
	}
	release(h3)
	release(h4)
	if s := f.opens[big.e]; s.pt != 0 || s.fuse != 0 || s.file != nil {
		t.Fatalf("open state after release: %+v", s)
	}
	if _, err := syscall.Pread(fd, got, 0); err != syscall.EBADF {
		t.Fatalf("content file not closed after the last release: %v", err)
	}
}

func TestPassthroughHeaderMismatch(t *testing.T) {
	entries := fstest.Tricky(t.Name(), 300<<10)
	z, tb := build(t, entries)
	for i := range z.Files {
		if z.Files[i].Name == "a/big" {
			z.Files[i].Mode = 0o600
		}
	}
	src := &memContent{tb: tb, dir: t.TempDir(), localEnd: int64(len(tb))}
	f, root := newTestFS(t, &memReader{b: tb}, z, WithPassthrough(src, 1))
	n, _ := walk(t, root, "a/big")
	h := open(t, n)
	if _, ok := h.(*fuseHandle); !ok {
		t.Fatalf("handle %T for a file whose header does not match", h)
	}
	if _, errno := n.Read(context.Background(), h, make([]byte, 10), 0); errno != syscall.EIO {
		t.Fatalf("read: %v, want EIO", errno)
	}
	if src.made != 0 || f.Stats().PassthroughOpens != 0 {
		t.Fatalf("content made for a bad file: %d %+v", src.made, f.Stats())
	}
}

func TestPassthroughContentError(t *testing.T) {
	// A file of the default minimum: a layer without one mounts as
	// without passthrough.
	entries := fstest.Tricky(t.Name(), DefaultPassthroughMinSize)
	z, tb := build(t, entries)
	src := &memContent{tb: tb, dir: t.TempDir(), localEnd: int64(len(tb)), err: errors.New("disk full")}
	f, root := newTestFS(t, &memReader{b: tb}, z, WithPassthrough(src, 0))
	if f.o.ptMin != DefaultPassthroughMinSize {
		t.Fatalf("default minimum %d", f.o.ptMin)
	}
	f.o.ptMin = 1
	n, _ := walk(t, root, "a/big")
	h := open(t, n)
	if _, ok := h.(*fuseHandle); !ok {
		t.Fatalf("handle %T when the content file fails", h)
	}
	if got := readHandle(t, n, h); !bytes.Equal(got, fstest.Final(entries)["a/big"].Data) {
		t.Fatal("content differs")
	}
	if st := f.Stats(); st.ContentErrors != 1 || st.FUSEOpens != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// refusingServer refuses backing files, as a kernel without passthrough.
type refusingServer struct{ calls int }

func (r *refusingServer) RegisterBackingFd(*fuse.BackingMap) (int32, syscall.Errno) {
	r.calls++
	return 0, syscall.EPERM
}
func (r *refusingServer) UnregisterBackingFd(int32) syscall.Errno { return 0 }

func TestPassthroughRefused(t *testing.T) {
	entries := fstest.Tricky(t.Name(), 300<<10)
	z, tb := build(t, entries)
	src := &memContent{tb: tb, dir: t.TempDir(), localEnd: int64(len(tb))}
	f, root := newTestFS(t, &memReader{b: tb}, z, WithPassthrough(src, 1))
	srv := &refusingServer{}
	f.srv = srv
	for _, p := range []string{"a/big", "implicit/deep/file", "a/big"} {
		n, _ := walk(t, root, p)
		h := open(t, n)
		if _, ok := h.(*fuseHandle); !ok {
			t.Fatalf("%s: handle %T with passthrough refused", p, h)
		}
		readHandle(t, n, h)
		release(h)
	}
	if srv.calls != 1 || !errors.Is(f.PassthroughErr(), syscall.EPERM) || src.made != 1 {
		t.Fatalf("probe calls %d, err %v, content files %d", srv.calls, f.PassthroughErr(), src.made)
	}
}

func TestNoPassthroughOptions(t *testing.T) {
	z, tb := build(t, fstest.Tricky(t.Name(), 1000))
	f, root := newTestFS(t, &memReader{b: tb}, z)
	if f.Options().MountOptions.DisabledCapabilities&fuse.CAP_PASSTHROUGH == 0 {
		t.Fatal("passthrough negotiated without WithPassthrough")
	}
	n, _ := walk(t, root, "a/big")
	// Without passthrough the kernel is told opens need no request.
	if fh, _, errno := n.Open(context.Background(), syscall.O_RDONLY); fh != nil || errno != syscall.ENOSYS {
		t.Fatalf("open without passthrough: handle %T, errno %v; want none, ENOSYS", fh, errno)
	}
	if _, err := New(z, &memReader{b: tb}, WithPassthrough(nil, 1)); err == nil {
		t.Fatal("nil content source accepted")
	}
	if _, err := New(z, &memReader{b: tb}, WithPassthrough(&memContent{}, -1)); err == nil {
		t.Fatal("negative minimum accepted")
	}
}
