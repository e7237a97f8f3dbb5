package fs

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
)

// plainLayer is a layer without extended attributes or opaque
// directories.
func plainLayer() []fstest.Entry {
	t0 := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	return []fstest.Entry{
		{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755, ModTime: t0, Format: tar.FormatPAX}},
		{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "d/f", Mode: 0o644, Size: 3, ModTime: t0, Format: tar.FormatPAX}, Data: []byte("abc")},
		{Hdr: tar.Header{Typeflag: tar.TypeChar, Name: "d/.wh.gone", ModTime: t0, Format: tar.FormatPAX}},
	}
}

// TestNoXattrs: a layer without extended attributes answers ENOSYS to
// GETXATTR (the kernel stops asking) and an empty list to LISTXATTR; one
// with an attribute anywhere, or an opaque directory, answers both.
func TestNoXattrs(t *testing.T) {
	ctx := context.Background()
	withXattr := append(plainLayer(), fstest.Entry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "d/cap", Mode: 0o755,
		PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "x"}, Format: tar.FormatPAX}})
	opaque := append(plainLayer(), fstest.Entry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "d/.wh..wh..opq", Format: tar.FormatPAX}})
	for _, tc := range []struct {
		name    string
		entries []fstest.Entry
		file    string
		want    syscall.Errno // of getxattr user.x on file
	}{
		{"plain", plainLayer(), "d/f", syscall.ENOSYS},
		{"xattr", withXattr, "d/f", syscall.ENODATA},
		{"opaque", opaque, "d/f", syscall.ENODATA},
		{"tricky", fstest.Tricky(t.Name(), 1000), "a/file", syscall.ENODATA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z, tb := build(t, tc.entries)
			_, root := newTestFS(t, &memReader{b: tb}, z)
			f, errno := walk(t, root, tc.file)
			if errno != 0 {
				t.Fatal(errno)
			}
			if _, errno := f.Getxattr(ctx, "user.x", make([]byte, 8)); errno != tc.want {
				t.Errorf("getxattr: %v, want %v", errno, tc.want)
			}
			n, errno := f.Listxattr(ctx, make([]byte, 64))
			if errno != 0 || tc.want == syscall.ENOSYS && n != 0 {
				t.Errorf("listxattr: %d bytes, %v", n, errno)
			}
		})
	}
}

// TestNoXattrsMount: through a mount of a layer without extended
// attributes, getxattr fails with EOPNOTSUPP and only the first one is a
// request (root only).
func TestNoXattrsMount(t *testing.T) {
	var c OpCounters
	dir := mountCounted(t, plainLayer(), &c)
	for _, p := range []string{"d/f", "d", "d/f", "d/gone"} {
		if _, err := unix.Lgetxattr(filepath.Join(dir, p), "trusted.overlay.metacopy", make([]byte, 8)); !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("getxattr %s: %v, want EOPNOTSUPP", p, err)
		}
	}
	if n := c.Count(OpGetxattr); n != 1 {
		t.Errorf("%d GETXATTR requests, want 1", n)
	}
	if n, err := unix.Llistxattr(filepath.Join(dir, "d/f"), make([]byte, 64)); n != 0 || err != nil {
		t.Errorf("listxattr: %d bytes, %v; want an empty list", n, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "d/f")); err != nil || string(b) != "abc" {
		t.Errorf("read: %q, %v", b, err)
	}
}
