package exporter

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/socikit/socikit/ztoc"
)

func TestScanMatchesZtoc(t *testing.T) {
	b := makeTar(t, sampleEntries())
	l, err := Scan(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	z, err := ztoc.Build(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(z.Files) != len(l.Entries) {
		t.Fatalf("%d entries, zTOC has %d", len(l.Entries), len(z.Files))
	}
	hdrs := z.TarHeaderOffsets()
	for i, e := range l.Entries {
		f := z.Files[i]
		if e.Name != f.Name || e.DataOffset != f.UncompressedOffset || e.HeaderOffset != hdrs[i] {
			t.Errorf("entry %d: %+v, zTOC %s at %d (header %d)", i, e, f.Name, f.UncompressedOffset, hdrs[i])
		}
	}
	if l.TrailerOffset+1024 != z.UncompressedArchiveSize { // + the end-of-archive blocks
		t.Errorf("trailer at %d, zTOC archive size %d", l.TrailerOffset, z.UncompressedArchiveSize)
	}
}

// rawEntries returns each entry's raw bytes (headers and data), in order.
func rawEntries(t *testing.T, b []byte) ([]Entry, [][]byte) {
	t.Helper()
	l, err := Scan(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var raw [][]byte
	for _, e := range l.Entries {
		raw = append(raw, b[e.HeaderOffset:e.End()])
	}
	return l.Entries, raw
}

func TestReorder(t *testing.T) {
	in := makeTar(t, sampleEntries())
	tests := []struct {
		name      string
		first     []string
		wantFront []string // raw names expected at the front, in order
		missing   []string
	}{
		{name: "none", first: nil, wantFront: nil},
		{name: "one file", first: []string{"usr/share/doc"},
			wantFront: []string{"./", "usr/", "usr/share/", "usr/share/doc"}},
		{name: "list order", first: []string{"/lib/b.so", "./bin/sh"},
			wantFront: []string{"./", "lib/", "lib/.wh..wh..opq", "lib/b.so", "bin/", "bin/sh"}},
		{name: "hard link brings target", first: []string{"bin/ln-to-sh"},
			wantFront: []string{"./", "bin/", "bin/sh", "bin/ln-to-sh"}},
		{name: "symlink brings target", first: []string{"lib/link.so"},
			wantFront: []string{"./", "lib/", "lib/.wh..wh..opq", "lib/b.so", "lib/link.so"}},
		{name: "same name and whiteout", first: []string{"etc/conf", "etc/old"},
			wantFront: []string{"./", "etc/", "etc/conf", "etc/conf", "etc/.wh.old", "etc/old"}},
		{name: "directory alone", first: []string{"usr/share"},
			wantFront: []string{"./", "usr/", "usr/share/"}},
		{name: "missing", first: []string{"nope", "bin/big", "also/nope"},
			wantFront: []string{"./", "bin/", "bin/big"}, missing: []string{"nope", "also/nope"}},
		{name: "repeat", first: []string{"bin/big", "bin/big"},
			wantFront: []string{"./", "bin/", "bin/big"}},
	}
	origEntries, origRaw := rawEntries(t, in)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := Reorder(&out, bytes.NewReader(in), int64(len(in)), tt.first)
			var nl *NotInLayerError
			if len(tt.missing) > 0 {
				if !errors.As(err, &nl) || !slices.Equal(nl.Paths, tt.missing) {
					t.Fatalf("err = %v, want NotInLayerError %v", err, tt.missing)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantFront, res.Moved); diff != "" {
				t.Errorf("moved (-want +got):\n%s", diff)
			}
			if out.Len() != len(in) {
				t.Errorf("output %d bytes, input %d", out.Len(), len(in))
			}
			entries, raw := rawEntries(t, out.Bytes())
			if diff := cmp.Diff(res.Layer.Entries, entries); diff != "" {
				t.Errorf("result layer differs from a scan of the output:\n%s", diff)
			}
			// The front is as wanted; every entry is kept byte for byte,
			// the rest in the original order.
			for i, n := range tt.wantFront {
				if entries[i].Name != n {
					t.Errorf("entry %d = %s, want %s", i, entries[i].Name, n)
				}
			}
			if got, want := sortedRaw(raw), sortedRaw(origRaw); !slices.EqualFunc(got, want, bytes.Equal) {
				t.Error("the entries' bytes differ from the input's")
			}
			var rest, origRest []string
			for _, e := range entries[len(tt.wantFront):] {
				rest = append(rest, e.Name)
			}
			moved := map[int]bool{}
			for _, n := range tt.wantFront {
				for j, e := range origEntries {
					if e.Name == n && !moved[j] {
						moved[j] = true
						break
					}
				}
			}
			for j, e := range origEntries {
				if !moved[j] {
					origRest = append(origRest, e.Name)
				}
			}
			if diff := cmp.Diff(origRest, rest); diff != "" {
				t.Errorf("rest (-want +got):\n%s", diff)
			}
			checkTarValid(t, out.Bytes())
		})
	}
}

func sortedRaw(r [][]byte) [][]byte {
	r = slices.Clone(r)
	slices.SortFunc(r, bytes.Compare)
	return r
}

// checkTarValid reads b with archive/tar and checks that every directory
// comes before its children and every hard link after its target.
func checkTarValid(t *testing.T, b []byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	seen := map[string]bool{"": true}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			t.Fatal(err)
		}
		n := cleanName(h.Name)
		for _, d := range parentDirs(n) {
			if !seen[d] {
				t.Errorf("%s comes before its directory %s", h.Name, d)
			}
		}
		if h.Typeflag == tar.TypeLink && !seen[cleanName(h.Linkname)] {
			t.Errorf("hard link %s comes before its target %s", h.Name, h.Linkname)
		}
		seen[n] = true
	}
}

func TestReorderDeterministic(t *testing.T) {
	in := makeTar(t, manyEntries(t, 300))
	first := []string{"d/f7", "d/f250", "d/f3", "d/f100"}
	var a, b bytes.Buffer
	if _, err := Reorder(&a, bytes.NewReader(in), int64(len(in)), first); err != nil {
		t.Fatal(err)
	}
	if _, err := Reorder(&b, bytes.NewReader(in), int64(len(in)), first); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two runs differ")
	}
}

func TestReorderGlobalHeader(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "a", Typeflag: tar.TypeReg, Size: 0},
		{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "x"}},
		{Name: "b", Typeflag: tar.TypeReg, Size: 0},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	if _, err := Reorder(io.Discard, bytes.NewReader(buf.Bytes()), int64(buf.Len()), []string{"b"}); err == nil {
		t.Error("a global header in the middle: no error")
	}
}
