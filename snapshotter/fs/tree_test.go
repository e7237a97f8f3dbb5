package fs

import (
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/socikit/socikit/ztoc"
)

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func reg(name string) ztoc.FileEntry {
	return ztoc.FileEntry{Name: name, Type: ztoc.TypeReg, Mode: 0o644, ModTime: t0}
}

func dirEntry(name string) ztoc.FileEntry {
	return ztoc.FileEntry{Name: name, Type: ztoc.TypeDir, Mode: 0o755, ModTime: t0}
}

func hardlink(name, target string) ztoc.FileEntry {
	return ztoc.FileEntry{Name: name, Type: ztoc.TypeHardlink, Linkname: target, Mode: 0o644, ModTime: t0}
}

// treePaths lists every path of the tree (directories end in "/").
func treePaths(root *entry) []string {
	var out []string
	var walk func(d *entry, prefix string)
	walk = func(d *entry, prefix string) {
		for _, de := range d.listing() {
			c := d.child(de.Name)
			p := prefix + de.Name
			if c.isDir() {
				out = append(out, p+"/")
				walk(c, p+"/")
			} else {
				out = append(out, p)
			}
		}
	}
	walk(root, "")
	return out
}

// TestBuildTreeRefuses: names and hard links that would reach outside the
// layer, or that the layer's own tree cannot represent as containerd would
// unpack them, are refused with an error naming the entry.
func TestBuildTreeRefuses(t *testing.T) {
	cases := map[string][]ztoc.FileEntry{
		"dotdot":                   {reg("../x")},
		"dotdot inside":            {dirEntry("a/"), reg("a/../../x")},
		"dotdot deep":              {reg("a/b/c/../../../../etc/passwd")},
		"absolute dotdot":          {reg("/../etc/shadow")},
		"only dotdot":              {dirEntry("..")},
		"whiteout with dotdot":     {reg("../.wh.etc")},
		"opaque with dotdot":       {reg("a/../../.wh..wh..opq")},
		"hard link target dotdot":  {reg("x"), hardlink("y", "../../etc/shadow")},
		"hard link target missing": {hardlink("y", "lower/file")},
		"hard link before target":  {hardlink("y", "x"), reg("x")},
		"hard link to a directory": {dirEntry("d/"), hardlink("y", "d")},
		"hard link to the root":    {hardlink("y", "./")},
		"hard link to a whiteout":  {reg(".wh.x"), hardlink("y", ".wh.x")},
		"symlink with dotdot name": {{Name: "../sym", Type: ztoc.TypeSymlink, Linkname: "x"}},
		"whiteout of dotdot":       {reg("a/.wh..."), reg("a/b")},
		"whiteout of dot":          {reg("a/.wh..")},
		"whiteout of nothing":      {reg(".wh.")},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := buildTree(&ztoc.Ztoc{Files: files})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "toc entry") {
				t.Errorf("error %q does not name the entry", err)
			}
			if _, err := New(&ztoc.Ztoc{Files: files}, nil); err == nil {
				t.Error("New accepted it")
			}
			t.Log(err)
		})
	}
}

