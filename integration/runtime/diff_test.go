//go:build integration

package runtime

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
)

// diffLayers are the two layers of the differential test: fstest.Tricky
// (every entry kind, a 1 MiB file spanning many 64 KiB spans, long and
// non-UTF-8 names, xattrs, devices, hard links, a whiteout and an opaque
// directory of its own) and above it a layer that deletes a file, a whole
// directory and a file of a directory, makes a lower directory opaque,
// replaces a file, and adds hard links, symlinks, a device and directory
// xattrs of its own.
//
// Hard-link headers carry their target's mode, owner and mtime, and symlinks
// mode 0777, as archive/tar's FileInfoHeader and GNU tar write them:
// containerd applies a link header's mode and times to the shared inode
// and reports symlinks 0777 whatever the header says, while the lazy mount
// keeps the target's attributes and the header's symlink mode
// (docs/snapshotter.md, "Differential rootfs"). explicit returns the paths
// that have a header of their own.
func diffLayers(t *testing.T) (lower, upper []byte, explicit map[string]bool) {
	t.Helper()
	explicit = map[string]bool{}
	entries := fstest.Tricky(t.Name(), 1<<20)
	last := map[string]tar.Header{}
	for i := range entries {
		h := &entries[i].Hdr
		if h.Typeflag == tar.TypeLink {
			target := last[fstest.Clean(h.Linkname)]
			h.Mode, h.Uid, h.Gid, h.ModTime = target.Mode, target.Uid, target.Gid, target.ModTime
		}
		last[fstest.Clean(h.Name)] = *h
		explicit[fstest.Clean(h.Name)] = true
	}
	lower, err := fstest.Tar(entries)
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2025, 1, 2, 3, 4, 5, 987654321, time.UTC)
	dir := func(name string, mode int64) tarFile {
		return tarFile{h: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: t1}}
	}
	reg := func(name string, mode int64, body []byte) tarFile {
		return tarFile{h: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, ModTime: t1}, body: body}
	}
	wh := func(name string) tarFile {
		return tarFile{h: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: t1}}
	}
	bdir := dir("b/", 0o711)
	bdir.h.PAXRecords = map[string]string{"SCHILY.xattr.user.dirattr": "on a directory"}
	upperFiles := []tarFile{
		dir("./", 0o755),
		dir("a/", 0o750),
		wh("a/.wh.empty"), // a file of the lower layer
		reg("a/file", 0o600, []byte("replaced by the upper layer\n")), // its hard link a/hard keeps the old data
		wh(".wh.implicit"), // a whole lower directory
		dir("many/", 0o755),
		wh("many/.wh.f001"),
		dir("dev/", 0o755),
		wh("dev/.wh..wh..opq"), // dev/null and dev/sda gone
		{h: tar.Header{Typeflag: tar.TypeChar, Name: "dev/zero", Mode: 0o666, Devmajor: 1, Devminor: 5, ModTime: t1}},
		bdir,
		reg("b/orig", 0o644, fstest.Random(t.Name()+"orig", 200000)),
		{h: tar.Header{Typeflag: tar.TypeLink, Name: "b/link", Linkname: "b/orig", ModTime: t1}},
		{h: tar.Header{Typeflag: tar.TypeLink, Name: "b/link2", Linkname: "b/orig", ModTime: t1}},
		{h: tar.Header{Typeflag: tar.TypeSymlink, Name: "b/up", Linkname: "../a/big", ModTime: t1}},
		reg("b/"+strings.Repeat("x", 250), 0o644, []byte("a 250-byte name\n")),
		reg("b/\xc3\x28invalid", 0o644, nil),
	}
	for i, f := range upperFiles {
		switch f.h.Typeflag {
		case tar.TypeLink:
			upperFiles[i].h.Mode, upperFiles[i].h.ModTime = 0o644, t1 // as b/orig
		case tar.TypeSymlink:
			upperFiles[i].h.Mode = 0o777
		}
		explicit[fstest.Clean(f.h.Name)] = true
	}
	return lower, makeTar(t, upperFiles), explicit
}

