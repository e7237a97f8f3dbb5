package ztoc_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"slices"
	"testing"

	"github.com/socikit/socikit/ztoc"
)

// maliciousBase is a real layer (3.3 MB) indexed with 512 KiB spans: the
// zTOC the cases below tamper with, and the blob a reader reads.
func maliciousBase(t *testing.T) (*ztoc.Ztoc, []byte) {
	t.Helper()
	tarball, _ := synthTar(t, 64<<10)
	blob := gzipStd(t, tarball, 6)
	z, err := ztoc.Build(bytes.NewReader(blob), ztoc.WithSpanSize(512<<10))
	if err != nil {
		t.Fatal(err)
	}
	if z.MaxSpanID < 3 {
		t.Fatalf("only %d spans: the cases need several", z.MaxSpanID+1)
	}
	return z, blob
}

// tamper returns a copy of z changed by f, through Marshal and Unmarshal
// when the change survives them (as an index from a registry would).
func tamper(t *testing.T, z *ztoc.Ztoc, f func(z *ztoc.Ztoc)) (*ztoc.Ztoc, error) {
	t.Helper()
	c := *z
	c.Files = slices.Clone(z.Files)
	c.SpanDigests = slices.Clone(z.SpanDigests)
	c.Checkpoints = slices.Clone(z.Checkpoints)
	f(&c)
	b, err := ztoc.Marshal(&c)
	if err != nil {
		return nil, err
	}
	return ztoc.Unmarshal(b)
}

// setCheckpoint rewrites checkpoint i (in, out) of a v2 gzip checkpoint blob.
func setCheckpoint(blob []byte, i int, in, out int64) {
	const header, record = 12, 8 + 8 + 1 + ztoc.WindowSize
	binary.LittleEndian.PutUint64(blob[header+i*record:], uint64(in))
	binary.LittleEndian.PutUint64(blob[header+i*record+8:], uint64(out))
}

func checkpoint(t *testing.T, z *ztoc.Ztoc, i int) ztoc.Checkpoint {
	t.Helper()
	g, err := ztoc.ParseGzipCheckpoints(z.Checkpoints)
	if err != nil {
		t.Fatal(err)
	}
	return g.Points[i]
}

