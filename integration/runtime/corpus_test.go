//go:build integration

package runtime

import (
	"archive/tar"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
)

// corpusSpan is the span size the corpus is indexed with: the minimum, so
// that every layer is lazy and its files cross span boundaries.
const corpusSpan = 32 << 10

// corpus builds layers of tar and overlay edge cases (tarFile headers in
// layer order) and records which paths have a header of their own.
type corpus struct {
	t        *testing.T
	layers   [][]tarFile
	explicit map[string]bool
	rnd      *rand.Rand
}

func newCorpus(t *testing.T, seed uint64) *corpus {
	return &corpus{t: t, explicit: map[string]bool{}, rnd: rand.New(rand.NewPCG(seed, seed^0x5eed))}
}

// layer starts a new layer.
func (c *corpus) layer() { c.layers = append(c.layers, nil) }

// add appends a header (and body) to the current layer.
func (c *corpus) add(h tar.Header, body []byte) {
	l := len(c.layers) - 1
	if h.Format == tar.FormatUnknown {
		h.Format = tar.FormatPAX
	}
	c.layers[l] = append(c.layers[l], tarFile{h: h, body: body})
	if base := path.Base(fstest.Clean(h.Name)); !strings.HasPrefix(base, ".wh.") {
		c.explicit[fstest.Clean(h.Name)] = true
	}
}

func (c *corpus) dir(name string, mode int64, uid, gid int, mt time.Time) {
	c.add(tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: gid, ModTime: mt}, nil)
}

func (c *corpus) file(name string, mode int64, body []byte, mt time.Time) {
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, ModTime: mt}, body)
}

func (c *corpus) symlink(name, target string, mt time.Time) {
	c.add(tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: mt}, nil)
}

func (c *corpus) whiteout(name string) {
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}, nil)
}

func (c *corpus) random(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(c.rnd.Uint32())
	}
	return b
}

// tars writes the layers.
func (c *corpus) tars() [][]byte {
	var out [][]byte
	for _, l := range c.layers {
		out = append(out, makeTar(c.t, l))
	}
	return out
}

