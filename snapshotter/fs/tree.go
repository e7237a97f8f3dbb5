package fs

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/socikit/socikit/ztoc"
)

// Overlayfs whiteout conventions in layer tars (OCI image spec).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = whiteoutPrefix + whiteoutPrefix + ".opq"
)

// entry is one inode of the layer's tree. The tree is built once and not
// changed afterwards, so entries are read without locks.
//
// A mounted layer keeps one entry per inode for as long as it is mounted,
// so entries are kept small (fields ordered against padding; 144 bytes):
// a directory's children are a slice sorted by name, searched by Lookup,
// not a map plus a listing (a map costs about twice its entries, and
// the listing another 40 bytes a child); names are substrings of the TOC's
// names where those are clean, not copies.
type entry struct {
	ino     uint64
	mode    uint32 // S_IFMT bits | permission bits (incl. setuid, setgid, sticky)
	uid     uint32
	gid     uint32
	rdev    uint32
	nlink   uint32
	subdirs uint32 // directories
	size    int64
	mtime   time.Time
	link    string // symlink target
	xattrs  map[string][]byte

	// Directories: children sorted by name, made by finish.
	kids []child

	// Regular files: the TOC entry holding the data.
	file     int // index in Ztoc.Files, -1 if none
	verified atomic.Bool
	failed   atomic.Bool // an error has been logged for this entry
	verifyMu sync.Mutex
	opaque   bool
}

// child is a name in a directory (hard links: several names, one entry).
type child struct {
	name string
	e    *entry
}

func (e *entry) isDir() bool { return e.mode&syscall.S_IFMT == syscall.S_IFDIR }

// child returns the entry named name in directory e, or nil.
func (e *entry) child(name string) *entry {
	i := sort.Search(len(e.kids), func(i int) bool { return e.kids[i].name >= name })
	if i < len(e.kids) && e.kids[i].name == name {
		return e.kids[i].e
	}
	return nil
}

// listing returns directory e's entries, sorted by name, for Readdir.
func (e *entry) listing() []fuse.DirEntry {
	l := make([]fuse.DirEntry, len(e.kids))
	for i, k := range e.kids {
		l[i] = fuse.DirEntry{Name: k.name, Mode: k.e.mode & syscall.S_IFMT, Ino: k.e.ino}
	}
	return l
}

type whiteout struct {
	parent *entry
	name   string
	file   int
}

type builder struct {
	z       *ztoc.Ztoc
	nextIno uint64
	root    *entry
	wh      []whiteout
	skipped []string
	// children of each directory while the tree is built; finish turns
	// them into the directories' sorted kids.
	children map[*entry]map[string]*entry
}

func (b *builder) newEntry(mode uint32) *entry {
	b.nextIno++
	e := &entry{ino: b.nextIno, mode: mode, file: -1}
	if e.isDir() {
		if b.children == nil {
			b.children = make(map[*entry]map[string]*entry)
		}
		b.children[e] = make(map[string]*entry)
	}
	return e
}

// cleanName turns a raw tar name into a slash-separated path relative to
// the root: "./a/b/" and "/a/b" give "a/b"; the root is ".". When the
// cleaned name ends the raw one (the common case: "usr/bin/x",
// "./usr/bin/x", "usr/lib/"), it is a substring of it, so the tree's
// names share the TOC's strings instead of holding copies.
func cleanName(s string) string {
	c := path.Clean("/" + s)
	if c == "/" {
		return "."
	}
	c = c[1:]
	if t := strings.TrimRight(s, "/"); strings.HasSuffix(t, c) {
		return t[len(t)-len(c):]
	}
	return c
}

// buildTree makes the layer's tree from its TOC: implicit parent
// directories are synthesized (0755, root-owned), a later entry of the same
// name replaces an earlier one (a directory replacing a directory keeps
// its children), hard links share their target's entry, whiteouts become
// overlayfs whiteouts (a 0/0 character device) unless the layer also has
// an entry of that name, and .wh..wh..opq makes its directory opaque.
//
// Metadata follows containerd's applier (pkg/archive createTarFile), so the
// lazy tree equals an unpack: a hard link's own header sets the owner,
// permission bits and mtime of the shared inode and adds its xattrs (the
// last header wins); the root's own entry ("./") is ignored; mtimes
// before 1970 or past 2262 are shown as 0; trusted.* xattrs are dropped
// (containerd does not set them from an archive), and so are user.* xattrs
// on anything but regular files and directories (the kernel refuses them,
// and containerd ignores the refusal).
//
// It refuses, with an error naming the entry, what it cannot show as an
// unpack would without reaching outside the layer: a name or hard-link
// target that climbs out of the root with "..", and a hard link whose
// target is not an earlier non-directory entry of this layer (containerd
// links such a name to a lower layer's file, which a layer's own tree
// cannot share). The snapshotter then leaves the layer to containerd.
func buildTree(z *ztoc.Ztoc) (*entry, []string, error) {
	b := &builder{z: z}
	b.root = b.newEntry(syscall.S_IFDIR | 0o755)
	b.root.nlink = 1
	for i := range z.Files {
		if err := b.add(i); err != nil {
			fe := &z.Files[i]
			return nil, nil, fmt.Errorf("toc entry %d (%q): %w", i, clipName(fe.Name), err)
		}
	}
	for _, w := range b.wh {
		if _, ok := b.children[w.parent][w.name]; ok {
			continue
		}
		e := b.newEntry(syscall.S_IFCHR)
		b.setAttr(e, &z.Files[w.file])
		e.mode = syscall.S_IFCHR // no permission bits, as overlayfs and containerd make them
		b.put(w.parent, w.name, e)
	}
	b.finish(b.root)
	return b.root, b.skipped, nil
}