// TestMaliciousZtoc: zTOCs with out-of-range or overlapping offsets, spans
// beyond the blob, huge counts or sizes are refused with an error by
// Unmarshal or NewIndex, before any large allocation; none panics, and no
// read through a refused index happens.
func TestMaliciousZtoc(t *testing.T) {
	base, blob := maliciousBase(t)
	last := len(base.Files) - 1
	cases := map[string]func(z *ztoc.Ztoc){
		"entry past the archive": func(z *ztoc.Ztoc) { z.Files[last].UncompressedOffset = z.UncompressedArchiveSize + 512 },
		"entry size past the archive": func(z *ztoc.Ztoc) {
			z.Files[last].UncompressedSize = z.UncompressedArchiveSize
		},
		"overlapping entries": func(z *ztoc.Ztoc) {
			for i := range z.Files {
				if z.Files[i].UncompressedSize > 0 && i+1 < len(z.Files) {
					z.Files[i].UncompressedSize += 1024
					return
				}
			}
		},
		"negative offset":           func(z *ztoc.Ztoc) { z.Files[1].UncompressedOffset = -1 },
		"huge archive size":         func(z *ztoc.Ztoc) { z.UncompressedArchiveSize = 1 << 50 },
		"huge span count":           func(z *ztoc.Ztoc) { z.MaxSpanID = 1<<31 - 1 },
		"span count off by one":     func(z *ztoc.Ztoc) { z.MaxSpanID-- },
		"compressed size too small": func(z *ztoc.Ztoc) { z.CompressedArchiveSize = checkpoint(t, base, 2).In },
		"checkpoint beyond the blob": func(z *ztoc.Ztoc) {
			c := checkpoint(t, base, int(z.MaxSpanID))
			setCheckpoint(z.Checkpoints, int(z.MaxSpanID), z.CompressedArchiveSize+4096, c.Out)
		},
		"checkpoints out of order": func(z *ztoc.Ztoc) {
			c := checkpoint(t, base, 1)
			setCheckpoint(z.Checkpoints, 2, c.In-1, c.Out+1)
		},
		"span inflating past deflate's ratio": func(z *ztoc.Ztoc) {
			// Every later checkpoint moved 1 TiB out: span 1 would
			// decompress into a 1 TiB buffer.
			for i := 2; i <= int(z.MaxSpanID); i++ {
				c := checkpoint(t, base, i)
				setCheckpoint(z.Checkpoints, i, c.In, c.Out+1<<40)
			}
			z.UncompressedArchiveSize += 1 << 40
		},
		"huge checkpoint count": func(z *ztoc.Ztoc) {
			binary.LittleEndian.PutUint32(z.Checkpoints, 1<<31-1)
		},
		"truncated checkpoints": func(z *ztoc.Ztoc) { z.Checkpoints = z.Checkpoints[:len(z.Checkpoints)-100] },
		"no checkpoints":        func(z *ztoc.Ztoc) { z.Checkpoints = nil },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			var z *ztoc.Ztoc
			var err error
			alloc := allocated(func() {
				z, err = tamper(t, base, f)
				if err == nil {
					_, err = ztoc.NewIndex(z)
				}
			})
			if err == nil {
				t.Fatalf("accepted")
			}
			var ce *ztoc.CorruptError
			if !errors.As(err, &ce) && !errors.Is(err, ztoc.ErrTooLarge) {
				t.Errorf("error %v (%T) is not a *CorruptError", err, err)
			}
			// Marshal, Unmarshal and NewIndex of this ~1 MB zTOC
			// (checkpoints: 32 KiB a span) allocate a few times its size;
			// a count or size taken at its word would be GiBs.
			if limit := uint64(16 * len(mustMarshal(t, base))); alloc > limit {
				t.Errorf("allocated %d bytes before refusing (limit %d)", alloc, limit)
			}
			t.Logf("refused (%d bytes allocated): %v", alloc, err)
		})
	}
	// The untampered zTOC reads every file right: the cases above fail for
	// their change, not for the base.
	r, err := ztoc.NewReader(base, bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	for i := range base.Files {
		if base.Files[i].Type == ztoc.TypeReg {
			if _, err := r.ReadFile(&base.Files[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestMaliciousUncompressedZtoc: an uncompressed-layer zTOC whose archive
// size runs past its spans would make reads slice past the span data.
func TestMaliciousUncompressedZtoc(t *testing.T) {
	tarball, _ := synthTar(t, 300<<10)
	z, err := ztoc.Build(bytes.NewReader(tarball), ztoc.WithSpanSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	if z.Compression != ztoc.Uncompressed {
		t.Fatalf("compression %v", z.Compression)
	}
	if _, err := ztoc.NewIndex(z); err != nil {
		t.Fatalf("base: %v", err)
	}
	bad, err := tamper(t, z, func(z *ztoc.Ztoc) {
		z.UncompressedArchiveSize += 1 << 20
		z.Files[len(z.Files)-1].UncompressedSize += 1 << 20
	})
	if err == nil {
		_, err = ztoc.NewIndex(bad)
	}
	var ce *ztoc.CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *CorruptError", err)
	}
	t.Log(err)
}

// TestMaliciousZtocHugeVector: a TOC vector length or checkpoint count
// patched to 2^31-1 in a small zTOC is refused without allocating for it.
func TestMaliciousZtocHugeVector(t *testing.T) {
	base, _ := maliciousBase(t)
	small := *base
	small.Checkpoints = slices.Clone(base.Checkpoints[:12+8+8+1+ztoc.WindowSize])
	small.MaxSpanID, small.SpanDigests = 0, base.SpanDigests[:1]
	b := mustMarshal(t, &small)
	if _, err := ztoc.Unmarshal(b); err != nil {
		t.Fatalf("base: %v", err)
	}
	// Every 32-bit little-endian value equal to the entry count is a
	// candidate for the TOC vector's length: patch each in turn.
	n := uint32(len(small.Files))
	tried := 0
	for off := 0; off+4 <= len(b); off++ {
		if binary.LittleEndian.Uint32(b[off:]) != n {
			continue
		}
		p := bytes.Clone(b)
		binary.LittleEndian.PutUint32(p[off:], 1<<31-1)
		var err error
		alloc := allocated(func() {
			var z *ztoc.Ztoc
			if z, err = ztoc.Unmarshal(p); err == nil {
				_, err = ztoc.NewIndex(z)
			}
		})
		tried++
		if alloc > uint64(8*len(b)) {
			t.Errorf("offset %d patched: allocated %d bytes for a %d-byte zTOC (err %v)", off, alloc, len(b), err)
		}
	}
	if tried == 0 {
		t.Fatal("no vector length found to patch")
	}
	t.Logf("%d patched lengths, each refused or decoded within 8x the input size", tried)
}

func mustMarshal(t *testing.T, z *ztoc.Ztoc) []byte {
	t.Helper()
	b, err := ztoc.Marshal(z)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// allocated returns the bytes f allocates (runtime.MemStats.TotalAlloc;
// the test's other goroutines are idle meanwhile).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