// editCorpus is the fixed corpus of TestDifferentialCorpus: four layers.
//
//  1. A base with every entry kind: files (empty, large across many spans,
//     setuid, setgid, sticky directories), hard links within a directory,
//     across directories, in chains and to symlinks, fifos and devices,
//     with link headers whose mode, owner, mtime and xattrs differ from the
//     target's (the last header sets the shared inode, as in containerd);
//     character and block devices (minors above 255, a 12-bit major),
//     fifos, symlinks (absolute, relative, dangling, to a directory, to
//     themselves, with a 300-byte target, with a 0644 header mode), names
//     with spaces, a newline, a tab, UTF-8, invalid UTF-8, shell
//     metacharacters, a 255-byte name, a 60-level deep path (PAX path),
//     GNU long-name headers, ustar headers; xattrs user.* (binary, empty),
//     security.capability, trusted.* (which containerd does not set from an
//     archive), on files, directories, and user.* on a symlink and a fifo
//     (which the kernel refuses and containerd skips);
//     mtimes before 1970, at 1969-12-31T23:59:59.5, in 1970 with
//     nanoseconds, in 2200 and in 2300 (past containerd's bound); the same
//     name given twice, a directory replaced by a file and a file by a
//     directory within one layer, a directory given twice (xattrs merged),
//     a root entry ("./") of mode 0700.
//  2. Changes: whiteouts of a file, a directory, a hard link of a group and
//     a symlink; an opaque directory (marker first) and one whose marker
//     comes after its new entries; a lower directory replaced by a file,
//     a lower file by a directory and by a symlink; new attributes and
//     xattrs on lower directories; new hard links within the layer.
//  3. Changes of changes: a whited-out file back as a directory, a file of
//     layer 2 deleted, a directory of layer 2 made opaque, a whiteout of
//     a name that never existed.
//  4. Padding: a file large enough to spread across spans.
func editCorpus(t *testing.T) *corpus {
	c := newCorpus(t, 1)
	t1 := time.Date(2025, 1, 2, 3, 4, 5, 987654321, time.UTC)
	t2 := time.Date(2026, 6, 7, 8, 9, 10, 123, time.UTC)
	c.layer()
	c.dir("./", 0o700, 5, 5, t1) // containerd ignores the root's entry
	c.dir("etc/", 0o755, 0, 0, t1)
	c.file("etc/empty", 0o644, nil, t1)
	c.file("etc/big", 0o644, c.random(300<<10), t1)
	c.file("etc/zeros", 0o644, make([]byte, 200<<10), t1)
	c.file("etc/mode0", 0, []byte("mode 0\n"), t1)
	c.dir("tmp/", 0o1777, 0, 0, t1)
	c.dir("usr/", 0o755, 0, 0, t1)
	c.dir("usr/bin/", 0o755, 0, 0, t1)
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/su", Mode: 0o4755, ModTime: t1}, []byte("#!/bin/sh\necho su\n"))
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/wall", Mode: 0o2755, Gid: 5, ModTime: t1}, []byte("wall\n"))
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/all-bits", Mode: 0o7777, Uid: 65534, Gid: 65534, ModTime: t1}, []byte("all\n"))
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/ping", Mode: 0o755, ModTime: t1, PAXRecords: map[string]string{
		// vfs_cap_data revision 2: cap_net_raw (13) permitted and effective.
		"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
	}}, []byte("ping\n"))
	c.dir("sgid/", 0o2775, 0, 50, t1)
	c.dir("home/", 0o755, 0, 0, t1)
	c.dir("home/user/", 0o700, 1000, 1000, t1)
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: "home/user/.profile", Mode: 0o600, Uid: 1000, Gid: 1000, Uname: "user", Gname: "user", ModTime: t1}, []byte("export PS1\n"))
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: "home/user/big-ids", Mode: 0o640, Uid: 1 << 20, Gid: 1<<31 - 2, ModTime: t1}, []byte("ids\n"))

	// Xattrs.
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/xattr", Mode: 0o644, ModTime: t1, PAXRecords: map[string]string{
		"SCHILY.xattr.user.a":       "value a",
		"SCHILY.xattr.user.empty":   "",
		"SCHILY.xattr.user.binary":  "\x00\xff\x00binary\n",
		"SCHILY.xattr.trusted.note": "trusted",
	}}, []byte("with xattrs\n"))
	c.add(tar.Header{Typeflag: tar.TypeDir, Name: "xdir/", Mode: 0o751, ModTime: t1, PAXRecords: map[string]string{
		"SCHILY.xattr.user.dir": "on a directory",
	}}, nil)
	c.add(tar.Header{Typeflag: tar.TypeSymlink, Name: "xdir/sym-xattr", Linkname: "../etc/xattr", Mode: 0o777, ModTime: t1, PAXRecords: map[string]string{
		"SCHILY.xattr.user.sym": "refused on a symlink",
	}}, nil)
	c.add(tar.Header{Typeflag: tar.TypeFifo, Name: "xdir/fifo-xattr", Mode: 0o600, ModTime: t1, PAXRecords: map[string]string{
		"SCHILY.xattr.user.fifo": "refused on a fifo",
	}}, nil)
	c.dir("xdir/", 0o755, 0, 0, t2) // a second header: mode and mtime change, user.dir stays

	// Hard links: the link headers carry attributes of their own.
	c.add(tar.Header{Typeflag: tar.TypeLink, Name: "etc/hard", Linkname: "etc/xattr", Mode: 0o600, Uid: 7, Gid: 8, ModTime: t2,
		PAXRecords: map[string]string{"SCHILY.xattr.user.a": "from the link", "SCHILY.xattr.user.link": "added"}}, nil)
	c.add(tar.Header{Typeflag: tar.TypeLink, Name: "usr/su-elsewhere", Linkname: "usr/bin/su", Mode: 0o4755, ModTime: t1}, nil)
	c.dir("links/", 0o755, 0, 0, t1)
	c.add(tar.Header{Typeflag: tar.TypeLink, Name: "links/chain", Linkname: "etc/hard", Mode: 0o640, Uid: 9, ModTime: t1}, nil) // a link to a link's name
	c.add(tar.Header{Typeflag: tar.TypeLink, Name: "links/big", Linkname: "./etc/big", Mode: 0o644, ModTime: t1}, nil)
	c.add(tar.Header{Typeflag: tar.TypeLink, Name: "links/to-zeros", Linkname: "/etc/zeros", Mode: 0o644, ModTime: t1}, nil) // absolute link name

	// Devices and fifos.
	c.dir("dev/", 0o755, 0, 0, t1)
	c.add(tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: t1}, nil)
	c.add(tar.Header{Typeflag: tar.TypeChar, Name: "dev/bigminor", Mode: 0o600, Devmajor: 200, Devminor: 70000, ModTime: t1}, nil)
	c.add(tar.Header{Typeflag: tar.TypeChar, Name: "dev/bigmajor", Mode: 0o600, Devmajor: 4000, Devminor: 1, ModTime: t1}, nil)
	c.add(tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda1", Mode: 0o660, Gid: 6, Devmajor: 8, Devminor: 1, ModTime: t1}, nil)
	c.add(tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop300", Mode: 0o660, Gid: 6, Devmajor: 7, Devminor: 300, ModTime: t1}, nil)
	c.add(tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o620, ModTime: t1}, nil)
	c.add(tar.Header{Typeflag: tar.TypeLink, Name: "dev/null-link", Linkname: "dev/null", Mode: 0o600, Uid: 3, ModTime: t2}, nil)
	c.add(tar.Header{Typeflag: tar.TypeLink, Name: "dev/fifo-link", Linkname: "dev/fifo", Mode: 0o644, ModTime: t1}, nil)

	// Symlinks.
	c.dir("sym/", 0o755, 0, 0, t1)
	c.symlink("sym/abs", "/etc/big", t1)
	c.symlink("sym/rel", "../etc/big", t1)
	c.symlink("sym/dangling", "nowhere/at/all", t1)
	c.symlink("sym/to-dir", "/usr/bin", t1)
	c.symlink("sym/self", "self", t1)
	c.symlink("sym/long", strings.Repeat("long-target/", 25), t1)
	c.add(tar.Header{Typeflag: tar.TypeSymlink, Name: "sym/mode644", Linkname: "abs", Mode: 0o644, Uid: 5, Gid: 6, ModTime: t1}, nil)
	c.add(tar.Header{Typeflag: tar.TypeLink, Name: "sym/hard-to-sym", Linkname: "sym/rel", Mode: 0o600, Uid: 11, ModTime: t2}, nil)

	// Names.
	c.dir("names/", 0o755, 0, 0, t1)
	for _, n := range []string{
		"with spaces", " leading space", "trailing space ", "new\nline", "tab\there", "ünïcödé-日本語-😀",
		"bad-utf8-\xc3\x28", "-dash", "#hash", `back\slash`, `quo"te's`, "*glob?[x]", "$dollar", "semi;colon",
		strings.Repeat("n", 255), "...", "..x", ".hidden", "x.wh.notawhiteout",
	} {
		c.file("names/"+n, 0o644, []byte(n+"\n"), t1)
	}
	deep := strings.Repeat("deep/", 60)
	c.file(deep+"file", 0o644, []byte("60 levels down\n"), t1)
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: "names/gnu-" + strings.Repeat("g", 150), Mode: 0o644, ModTime: t1.Truncate(time.Second), Format: tar.FormatGNU}, []byte("GNU long name\n"))
	c.add(tar.Header{Typeflag: tar.TypeSymlink, Name: "names/gnu-link", Linkname: strings.Repeat("t", 120), Mode: 0o777, ModTime: t1.Truncate(time.Second), Format: tar.FormatGNU}, nil)
	c.add(tar.Header{Typeflag: tar.TypeReg, Name: "names/ustar", Mode: 0o644, ModTime: t1.Truncate(time.Second), Format: tar.FormatUSTAR}, []byte("ustar\n"))

	// Times.
	c.dir("times/", 0o755, 0, 0, t1)
	for name, mt := range map[string]time.Time{
		"1960":            time.Date(1960, 7, 1, 12, 0, 0, 500, time.UTC),
		"before-epoch":    time.Unix(-1, 500000000),
		"epoch":           time.Unix(0, 0),
		"epoch-and-a-bit": time.Unix(0, 250000001),
		"nanoseconds":     time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC),
		"2200":            time.Date(2200, 1, 1, 0, 0, 0, 1, time.UTC),
		"2300":            time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		c.file("times/"+name, 0o644, []byte(name+"\n"), mt)
	}
	c.dir("times/old-dir/", 0o755, 0, 0, time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC))

	// Names given twice in the layer.
	c.file("dup", 0o600, []byte("first\n"), t1)
	c.file("dup", 0o640, []byte("second wins\n"), t2)
	c.dir("dir2file/", 0o755, 0, 0, t1)
	c.file("dir2file/child", 0o644, []byte("gone with its directory\n"), t1)
	c.file("dir2file", 0o644, []byte("a file now\n"), t1)
	c.file("file2dir", 0o644, []byte("a directory next\n"), t1)
	c.dir("file2dir/", 0o700, 0, 0, t1)
	c.file("file2dir/child", 0o644, []byte("child\n"), t1)

	// Lower contents for layer 2's changes.
	c.dir("opq/", 0o755, 0, 0, t1)
	c.file("opq/a", 0o644, []byte("hidden by the opaque directory\n"), t1)
	c.dir("opq/sub/", 0o755, 0, 0, t1)
	c.file("opq/sub/b", 0o644, []byte("hidden too\n"), t1)
	c.dir("opq2/", 0o755, 0, 0, t1)
	c.file("opq2/old", 0o644, []byte("hidden by a marker that comes late\n"), t1)
	c.dir("gone-dir/", 0o755, 0, 0, t1)
	c.file("gone-dir/f", 0o644, []byte("deleted with its directory\n"), t1)
	c.dir("to-file/", 0o755, 0, 0, t1)
	c.file("to-file/f", 0o644, []byte("under a directory replaced by a file\n"), t1)
	c.file("to-dir", 0o644, []byte("a file replaced by a directory\n"), t1)
	c.file("to-sym", 0o644, []byte("a file replaced by a symlink\n"), t1)
	c.dir("attrs/", 0o755, 0, 0, t1)
	c.file("attrs/f", 0o644, []byte("its directory changes mode and owner\n"), t1)

	// 2: changes.
	c.layer()
	c.dir("./", 0o755, 0, 0, t2)
	c.dir("etc/", 0o755, 0, 0, t2)
	c.whiteout("etc/.wh.empty")
	c.whiteout("etc/.wh.hard") // one name of the xattr/hard/chain group
	c.file("etc/new", 0o644, []byte("new in layer 2\n"), t2)
	c.add(tar.Header{Typeflag: tar.TypeLink, Name: "etc/new-link", Linkname: "etc/new", Mode: 0o444, Uid: 12, ModTime: t1}, nil)
	c.whiteout(".wh.gone-dir")
	c.dir("sym/", 0o755, 0, 0, t2)
	c.whiteout("sym/.wh.dangling")
	c.dir("opq/", 0o750, 0, 0, t2)
	c.whiteout("opq/.wh..wh..opq")
	c.file("opq/new", 0o644, []byte("the only entry of opq\n"), t2)
	c.dir("opq2/", 0o755, 0, 0, t2)
	c.file("opq2/new", 0o644, []byte("before the marker\n"), t2)
	c.whiteout("opq2/.wh..wh..opq")
	c.file("to-file", 0o600, []byte("was a directory\n"), t2)
	c.dir("to-dir/", 0o711, 0, 0, t2)
	c.file("to-dir/f", 0o644, []byte("was a file\n"), t2)
	c.symlink("to-sym", "etc/new", t2)
	c.add(tar.Header{Typeflag: tar.TypeDir, Name: "attrs/", Mode: 0o701, Uid: 33, Gid: 44, ModTime: t2, PAXRecords: map[string]string{
		"SCHILY.xattr.user.changed": "in layer 2",
	}}, nil)
	c.dir("tmp/", 0o777, 0, 0, t2) // sticky bit dropped
	c.dir("layer2/", 0o755, 0, 0, t2)
	c.file("layer2/spread", 0o644, c.random(100<<10), t2)
	c.file("layer2/deleted-later", 0o644, []byte("deleted by layer 3\n"), t2)
	c.dir("layer2/opaque-later/", 0o755, 0, 0, t2)
	c.file("layer2/opaque-later/x", 0o644, []byte("hidden by layer 3\n"), t2)

	// 3: changes of changes.
	c.layer()
	c.dir("etc/", 0o755, 0, 0, t1)
	c.dir("etc/empty/", 0o755, 0, 0, t1) // whited out in layer 2, back as a directory
	c.file("etc/empty/f", 0o644, []byte("back\n"), t1)
	c.dir("layer2/", 0o755, 0, 0, t1)
	c.whiteout("layer2/.wh.deleted-later")
	c.dir("layer2/opaque-later/", 0o700, 0, 0, t1)
	c.whiteout("layer2/opaque-later/.wh..wh..opq")
	c.file("layer2/opaque-later/y", 0o644, []byte("the only entry left\n"), t1)
	c.whiteout(".wh.never-existed")
	c.file("layer3", 0o644, c.random(80<<10), t1)

	// 4: one large file.
	c.layer()
	c.dir("big/", 0o755, 0, 0, t2)
	c.file("big/data", 0o644, c.random(1<<20), t2)
	return c
}

