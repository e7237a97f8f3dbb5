package fs

import (
	"bytes"
	"strings"
	"testing"

	"github.com/socikit/socikit/ztoc"
)

// fuzzEntries turns fuzz input into TOC entries: one per line, the first
// byte picking the type and mode, then NAME, optionally "\x00LINKNAME".
func fuzzEntries(b []byte) []ztoc.FileEntry {
	types := []ztoc.EntryType{ztoc.TypeReg, ztoc.TypeDir, ztoc.TypeSymlink, ztoc.TypeHardlink, ztoc.TypeChar, ztoc.TypeBlock, ztoc.TypeFifo}
	var files []ztoc.FileEntry
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		name, link, _ := strings.Cut(string(line[1:]), "\x00")
		e := ztoc.FileEntry{Name: name, Linkname: link, Type: types[int(line[0])%len(types)], Mode: int64(line[0]) << 3, UID: uint32(line[0])}
		if line[0]&0x80 != 0 {
			e.PAXRecords = map[string]string{"SCHILY.xattr.user.f": link, "SCHILY.xattr.trusted.f": name}
		}
		files = append(files, e)
	}
	return files
}

// FuzzBuildTree: any TOC builds a tree or is refused with an error, never a
// panic; a built tree has only names that are single path elements (no
// "..", ".", "/" or empty name: nothing outside the layer), directories
// that appear once (a tree, no cycle), link counts that match the names
// pointing at each inode, and sorted listings.
func FuzzBuildTree(f *testing.F) {
	f.Add([]byte("\x00a/b\n\x03c\x00a/b\n\x01d/\n\x02e\x00../../x\n"))
	f.Add([]byte("\x00../x\n"))
	f.Add([]byte("\x00a/../../x\n"))
	f.Add([]byte("\x03y\x00missing\n"))
	f.Add([]byte("\x00x\n\x00.wh.x\n\x00d/.wh..wh..opq\n\x01d\n\x03d/l\x00/x\n"))
	f.Add([]byte("\x81/abs/f\x00v\n\x83link\x00abs/f\n\x82abs/f\x00f\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		files := fuzzEntries(b)
		root, _, err := buildTree(&ztoc.Ztoc{Files: files})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "toc entry ") {
				t.Fatalf("error %q does not name the entry", err)
			}
			return
		}
		names := map[*entry]uint32{}
		seenDir := map[*entry]bool{}
		var walk func(d *entry, depth int)
		walk = func(d *entry, depth int) {
			if seenDir[d] {
				t.Fatalf("directory inode %d reached twice", d.ino)
			}
			seenDir[d] = true
			if depth > len(b)+1 {
				t.Fatalf("tree deeper than its input")
			}
			dirents := d.listing()
			if len(dirents) != len(d.kids) {
				t.Fatalf("%d dirents for %d children", len(dirents), len(d.kids))
			}
			var subdirs uint32
			for i, de := range dirents {
				if de.Name == "" || de.Name == "." || de.Name == ".." || strings.Contains(de.Name, "/") {
					t.Fatalf("name %q in the tree", de.Name)
				}
				if i > 0 && dirents[i-1].Name >= de.Name {
					t.Fatalf("listing not sorted: %q, %q", dirents[i-1].Name, de.Name)
				}
				c := d.child(de.Name)
				if c == nil || c.ino != de.Ino {
					t.Fatalf("dirent %q does not match its child", de.Name)
				}
				if c.isDir() {
					subdirs++
					walk(c, depth+1)
				} else {
					names[c]++
				}
			}
			if d.nlink != 2+subdirs {
				t.Fatalf("directory nlink %d with %d subdirectories", d.nlink, subdirs)
			}
		}
		walk(root, 0)
		for e, n := range names {
			if e.nlink != n {
				t.Fatalf("inode %d: nlink %d, %d names", e.ino, e.nlink, n)
			}
		}
	})
}