// escapes tells whether the tar name s climbs above the layer's root: its
// ".." elements outnumber the names before them ("../x", "a/../../x",
// "/../x").
func escapes(s string) bool {
	s = path.Clean(strings.TrimLeft(s, "/"))
	return s == ".." || strings.HasPrefix(s, "../")
}

// clipName shortens a name for error messages.
func clipName(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}

// Bounds of containerd's applier (pkg/archive boundTime): mtimes outside
// them are set to the epoch.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(0, 1<<63-1)
)

func boundTime(t time.Time) time.Time {
	if t.Before(minTime) || t.After(maxTime) {
		return minTime
	}
	return t
}

func (b *builder) setAttr(e *entry, fe *ztoc.FileEntry) {
	e.mode = e.mode&syscall.S_IFMT | uint32(fe.Mode)&0o7777
	if e.mode&syscall.S_IFMT == syscall.S_IFLNK {
		// Linux symlinks are always 0777, as overlayfs over an unpacked
		// layer shows them, whatever the tar header says.
		e.mode = syscall.S_IFLNK | 0o777
	}
	e.uid, e.gid = fe.UID, fe.GID
	e.mtime = boundTime(fe.ModTime)
	e.xattrs = nil
	b.addXattrs(e, fe)
}

// addXattrs adds the xattrs of fe to e, as containerd's setxattr calls do:
// trusted.* never ("admin attributes from archive not supported"), user.*
// only on regular files and directories.
func (b *builder) addXattrs(e *entry, fe *ztoc.FileEntry) {
	typ := e.mode & syscall.S_IFMT
	for k, v := range fe.Xattrs() {
		if strings.HasPrefix(k, "trusted.") || strings.HasPrefix(k, "user.") && typ != syscall.S_IFREG && typ != syscall.S_IFDIR {
			continue
		}
		if e.xattrs == nil {
			e.xattrs = make(map[string][]byte)
		}
		e.xattrs[k] = []byte(v)
	}
}

// linkAttr applies a hard link's own header to the shared inode e, as
// containerd's applier does after link(2): Lchown, setxattr of the link's
// xattrs, chmod (not on symlinks) and chtimes.
func (b *builder) linkAttr(e *entry, fe *ztoc.FileEntry) {
	e.uid, e.gid = fe.UID, fe.GID
	b.addXattrs(e, fe)
	if e.mode&syscall.S_IFMT != syscall.S_IFLNK {
		e.mode = e.mode&syscall.S_IFMT | uint32(fe.Mode)&0o7777
	}
	e.mtime = boundTime(fe.ModTime)
}

// dir returns the directory at p, creating missing ones.
func (b *builder) dir(p string) *entry {
	d := b.root
	if p == "." || p == "" {
		return d
	}
	for _, name := range strings.Split(p, "/") {
		c := b.children[d][name]
		if c == nil || !c.isDir() {
			c = b.newEntry(syscall.S_IFDIR | 0o755)
			b.put(d, name, c)
		}
		d = c
	}
	return d
}

// lookup returns the entry at p, or nil.
func (b *builder) lookup(p string) *entry {
	d := b.root
	if p == "." {
		return d
	}
	for _, name := range strings.Split(p, "/") {
		if d == nil || !d.isDir() {
			return nil
		}
		d = b.children[d][name]
	}
	return d
}

// put links e into d as name, replacing what was there.
func (b *builder) put(d *entry, name string, e *entry) {
	if old := b.children[d][name]; old != nil {
		old.nlink--
		if old.isDir() {
			d.subdirs--
			b.unlinkTree(old)
		}
	}
	b.children[d][name] = e
	e.nlink++
	if e.isDir() {
		d.subdirs++
	}
}