// TestDifferentialCorpus: the edge-case corpus (editCorpus), indexed with
// 32 KiB spans so that every layer is lazy, must look the same unpacked by
// containerd's overlayfs snapshotter and mounted lazily: every path's type,
// mode, owner, size, content hash, symlink target, device numbers, xattrs,
// mtime (of paths with a header of their own) and hard-link grouping.
func TestDifferentialCorpus(t *testing.T) {
	requireRoot(t)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	c := editCorpus(t)
	layers := c.tars()
	want, got := diffViews(t, "socikit/corpus", corpusSpan, len(layers), layers...)
	for _, p := range []string{"etc/hard", "gone-dir", "gone-dir/f", "sym/dangling", "opq/a", "opq/sub", "opq2/old", "to-file/f",
		"layer2/deleted-later", "layer2/opaque-later/x", "dir2file/child"} {
		if _, ok := want[p]; ok {
			t.Errorf("overlayfs shows %s, which the corpus deletes", p)
		}
	}
	for _, p := range []string{"etc/xattr", "links/chain", "opq/new", "opq2/new", "etc/empty/f", "names/new\nline", strings.Repeat("deep/", 60) + "file", "big/data"} {
		if _, ok := want[p]; !ok {
			t.Errorf("overlayfs lacks %q", p)
		}
	}
	compareTrees(t, want, got, c.explicit)
}

