package ztoc_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"

	"github.com/socikit/socikit/ztoc"
)

// FuzzBuild feeds arbitrary layer blobs (gzip or tar) to Build. It must
// never panic; when it succeeds, the zTOC must survive the wire format and
// every regular file must read back through the zTOC as archive/tar reads
// it from the decompressed blob.
func FuzzBuild(f *testing.F) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, name := range []string{"a", "dir/", "dir/b"} {
		h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(name) * 100)}
		if name == "dir/" {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		tw.WriteHeader(h)
		tw.Write(bytes.Repeat([]byte(name), 100)[:h.Size])
	}
	tw.Close()
	f.Add(tb.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	f.Add(gz.Bytes())
	f.Add(append(bytes.Clone(gz.Bytes()), gz.Bytes()...))

	f.Fuzz(func(t *testing.T, blob []byte) {
		z, err := ztoc.Build(bytes.NewReader(blob), ztoc.WithSpanSize(ztoc.MinSpanSize))
		if err != nil {
			return
		}
		b, err := ztoc.Marshal(z)
		if err != nil {
			t.Fatalf("marshal a built ztoc: %v", err)
		}
		z2, err := ztoc.Unmarshal(b)
		if err != nil {
			t.Fatalf("unmarshal a built ztoc: %v", err)
		}
		r, err := ztoc.NewReader(z2, bytes.NewReader(blob))
		if err != nil {
			t.Fatalf("index a built ztoc: %v", err)
		}
		var plain io.Reader = bytes.NewReader(blob)
		if z.Compression == ztoc.Gzip {
			zr, err := gzip.NewReader(plain)
			if err != nil {
				t.Fatalf("Build accepted what compress/gzip refuses: %v", err)
			}
			plain = zr
		}
		tr := tar.NewReader(plain)
		for i := 0; ; i++ {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				if i != len(z.Files) {
					t.Fatalf("toc has %d entries, tar %d", len(z.Files), i)
				}
				return
			}
			if err != nil {
				t.Fatalf("Build accepted a tar that archive/tar refuses: %v", err)
			}
			e := &z2.Files[i]
			if e.Name != h.Name {
				t.Fatalf("entry %d: %q, want %q", i, e.Name, h.Name)
			}
			if e.Type != ztoc.TypeReg {
				continue
			}
			want, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("Build accepted a blob whose file %s archive/tar cannot read: %v", h.Name, err)
			}
			got, err := r.ReadFile(e)
			if err != nil {
				t.Fatalf("read %s: %v", e.Name, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %s: content differs", e.Name)
			}
		}
	})
}