// unlinkTree drops the names of a replaced directory's subtree from the
// link counts of what they name: a hard-linked file elsewhere keeps only
// its other names, as after containerd's RemoveAll.
func (b *builder) unlinkTree(d *entry) {
	for _, c := range b.children[d] {
		if c.isDir() {
			b.unlinkTree(c)
		} else {
			c.nlink--
		}
	}
}

func (b *builder) add(i int) error {
	fe := &b.z.Files[i]
	if escapes(fe.Name) {
		return fmt.Errorf("name climbs out of the layer's root")
	}
	name := cleanName(fe.Name)
	if name == "." {
		// containerd's applier skips an entry that resolves to the root
		// ("file resolved to root"): the root keeps 0755 root:root.
		return nil
	}
	parentPath, base := path.Split(name)
	parent := b.dir(strings.TrimSuffix(parentPath, "/"))
	if strings.HasPrefix(base, whiteoutPrefix) {
		switch hidden := base[len(whiteoutPrefix):]; {
		case base == whiteoutOpaque:
			parent.opaque = true
		case hidden == "" || hidden == "." || hidden == "..":
			// containerd's applier fails on these too (mknod of the
			// directory itself).
			return fmt.Errorf("whiteout of %q", hidden)
		default:
			b.wh = append(b.wh, whiteout{parent: parent, name: hidden, file: i})
		}
		return nil
	}
	var e *entry
	switch fe.Type {
	case ztoc.TypeHardlink:
		if escapes(fe.Linkname) {
			return fmt.Errorf("hard link target %q climbs out of the layer's root", clipName(fe.Linkname))
		}
		t := b.lookup(cleanName(fe.Linkname))
		if t == nil {
			return fmt.Errorf("hard link target %q is not in this layer", clipName(fe.Linkname))
		}
		if t.isDir() {
			return fmt.Errorf("hard link to directory %q", clipName(fe.Linkname))
		}
		b.put(parent, base, t)
		b.linkAttr(t, fe)
		return nil
	case ztoc.TypeDir:
		if old := b.children[parent][base]; old != nil && old.isDir() {
			// containerd merges a directory's headers: a later one
			// sets owner, mode and mtime, and adds its xattrs to
			// those an earlier one set.
			x := old.xattrs
			b.setAttr(old, fe)
			for k, v := range x {
				if _, ok := old.xattrs[k]; !ok {
					if old.xattrs == nil {
						old.xattrs = make(map[string][]byte, len(x))
					}
					old.xattrs[k] = v
				}
			}
			return nil
		}
		e = b.newEntry(syscall.S_IFDIR)
	case ztoc.TypeReg:
		e = b.newEntry(syscall.S_IFREG)
		e.size = fe.UncompressedSize
		e.file = i
	case ztoc.TypeSymlink:
		e = b.newEntry(syscall.S_IFLNK)
		e.link = fe.Linkname
		e.size = int64(len(fe.Linkname))
	case ztoc.TypeChar, ztoc.TypeBlock:
		m := uint32(syscall.S_IFCHR)
		if fe.Type == ztoc.TypeBlock {
			m = syscall.S_IFBLK
		}
		e = b.newEntry(m)
		e.rdev = mkdev(fe.Devmajor, fe.Devminor)
	case ztoc.TypeFifo:
		e = b.newEntry(syscall.S_IFIFO)
	default:
		b.skipped = append(b.skipped, fe.Name)
		return nil
	}
	b.setAttr(e, fe)
	b.put(parent, base, e)
	return nil
}

// mkdev encodes a device number as Linux's new_encode_dev does (the form
// FUSE's rdev carries).
func mkdev(major, minor int64) uint32 {
	ma, mi := uint32(major), uint32(minor)
	return (mi & 0xff) | (ma&0xfff)<<8 | (mi&^0xff)<<12
}

// finish sets directory link counts and sorted children.
func (b *builder) finish(d *entry) {
	d.nlink = 2 + d.subdirs
	m := b.children[d]
	d.kids = make([]child, 0, len(m))
	for n, c := range m {
		d.kids = append(d.kids, child{name: n, e: c})
	}
	sort.Slice(d.kids, func(i, j int) bool { return d.kids[i].name < d.kids[j].name })
	delete(b.children, d)
	for _, k := range d.kids {
		if k.e.isDir() {
			b.finish(k.e)
		}
	}
}

// headerOffsets returns the offset of each TOC entry's tar header (the
// first of its headers when PAX or GNU long-name headers precede it): a
// header starts at the 512-aligned end of the previous entry's data.
func headerOffsets(files []ztoc.FileEntry) []int64 {
	order := make([]int, len(files))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return files[order[a]].UncompressedOffset < files[order[b]].UncompressedOffset
	})
	offs := make([]int64, len(files))
	var next int64
	for _, i := range order {
		offs[i] = next
		end := files[i].UncompressedOffset + files[i].UncompressedSize
		next = (end + 511) &^ 511
	}
	return offs
}