// TestDifferentialCrossLayerLink: a layer with a hard link to a file of a
// lower layer. containerd's overlayfs snapshotter cannot unpack it (the
// link target is not in the new layer's directory: "link ...: no such file
// or directory"); socikit-snapshotter refuses to mount it lazily (its tree
// would have to share an inode with another layer's mount), leaves it to
// containerd, and the pull fails the same way: the same outcome, and no
// layer shown without its link.
func TestDifferentialCrossLayerLink(t *testing.T) {
	requireRoot(t)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	f := flavours[0]
	requireExecutable(t, f.ctr)
	c := newCorpus(t, 2)
	t1 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	c.layer()
	c.dir("data/", 0o755, 0, 0, t1)
	c.file("data/lower", 0o644, c.random(200<<10), t1)
	c.layer()
	c.dir("data/", 0o755, 0, 0, t1)
	c.add(tar.Header{Typeflag: tar.TypeLink, Name: "data/upper-link", Linkname: "data/lower", Mode: 0o600, Uid: 4, ModTime: t1}, nil)
	c.file("data/upper", 0o644, c.random(100<<10), t1)
	reg := newRegistry(t)
	plain, _ := reg.pushImage(t, "socikit/crosslink", c.tars()...)
	indexed := convertWith(t, plain, plain+"-soci", "-span-size", fmt.Sprint(corpusSpan))
	d := startContainerd(t, f)
	_, errOverlay := d.tryCtr("-n", "socikit-test", "image", "pull", "--plain-http", plain)
	_, errLazy := d.tryCtr("-n", "socikit-test", "image", "pull", "--snapshotter", "socikit", "--plain-http", indexed)
	for name, err := range map[string]error{"overlayfs": errOverlay, "socikit": errLazy} {
		if err == nil || !strings.Contains(err.Error(), "failed to extract layer") || !strings.Contains(err.Error(), "data/lower") {
			t.Errorf("%s pull: %v, want containerd's failure to link data/lower", name, err)
		}
	}
	// The lower layer may stay mounted or be cleaned up with the failed
	// pull; the upper one is never mounted lazily.
	if n := d.lazyMounts(t); n > 1 {
		t.Errorf("%d lazy layer mounts, want at most 1 (the lower layer)", n)
	}
}

