package fs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"sort"
	"strings"
	"syscall"
	"testing"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
	"github.com/socikit/socikit/ztoc"
)

// memReader serves the tar stream from memory.
type memReader struct {
	b     []byte
	reads int
}

func (m *memReader) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	m.reads++
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func build(t testing.TB, entries []fstest.Entry) (*ztoc.Ztoc, []byte) {
	t.Helper()
	tb, err := fstest.Tar(entries)
	if err != nil {
		t.Fatal(err)
	}
	var blob bytes.Buffer
	z, err := ztoc.Compress(&blob, bytes.NewReader(tb), ztoc.WithSpanSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	return z, tb
}

func newTestFS(t *testing.T, r Reader, z *ztoc.Ztoc, opts ...Option) (*FS, *node) {
	t.Helper()
	f, err := New(z, r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	root := f.Root()
	fusefs.NewNodeFS(root, f.Options())
	return f, root.(*node)
}

func walk(t *testing.T, root *node, p string) (*node, syscall.Errno) {
	t.Helper()
	n := root
	if p == "." {
		return n, 0
	}
	for _, name := range strings.Split(p, "/") {
		var out fuse.EntryOut
		in, errno := n.Lookup(context.Background(), name, &out)
		if errno != 0 {
			return nil, errno
		}
		n = in.Operations().(*node)
		if out.Attr.Ino != n.e.ino {
			t.Fatalf("lookup %s: ino %d, node %d", p, out.Attr.Ino, n.e.ino)
		}
	}
	return n, 0
}

func readAll(t *testing.T, n *node) ([]byte, syscall.Errno) {
	t.Helper()
	ctx := context.Background()
	if _, _, errno := n.Open(ctx, syscall.O_RDONLY); errno != 0 && errno != syscall.ENOSYS { // ENOSYS: no OPEN needed
		return nil, errno
	}
	var out []byte
	buf := make([]byte, 7000) // not a multiple of anything
	for off := int64(0); ; {
		rr, errno := n.Read(ctx, nil, buf, off)
		if errno != 0 {
			return nil, errno
		}
		b, _ := rr.Bytes(nil)
		if len(b) == 0 {
			return out, 0
		}
		out = append(out, b...)
		off += int64(len(b))
	}
}

func TestTree(t *testing.T) {
	entries := fstest.Tricky(t.Name(), 300<<10)
	z, tb := build(t, entries)
	_, root := newTestFS(t, &memReader{b: tb}, z)
	ctx := context.Background()
	// A hard link's own header sets the shared inode's attributes, the
	// last header winning, as containerd's applier does.
	linkHdr := map[string]tar.Header{}
	for _, e := range entries {
		if e.Hdr.Typeflag == tar.TypeLink {
			linkHdr[fstest.Clean(e.Hdr.Linkname)] = e.Hdr
		}
	}

	for p, e := range fstest.Final(entries) {
		t.Run(p, func(t *testing.T) {
			n, errno := walk(t, root, p)
			if errno != 0 {
				t.Fatalf("lookup: %v", errno)
			}
			var a fuse.AttrOut
			n.Getattr(ctx, nil, &a)
			h := e.Hdr
			if h.Typeflag == '1' { // hard link: the target's attributes
				t2, _ := walk(t, root, fstest.Clean(h.Linkname))
				if t2.e != n.e {
					t.Fatalf("hard link %s does not share %s's inode", p, h.Linkname)
				}
				if n.e.nlink != 2 {
					t.Errorf("nlink %d, want 2", n.e.nlink)
				}
				return
			}
			if lh, ok := linkHdr[p]; ok {
				h.Mode, h.Uid, h.Gid, h.ModTime = lh.Mode, lh.Uid, lh.Gid, lh.ModTime
			}
			if p != "." {
				if got, want := a.Mode&07777, uint32(h.Mode)&07777; got != want {
					t.Errorf("mode %o, want %o", got, want)
				}
				if a.Uid != uint32(h.Uid) || a.Gid != uint32(h.Gid) {
					t.Errorf("owner %d:%d, want %d:%d", a.Uid, a.Gid, h.Uid, h.Gid)
				}
				if a.Mtime != uint64(h.ModTime.Unix()) || a.Mtimensec != uint32(h.ModTime.Nanosecond()) {
					t.Errorf("mtime %d.%d, want %v", a.Mtime, a.Mtimensec, h.ModTime)
				}
			}
			switch h.Typeflag {
			case '0':
				if a.Mode&syscall.S_IFMT != syscall.S_IFREG || int64(a.Size) != h.Size {
					t.Errorf("mode %o size %d", a.Mode, a.Size)
				}
				got, errno := readAll(t, n)
				if errno != 0 || !bytes.Equal(got, e.Data) {
					t.Errorf("content: errno %v, %d bytes, want %d", errno, len(got), len(e.Data))
				}
			case '2':
				l, _ := n.Readlink(ctx)
				if string(l) != h.Linkname {
					t.Errorf("link %q, want %q", l, h.Linkname)
				}
			case '3', '4':
				if a.Rdev != mkdev(h.Devmajor, h.Devminor) {
					t.Errorf("rdev %x", a.Rdev)
				}
			case '5':
				if a.Mode&syscall.S_IFMT != syscall.S_IFDIR || a.Nlink < 2 {
					t.Errorf("dir mode %o nlink %d", a.Mode, a.Nlink)
				}
			case '6':
				if a.Mode&syscall.S_IFMT != syscall.S_IFIFO {
					t.Errorf("fifo mode %o", a.Mode)
				}
			}
			for k, v := range h.PAXRecords {
				name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
				if !ok {
					continue
				}
				buf := make([]byte, 100)
				m, errno := n.Getxattr(ctx, name, buf)
				if errno != 0 || string(buf[:m]) != v {
					t.Errorf("xattr %s = %q (%v), want %q", name, buf[:m], errno, v)
				}
			}
		})
	}

	// Implicit parents.
	n, errno := walk(t, root, "implicit")
	if errno != 0 || n.e.mode != syscall.S_IFDIR|0o755 {
		t.Errorf("implicit dir: %v %o", errno, n.e.mode)
	}
	// Whiteouts are 0/0 character devices; markers are hidden.
	for _, p := range fstest.Whiteouts(entries) {
		n, errno := walk(t, root, p)
		if errno != 0 {
			t.Fatalf("whiteout %s: %v", p, errno)
		}
		var a fuse.AttrOut
		n.Getattr(ctx, nil, &a)
		if a.Mode != syscall.S_IFCHR || a.Rdev != 0 {
			t.Errorf("whiteout %s: mode %o rdev %d", p, a.Mode, a.Rdev)
		}
	}
	if _, errno := walk(t, root, "a/.wh.gone"); errno != syscall.ENOENT {
		t.Errorf("whiteout marker visible: %v", errno)
	}
	for _, p := range fstest.Opaque(entries) {
		n, _ := walk(t, root, p)
		buf := make([]byte, 10)
		m, errno := n.Getxattr(ctx, TrustedOpaque, buf)
		if errno != 0 || string(buf[:m]) != "y" {
			t.Errorf("opaque %s: %q %v", p, buf[:m], errno)
		}
		if _, errno := walk(t, root, p+"/.wh..wh..opq"); errno != syscall.ENOENT {
			t.Errorf("opaque marker visible: %v", errno)
		}
		sz, errno := n.Listxattr(ctx, nil)
		if errno != syscall.ERANGE || int(sz) != len(TrustedOpaque)+1 {
			t.Errorf("listxattr size %d %v", sz, errno)
		}
	}
	// Readdir lists the final names, sorted.
	a, _ := walk(t, root, "a")
	ds, _ := a.Readdir(ctx)
	var names []string
	for ds.HasNext() {
		d, _ := ds.Next()
		names = append(names, d.Name)
	}
	want := []string{"big", "dangling", "empty", "file", "gone", "hard", "sym", "xattr"}
	if !sort.StringsAreSorted(names) || strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("readdir a = %v, want %v", names, want)
	}
}

// corruptReader serves a tar whose header bytes differ from the TOC.
func TestHeaderMismatchIsEIO(t *testing.T) {
	entries := fstest.Tricky(t.Name(), 1000)
	z, tb := build(t, entries)
	bad := bytes.Clone(tb)
	// Change the recorded mode of a/file in the TOC: the tar header no
	// longer matches.
	for i := range z.Files {
		if z.Files[i].Name == "a/file" {
			z.Files[i].Mode = 0o600
		}
	}
	_, root := newTestFS(t, &memReader{b: bad}, z)
	n, _ := walk(t, root, "a/file")
	if _, errno := readAll(t, n); errno != syscall.EIO {
		t.Fatalf("read with mismatched header: %v, want EIO", errno)
	}
	// Other files still read.
	n, _ = walk(t, root, "dup")
	if got, errno := readAll(t, n); errno != 0 || string(got) != "second version wins\n" {
		t.Fatalf("dup: %q %v", got, errno)
	}
}

type failReader struct{}

func (failReader) ReadAt(context.Context, []byte, int64) (int, error) {
	return 0, errors.New("registry unreachable")
}

func TestReadErrorIsEIO(t *testing.T) {
	z, _ := build(t, fstest.Tricky(t.Name(), 1000))
	f, root := newTestFS(t, failReader{}, z)
	n, _ := walk(t, root, "a/file")
	if _, errno := readAll(t, n); errno != syscall.EIO {
		t.Fatalf("read: %v, want EIO", errno)
	}
	if f.Err() == nil {
		t.Fatal("Err() is nil after a failed read")
	}
}

func TestHeaderVerifiedOnce(t *testing.T) {
	z, tb := build(t, fstest.Tricky(t.Name(), 1000))
	r := &memReader{b: tb}
	_, root := newTestFS(t, r, z)
	n, _ := walk(t, root, "a/file")
	readAll(t, n)
	first := r.reads
	readAll(t, n)
	if second := r.reads - first; second != 1 {
		t.Fatalf("second read of a/file made %d reads, want 1 (no header check)", second)
	}
}

func TestUserOpaque(t *testing.T) {
	entries := fstest.Tricky(t.Name(), 1000)
	z, tb := build(t, entries)
	_, root := newTestFS(t, &memReader{b: tb}, z, WithOpaqueXattrs(TrustedOpaque, UserOpaque))
	n, _ := walk(t, root, "opq")
	buf := make([]byte, 1)
	if m, errno := n.Getxattr(context.Background(), UserOpaque, buf); errno != 0 || string(buf[:m]) != "y" {
		t.Fatalf("user opaque: %v", errno)
	}
	if m, errno := n.Getxattr(context.Background(), UserOpaque, nil); errno != syscall.ERANGE || m != 1 {
		t.Fatalf("size query: %d %v", m, errno)
	}
}

func TestHeaderOffsets(t *testing.T) {
	entries := fstest.Tricky(t.Name(), 5000)
	z, tb := build(t, entries)
	offs := headerOffsets(z.Files)
	for i, fe := range z.Files {
		if fe.Type != ztoc.TypeReg {
			continue
		}
		f := &FS{z: z, r: &memReader{b: tb}, hdrOff: offs}
		e := &entry{file: i}
		if err := f.verify(context.Background(), e); err != nil {
			t.Errorf("%s: %v", fe.Name, err)
		}
	}
}

// TestFirstReadMerged checks that the first read of a file from its start
// reads the tar header and the data in one Reader read, that reads
// elsewhere first, or larger than maxMergedRead, still verify the header
// and return the right bytes, and that a bad header fails the merged read.
func TestFirstReadMerged(t *testing.T) {
	const bigSize = 3 * maxMergedRead
	entries := fstest.Tricky(t.Name(), bigSize)
	z, tb := build(t, entries)
	final := fstest.Final(entries)
	ctx := context.Background()
	r := &memReader{b: tb}
	_, root := newTestFS(t, r, z)

	n, _ := walk(t, root, "a/file")
	got, errno := readAll(t, n)
	if errno != 0 || string(got) != "hello, lazy world\n" {
		t.Fatalf("a/file: %q %v", got, errno)
	}
	if r.reads != 1 {
		t.Fatalf("first read of a/file made %d reads, want 1 (header and data together)", r.reads)
	}

	// A first read at an offset: header read, then the data.
	n, _ = walk(t, root, "dup")
	buf := make([]byte, 4)
	before := r.reads
	rr, errno := n.Read(ctx, nil, buf, 7)
	if b, _ := rr.Bytes(nil); errno != 0 || string(b) != "version"[:4] {
		t.Fatalf("dup at 7: %q %v", b, errno)
	}
	if d := r.reads - before; d != 2 {
		t.Fatalf("first read of dup at 7 made %d reads, want 2", d)
	}

	// Larger than maxMergedRead from the start, and every file's bytes.
	for name, e := range final {
		if e.Hdr.Typeflag != tar.TypeReg {
			continue
		}
		for _, size := range []int{maxMergedRead + 1, 4096} {
			_, root := newTestFS(t, &memReader{b: tb}, z)
			n, errno := walk(t, root, name)
			if errno != 0 {
				t.Fatalf("%s: %v", name, errno)
			}
			var out []byte
			buf := make([]byte, size)
			for off := int64(0); ; {
				rr, errno := n.Read(ctx, nil, buf, off)
				if errno != 0 {
					t.Fatalf("%s at %d: %v", name, off, errno)
				}
				b, _ := rr.Bytes(nil)
				if len(b) == 0 {
					break
				}
				out = append(out, b...)
				off += int64(len(b))
			}
			if !bytes.Equal(out, e.Data) {
				t.Fatalf("%s with %d-byte reads: %d bytes differ from the %d of the tar", name, size, len(out), len(e.Data))
			}
		}
	}

	// A header that does not match fails the merged read.
	for i := range z.Files {
		if z.Files[i].Name == "a/file" {
			z.Files[i].UID = 4242
		}
	}
	_, root = newTestFS(t, &memReader{b: tb}, z)
	n, _ = walk(t, root, "a/file")
	if _, errno := n.Read(ctx, nil, make([]byte, 4096), 0); errno != syscall.EIO {
		t.Fatalf("merged read with mismatched header: %v, want EIO", errno)
	}
}
