package exporter

import (
	"archive/tar"
	"bytes"
	"hash/fnv"
	"math/rand"
	"testing"
	"time"
)

// newRand returns a generator seeded from the test name.
func newRand(t testing.TB) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return rand.New(rand.NewSource(int64(h.Sum64())))
}

// tarEntry is an entry of a test tar.
type tarEntry struct {
	name, link string
	typ        byte
	size       int
	pax        map[string]string
}

// makeTar writes a tar of entries; file contents are random but
// compressible (runs of a small alphabet).
func makeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	r := newRand(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1700000000, 0)
	pool := make([]byte, 1<<20)
	for i := range pool {
		pool[i] = "abcdefgh"[r.Intn(8)]
		if r.Intn(16) == 0 {
			pool[i] = byte(r.Intn(256))
		}
	}
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Mode: 0o644, ModTime: mt, PAXRecords: e.pax, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(e.size)
		}
		if typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			data := make([]byte, 0, e.size)
			for len(data) < e.size {
				off := r.Intn(len(pool) - 4096)
				n := min(e.size-len(data), 256+r.Intn(3840))
				data = append(data, pool[off:off+n]...)
			}
			if _, err := tw.Write(data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sampleEntries is a layer with directories, small and large files, links,
// whiteouts, an opaque directory and PAX records.
func sampleEntries() []tarEntry {
	return []tarEntry{
		{name: "./", typ: tar.TypeDir},
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/big", size: 700 << 10},
		{name: "bin/sh", size: 40 << 10},
		{name: "bin/ln-to-sh", typ: tar.TypeLink, link: "bin/sh"},
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/.wh.old", size: 0},
		{name: "etc/conf", size: 3000, pax: map[string]string{"SCHILY.xattr.user.x": "1"}},
		{name: "etc/old", size: 100},
		{name: "lib/", typ: tar.TypeDir},
		{name: "lib/.wh..wh..opq", size: 0},
		{name: "lib/a.so", size: 200 << 10},
		{name: "lib/b.so", size: 90 << 10},
		{name: "lib/link.so", typ: tar.TypeSymlink, link: "b.so"},
		{name: "lib/" + string(bytes.Repeat([]byte("long"), 40)), size: 5000},
		{name: "usr/", typ: tar.TypeDir},
		{name: "usr/share/", typ: tar.TypeDir},
		{name: "usr/share/doc", size: 120 << 10},
		{name: "usr/share/data", size: 2 << 20},
		{name: "etc/conf", size: 10}, // replaces the earlier etc/conf
	}
}

// manyEntries is a layer of n files with sizes drawn from a heavy tail.
func manyEntries(t testing.TB, n int) []tarEntry {
	r := newRand(t)
	out := []tarEntry{{name: "d/", typ: tar.TypeDir}}
	for i := 0; i < n; i++ {
		size := int(r.ExpFloat64() * 20000)
		if r.Intn(50) == 0 {
			size = r.Intn(3 << 19)
		}
		out = append(out, tarEntry{name: "d/f" + itoa(i), size: size})
	}
	return out
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}
