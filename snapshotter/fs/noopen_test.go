package fs

import (
	"context"
	"slices"
	"syscall"
	"testing"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
)

// TestNoOpenWithoutPassthroughFiles checks that a layer with no file of
// the passthrough minimum mounts as without passthrough (opens answered
// ENOSYS: the kernel then sends no OPEN, RELEASE or FLUSH), and that one
// with such a file keeps passthrough and its OPEN requests.
func TestNoOpenWithoutPassthroughFiles(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		big     int // size of the Tricky layer's a/big
		minSize int64
		noOpen  bool
	}{
		{"below-min", 200000, 200001, true},
		{"at-min", 200001, 200001, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z, tb := build(t, fstest.Tricky(t.Name(), tc.big))
			src := &memContent{tb: tb, dir: t.TempDir(), localEnd: int64(len(tb))}
			f, root := newTestFS(t, &memReader{b: tb}, z, WithPassthrough(src, tc.minSize))
			if got := f.Options().MountOptions.DisabledCapabilities&fuse.CAP_PASSTHROUGH != 0; got != tc.noOpen {
				t.Errorf("passthrough capability disabled: %v, want %v", got, tc.noOpen)
			}
			n, _ := walk(t, root, "a/big")
			_, _, errno := n.Open(ctx, syscall.O_RDONLY)
			if got := errno == syscall.ENOSYS; got != tc.noOpen {
				t.Errorf("open: errno %v; want ENOSYS: %v", errno, tc.noOpen)
			} else if !tc.noOpen && errno != 0 {
				t.Errorf("open: %v", errno)
			}
			if errno := n.Flush(ctx, nil); errno != syscall.ENOSYS {
				t.Errorf("flush: %v, want ENOSYS", errno)
			}
			if got, errno := readAll(t, n); errno != 0 || len(got) != tc.big {
				t.Errorf("read: %d bytes, %v; want %d", len(got), errno, tc.big)
			}
		})
	}
}

// TestOpendirCacheDir checks that directory handles let the kernel cache
// the listing (FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE) and list what Readdir
// lists.
func TestOpendirCacheDir(t *testing.T) {
	ctx := context.Background()
	z, tb := build(t, fstest.Tricky(t.Name(), 1000))
	_, root := newTestFS(t, &memReader{b: tb}, z)
	n, _ := walk(t, root, "many")
	fh, flags, errno := n.OpendirHandle(ctx, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	if want := uint32(fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE); flags&want != want {
		t.Errorf("opendir flags %#x, want %#x set", flags, want)
	}
	rd, ok := fh.(fusefs.FileReaddirenter)
	if !ok {
		t.Fatalf("handle %T does not list", fh)
	}
	var got []string
	for {
		de, errno := rd.Readdirent(ctx)
		if errno != 0 {
			t.Fatal(errno)
		}
		if de == nil {
			break
		}
		got = append(got, de.Name)
	}
	ds, _ := n.Readdir(ctx)
	var want []string
	for ds.HasNext() {
		de, _ := ds.Next()
		want = append(want, de.Name)
	}
	if len(got) != 40 || !slices.Equal(got, want) {
		t.Errorf("listing %d entries %q, Readdir %q", len(got), got, want)
	}
	f, _ := walk(t, root, "a/big")
	if _, _, errno := f.OpendirHandle(ctx, 0); errno != syscall.ENOTDIR {
		t.Errorf("opendir of a file: %v, want ENOTDIR", errno)
	}
}
