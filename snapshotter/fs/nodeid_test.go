package fs

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
)

// TestNodeIDsStable: the FUSE node id of every entry is its inode number,
// whatever order the kernel looks entries up in, so a second server of the
// same layer (a restarted daemon serving the kernel's existing mount) gives
// the ids the kernel already holds.
func TestNodeIDsStable(t *testing.T) {
	entries := fstest.Tricky(t.Name(), 100<<10)
	z, tb := build(t, entries)
	var paths []string
	for p := range fstest.Final(entries) {
		if p != "." {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	ids := func(order []string) map[string]uint64 {
		f, err := New(z, &memReader{b: tb})
		if err != nil {
			t.Fatal(err)
		}
		raw := fusefs.NewNodeFS(f.Root(), f.Options())
		got := map[string]uint64{}
		for _, p := range order {
			parent := uint64(fuse.FUSE_ROOT_ID)
			for i, name := range strings.Split(p, "/") {
				var out fuse.EntryOut
				if st := raw.Lookup(nil, &fuse.InHeader{NodeId: parent}, name, &out); !st.Ok() {
					t.Fatalf("lookup %s in %s: %v", name, p, st)
				}
				if out.NodeId != out.Attr.Ino {
					t.Fatalf("%s: node id %d, inode %d", p, out.NodeId, out.Attr.Ino)
				}
				parent = out.NodeId
				got[strings.Join(strings.Split(p, "/")[:i+1], "/")] = out.NodeId
			}
		}
		return got
	}
	forward := ids(paths)
	reversed := slices.Clone(paths)
	slices.Reverse(reversed)
	backward := ids(reversed)
	if len(forward) < 10 {
		t.Fatalf("only %d entries looked up", len(forward))
	}
	if diff := cmp.Diff(forward, backward); diff != "" {
		t.Errorf("node ids depend on the lookup order (-sorted +reversed):\n%s", diff)
	}
}