// TestBuildTreeAccepts: odd names that containerd's applier maps into the
// layer's root (absolute names, "." and ".." that stay inside, repeated
// slashes) land where containerd puts them, and a later entry of the same
// name replaces an earlier one.
func TestBuildTreeAccepts(t *testing.T) {
	root, skipped, err := buildTree(&ztoc.Ztoc{Files: []ztoc.FileEntry{
		reg("/etc/abs"),
		reg("./a/./b/../c"),
		reg("d//e///f"),
		reg("a/x/.."), // a/x/.. is a: the file replaces the directory a
		reg("dup"),
		{Name: "dup", Type: ztoc.TypeSymlink, Linkname: "/etc/abs"},
		reg("g/h"),
		hardlink("/g/link", "/g/h"),
		hardlink("g/link2", "./g//h"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 0 {
		t.Errorf("skipped %q", skipped)
	}
	got := strings.Join(treePaths(root), " ")
	want := "a d/ d/e/ d/e/f dup etc/ etc/abs g/ g/h g/link g/link2"
	if got != want {
		t.Errorf("tree\n got %s\nwant %s", got, want)
	}
	g := root.child("g")
	if h := g.child("h"); h != g.child("link") || h != g.child("link2") || h.nlink != 3 {
		t.Errorf("hard links do not share g/h's inode (nlink %d)", h.nlink)
	}
	if d := root.child("dup"); d.mode&syscall.S_IFMT != syscall.S_IFLNK {
		t.Errorf("dup: mode %o, want the later symlink", d.mode)
	}
}

// TestBuildTreeMetadata: the attributes an unpack by containerd's applier
// gives, for the cases where it does not simply copy the header.
func TestBuildTreeMetadata(t *testing.T) {
	link := hardlink("b/link", "a/file")
	link.Mode, link.UID, link.GID = 0o4750, 7, 8
	link.ModTime = t0.Add(time.Hour)
	link.PAXRecords = map[string]string{"SCHILY.xattr.user.link": "from the link header", "SCHILY.xattr.user.both": "link"}
	file := reg("a/file")
	file.PAXRecords = map[string]string{"SCHILY.xattr.user.file": "from the file", "SCHILY.xattr.user.both": "file"}
	sym := ztoc.FileEntry{Name: "sym", Type: ztoc.TypeSymlink, Linkname: "a/file", Mode: 0o644, ModTime: t0,
		PAXRecords: map[string]string{"SCHILY.xattr.user.x": "dropped", "SCHILY.xattr.trusted.x": "dropped"}}
	symLink := hardlink("symlink2", "sym")
	symLink.Mode, symLink.UID = 0o600, 9
	fifo := ztoc.FileEntry{Name: "fifo", Type: ztoc.TypeFifo, Mode: 0o644, ModTime: t0,
		PAXRecords: map[string]string{"SCHILY.xattr.user.x": "dropped"}}
	capFile := reg("cap")
	capFile.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}
	old := reg("old")
	old.ModTime = time.Date(1960, 1, 1, 0, 0, 0, 5, time.UTC)
	future := reg("future")
	future.ModTime = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	half := reg("half")
	half.ModTime = time.Unix(0, 500000000)
	d1, d2 := dirEntry("d/"), dirEntry("d/")
	d1.PAXRecords = map[string]string{"SCHILY.xattr.user.first": "1", "SCHILY.xattr.user.both": "1"}
	d2.Mode, d2.PAXRecords = 0o700, map[string]string{"SCHILY.xattr.user.both": "2"}
	z := &ztoc.Ztoc{Files: []ztoc.FileEntry{file, link, sym, symLink, fifo, capFile, old, future, half, d1, d2}}
	f, err := New(z, nil)
	if err != nil {
		t.Fatal(err)
	}
	root := f.root
	a := root.child("a").child("file")
	if a != root.child("b").child("link") {
		t.Fatal("b/link does not share a/file's inode")
	}
	if a.mode != syscall.S_IFREG|0o4750 || a.uid != 7 || a.gid != 8 || !a.mtime.Equal(link.ModTime) {
		t.Errorf("a/file: mode %o owner %d:%d mtime %v, want the link header's", a.mode, a.uid, a.gid, a.mtime)
	}
	wantX := map[string]string{"user.file": "from the file", "user.link": "from the link header", "user.both": "link"}
	if len(a.xattrs) != len(wantX) {
		t.Errorf("a/file xattrs %q, want %q", a.xattrs, wantX)
	}
	for k, v := range wantX {
		if string(a.xattrs[k]) != v {
			t.Errorf("a/file xattr %s = %q, want %q", k, a.xattrs[k], v)
		}
	}
	s := root.child("sym")
	if s.mode != syscall.S_IFLNK|0o777 || s.uid != 9 {
		t.Errorf("sym: mode %o uid %d, want 0777 (chmod skips symlinks) and the link header's owner", s.mode, s.uid)
	}
	if len(s.xattrs) != 0 {
		t.Errorf("sym xattrs %q: user.* is for files and directories only, trusted.* never set", s.xattrs)
	}
	if x := root.child("fifo").xattrs; len(x) != 0 {
		t.Errorf("fifo xattrs %q", x)
	}
	if c := root.child("cap").xattrs["security.capability"]; len(c) != 20 {
		t.Errorf("security.capability %q", c)
	}
	if d := root.child("d"); d.mode != syscall.S_IFDIR|0o700 || string(d.xattrs["user.first"]) != "1" || string(d.xattrs["user.both"]) != "2" {
		t.Errorf("d: mode %o xattrs %q: a directory's later header sets the mode and adds its xattrs", d.mode, d.xattrs)
	}
	var out fuse.AttrOut
	for name, want := range map[string][2]uint64{"old": {0, 0}, "future": {0, 0}, "half": {0, 500000000}} {
		f.fillAttr(root.child(name), &out.Attr)
		if out.Mtime != want[0] || uint64(out.Mtimensec) != want[1] {
			t.Errorf("%s: mtime %d.%09d, want %d.%09d (containerd's bounds)", name, out.Mtime, out.Mtimensec, want[0], want[1])
		}
	}
}

// TestBuildTreeDeepAndWide: a zTOC of many entries, deep paths and long
// names builds in memory proportional to its size.
func TestBuildTreeDeepAndWide(t *testing.T) {
	var files []ztoc.FileEntry
	deep := strings.Repeat("d/", 2000) + "f"
	files = append(files, reg(deep))
	for i := range 20000 {
		files = append(files, reg("w/"+strings.Repeat("n", 200)+string(rune('a'+i%26))+strings.Repeat("x", i%7)+"/"+strconv.Itoa(i)))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	root, _, err := buildTree(&ztoc.Ztoc{Files: files})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	// ~22,000 entries: a few hundred bytes each, plus the names.
	if perEntry := alloc / uint64(len(files)+2000); perEntry > 2048 {
		t.Errorf("%d bytes allocated per entry", perEntry)
	}
	d := root
	for range 2000 {
		d = d.child("d")
	}
	if d.child("f") == nil {
		t.Error("deep file missing")
	}
	t.Logf("%d entries: %d bytes allocated", len(files)+2000, alloc)
}