// TestDifferentialRootfs pulls the same two-layer image twice into
// containerd 2.4.2: unpacked by containerd's overlayfs snapshotter, and
// converted (SOCI v2, 64 KiB spans) and mounted lazily by
// socikit-snapshotter. A read-only view of each is mounted and the two trees
// must be identical: names, types, modes, owners, sizes, mtimes, link
// targets, device numbers, xattrs, hard-link groups, file contents, and
// what the upper layer deleted is absent from both.
func TestDifferentialRootfs(t *testing.T) {
	requireRoot(t)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	lower, upper, explicit := diffLayers(t)
	want, got := diffViews(t, "socikit/tricky", 65536, 2, lower, upper)

	for _, p := range []string{"a/empty", "implicit", "many/f001", "dev/null", "dev/sda", "a/gone"} {
		if _, ok := want[p]; ok {
			t.Errorf("overlayfs shows %s, which a whiteout deletes", p)
		}
	}
	for _, p := range []string{"b/link", "a/big", fstest.LongName, fstest.BadUTF8, "dev/zero", "opq/kept"} {
		if _, ok := want[p]; !ok {
			t.Errorf("overlayfs lacks %q", p)
		}
	}
	compareTrees(t, want, got, explicit)
}

// diffViews pushes layers as an image, converts it (SOCI v2, spans of
// spanSize), pulls the plain image into containerd 2.4.2's overlayfs
// snapshotter and the converted one lazily into socikit-snapshotter (which
// must mount lazy layers of them: lazy), mounts a read-only view of each
// and returns walkTree of both.
func diffViews(t *testing.T, repo string, spanSize, lazy int, layers ...[]byte) (want, got map[string]string) {
	t.Helper()
	want, got, _ = diffViewsConfig(t, nil, repo, spanSize, lazy, layers...)
	return want, got
}

// diffViewsConfig is diffViews with extra lines of socikit-snapshotter's
// config (startContainerd); spanSize 0 pulls the plain image, unconverted,
// into socikit-snapshotter too. It also returns the daemons.
func diffViewsConfig(t *testing.T, extra []string, repo string, spanSize, lazy int, layers ...[]byte) (want, got map[string]string, d *daemons) {
	t.Helper()
	f := flavours[0]
	requireExecutable(t, f.ctr)
	reg := newRegistry(t)
	plain, img := reg.pushImage(t, repo, layers...)
	indexed := plain
	if spanSize > 0 {
		indexed = convertWith(t, plain, plain+"-soci", "-span-size", fmt.Sprint(spanSize))
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	chain := cf.RootFS.DiffIDs[0].String()
	for _, d := range cf.RootFS.DiffIDs[1:] {
		chain = fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(chain+" "+d.String())))
	}

	d = startContainerd(t, f, extra...)
	ns := "socikit-test"
	d.ctr(t, "-n", ns, "image", "pull", "--plain-http", plain) // overlayfs
	d.ctr(t, "-n", ns, "image", "pull", "--snapshotter", "socikit", "--plain-http", indexed)
	if got := d.lazyMounts(t); got != lazy {
		t.Fatalf("%d lazy layer mounts, want %d", got, lazy)
	}
	// The views are made under a lease held until they are unmounted: a
	// snapshot nothing refers to (no image, container, lease or gc.root
	// label) is garbage to containerd, and the collection the pulls'
	// deleted leases schedule removed a view made by one ctr call before
	// the next asked for its mounts ("snapshot diff-view-overlayfs does not
	// exist"). ctr has no way to pass a lease from call to call, so this
	// goes through containerd's client, in one session.
	client, err := containerd.New(d.address, containerd.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 5*time.Minute)
	t.Cleanup(cancel)
	ctx, releaseLease, err := client.WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := releaseLease(ctx); err != nil {
			t.Errorf("delete the views' lease: %v", err)
		}
	})
	view := func(snapshotter string) string {
		key := "diff-view-" + snapshotter
		target := t.TempDir()
		sn := client.SnapshotService(snapshotter)
		mounts, err := sn.View(ctx, key, chain)
		if err != nil {
			t.Fatalf("view %s of %s (%s): %v", key, chain, snapshotter, err)
		}
		if err := mount.All(mounts, target); err != nil {
			t.Fatalf("mount %s (%s) at %s: %v (mounts %+v)", key, snapshotter, target, err, mounts)
		}
		t.Cleanup(func() {
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", target, err)
			}
			if err := sn.Remove(ctx, key); err != nil {
				t.Errorf("remove %s (%s): %v", key, snapshotter, err)
			}
		})
		return target
	}
	wantRoot, gotRoot := view("overlayfs"), view("socikit")
	// A collection now (a lease deleted synchronously runs one and waits
	// for it) must leave the views alone.
	l, err := client.LeasesService().Create(ctx, leases.WithRandomID())
	if err != nil {
		t.Fatal(err)
	}
	if err := client.LeasesService().Delete(ctx, l, leases.SynchronousDelete); err != nil {
		t.Fatal(err)
	}
	for _, sn := range []string{"overlayfs", "socikit"} {
		if _, err := client.SnapshotService(sn).Stat(ctx, "diff-view-"+sn); err != nil {
			t.Fatalf("view after a garbage collection (%s): %v", sn, err)
		}
	}
	return walkTree(t, wantRoot), walkTree(t, gotRoot), d
}