// TestDifferentialRandom: corpora drawn at random from the same edge cases
// (names, types, modes, owners, times, xattrs, hard links, whiteouts,
// opaque directories over 3 layers), SOCIKIT_CORPUS_SEEDS of them (default
// 1; the long run: 20), compared as TestDifferentialCorpus does.
func TestDifferentialRandom(t *testing.T) {
	requireRoot(t)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	seeds := 1
	if s := os.Getenv("SOCIKIT_CORPUS_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SOCIKIT_CORPUS_SEEDS=%q", s)
		}
		seeds = n
	}
	var paths, diffs int
	var bytes int64
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			c := randomCorpus(t, uint64(seed))
			layers := c.tars()
			want, got := diffViews(t, fmt.Sprint("socikit/random", seed), corpusSpan, len(layers), layers...)
			p, b, d := compareTrees(t, want, got, c.explicit)
			paths, bytes, diffs = paths+p, bytes+b, diffs+d
		})
	}
	t.Logf("SUMMARY: %d random corpora, %d paths, %d bytes of file contents compared, %d differ", seeds, paths, bytes, diffs)
}

// randomCorpus draws a corpus of 3 layers. Each layer writes, in the way
// real diff tars do, a header for every parent directory of its entries.
func randomCorpus(t *testing.T, seed uint64) *corpus {
	c := newCorpus(t, seed)
	r := c.rnd
	names := []string{"a", "b", "c d", "é", "\n", "x.y", "...", strings.Repeat("l", 200), "-", "\x01ctl"}
	dirs := []string{"", "d1/", "d1/d2/", "e/", "e/f g/", "h/"}
	times := []time.Time{
		time.Date(2025, 1, 2, 3, 4, 5, 987654321, time.UTC), time.Unix(0, 0), time.Unix(-100, 0), time.Unix(0, 7),
		time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 2, 2, 2, 2, 2, 0, time.UTC),
	}
	modes := []int64{0o644, 0o600, 0o755, 0o4755, 0o2711, 0o1777, 0, 0o7777, 0o444}
	var files []string // regular files of the current layer, for hard links
	for l := 0; l < 3; l++ {
		c.layer()
		files = files[:0]
		written := map[string]bool{} // directories and names written by this layer
		parent := func(p string) {
			for _, d := range dirs[1:] {
				if strings.HasPrefix(p, d) && !written[d] {
					written[d] = true
					c.dir(d, modes[r.IntN(len(modes))]|0o700, r.IntN(3)*1000, r.IntN(3), times[r.IntN(len(times))])
				}
			}
		}
		for range 40 + r.IntN(40) {
			d := dirs[r.IntN(len(dirs))]
			name := d + names[r.IntN(len(names))] + strconv.Itoa(r.IntN(6))
			mt := times[r.IntN(len(times))]
			mode := modes[r.IntN(len(modes))]
			var x map[string]string
			if r.IntN(4) == 0 {
				x = map[string]string{"SCHILY.xattr.user.k" + strconv.Itoa(r.IntN(3)): string(c.random(r.IntN(20)))}
			}
			parent(name)
			// A whiteout of a name this layer writes (or the other way
			// round) makes containerd's overlay applier fail (mknod:
			// file exists): real diffs never have both.
			if written[name] {
				name += "-again"
				if written[name] {
					continue
				}
			}
			written[name] = true
			switch k := r.IntN(12); {
			case k < 4:
				c.add(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: r.IntN(2) * 1000, ModTime: mt, PAXRecords: x}, c.random(r.IntN(3)*r.IntN(40<<10)))
				files = append(files, name)
			case k == 4 && len(files) > 0:
				c.add(tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: files[r.IntN(len(files))], Mode: mode, Uid: r.IntN(5), ModTime: mt, PAXRecords: x}, nil)
			case k == 5:
				c.add(tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: names[r.IntN(len(names))], Mode: 0o777, ModTime: mt}, nil)
			case k == 6:
				c.add(tar.Header{Typeflag: tar.TypeChar, Name: name, Mode: mode, Devmajor: int64(r.IntN(300)), Devminor: int64(r.IntN(100000)), ModTime: mt}, nil)
			case k == 7:
				c.add(tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: mode, ModTime: mt}, nil)
			case k == 8 && l > 0:
				c.whiteout(path.Dir(name) + "/.wh." + path.Base(name))
			case k == 9 && l > 0 && d != "":
				c.whiteout(d + ".wh..wh..opq")
			case k == 10 && d != "":
				c.add(tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode | 0o700, Uid: r.IntN(3), ModTime: mt, PAXRecords: x}, nil)
			default:
				c.add(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, ModTime: mt}, nil)
				files = append(files, name)
			}
		}
		c.file(fmt.Sprintf("spread%d", l), 0o644, c.random(70<<10), times[0])
	}
	return c
}