// compareTrees reports every path whose description differs between the
// overlayfs view (want) and the lazy one (got), and returns how many paths
// and file bytes it compared and how many differ. Directories without a
// header of their own (not in explicit) and the root have their mtimes
// set aside: containerd creates them at unpack time (mtime now), the lazy
// mount shows mtime 0, and containerd does not apply the root entry's mtime
// either.
func compareTrees(t *testing.T, want, got map[string]string, explicit map[string]bool) (paths int, bytes int64, diffs int) {
	t.Helper()
	var all []string
	for p := range want {
		all = append(all, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			all = append(all, p)
		}
	}
	sort.Strings(all)
	for _, p := range all {
		w, g := want[p], got[p]
		if p == "." || !explicit[p] {
			w, g = dropMtime(w), dropMtime(g)
		}
		if w != g {
			diffs++
			t.Errorf("%q:\n  overlayfs: %s\n  socikit:   %s", p, w, g)
		} else if i := strings.Index(w, " size="); i >= 0 && !strings.Contains(w, " linkof=") {
			var n int64
			fmt.Sscanf(w[i+len(" size="):], "%d", &n)
			bytes += n
		}
	}
	t.Logf("compared %d paths, %d bytes of file contents (overlayfs view vs lazy socikit view): %d differ", len(all), bytes, diffs)
	return len(all), bytes, diffs
}

// walkTree describes every path under root (relative; "." for the root) as
// one comparable string. Hard links are named by the first path of their
// inode, so the groups must match, not the inode numbers.
func walkTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	firstOfInode := map[[2]uint64]string{} // by (st_dev, st_ino): each lazy layer is a filesystem of its own
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); errors.Is(err, syscall.ENOENT) {
			// A whiteout in a directory overlayfs does not merge (one
			// layer has it, or it is opaque) is listed by readdir and
			// absent to lookup.
			out[rel] = "listed by readdir, absent to lstat"
			return nil
		} else if err != nil {
			return fmt.Errorf("lstat %q: %w", rel, err)
		}
		mode := fs.FileMode(st.Mode & 0o7777)
		desc := fmt.Sprintf("type=%o mode=%04o uid=%d gid=%d mtime=%d.%09d", st.Mode&syscall.S_IFMT, uint32(mode), st.Uid, st.Gid, st.Mtim.Sec, st.Mtim.Nsec)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("read %s: %w", rel, err)
			}
			desc += fmt.Sprintf(" size=%d sha256=%x nlink=%d", st.Size, sha256.Sum256(b), st.Nlink)
			if first, ok := firstOfInode[[2]uint64{st.Dev, st.Ino}]; ok {
				desc += " linkof=" + first
			} else {
				firstOfInode[[2]uint64{st.Dev, st.Ino}] = rel
			}
		case syscall.S_IFLNK:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		case syscall.S_IFCHR, syscall.S_IFBLK:
			desc += fmt.Sprintf(" rdev=%d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		desc += xattrs(t, p)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// xattrs lists the extended attributes of p (not following symlinks),
// overlayfs' own excepted.
func xattrs(t *testing.T, p string) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return " xattrs=error:" + err.Error()
	}
	var names []string
	for _, k := range strings.Split(string(buf[:n]), "\x00") {
		if k != "" && !strings.HasPrefix(k, "trusted.overlay.") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	s := ""
	for _, k := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, k, v)
		if err != nil {
			s += fmt.Sprintf(" %s=error:%v", k, err)
			continue
		}
		s += fmt.Sprintf(" %s=%q", k, v[:m])
	}
	return s
}

func dropMtime(s string) string {
	f := strings.Fields(s)
	for i, x := range f {
		if strings.HasPrefix(x, "mtime=") {
			f[i] = "mtime=(not compared)"
		}
	}
	return strings.Join(f, " ")
}
