package ztoc

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"
)

// memSource is a RangeSource over a byte slice.
type memSource []byte

func (m memSource) ReadRanges(_ context.Context, rs []ByteRange) error {
	for _, r := range rs {
		if r.Off < 0 || r.Off+int64(len(r.Buf)) > int64(len(m)) {
			return fmt.Errorf("range %d+%d outside %d bytes", r.Off, len(r.Buf), len(m))
		}
		copy(r.Buf, m[r.Off:])
	}
	return nil
}

// lazySeeds are small zTOCs of several spans: one from Compress, one from
// Build (dependent spans), as v2 and v1 blobs.
func lazySeeds(t testing.TB) [][]byte {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for i := range 4 {
		data := bytes.Repeat([]byte(fmt.Sprintf("file %d ", i)), 2500+i*100)
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d/f%d", i), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	var blob bytes.Buffer
	zc, err := Compress(&blob, bytes.NewReader(tb.Bytes()), WithSpanSize(MinSpanSize), WithCompressionLevel(1))
	if err != nil {
		t.Fatal(err)
	}
	zb, err := Build(bytes.NewReader(blob.Bytes()), WithSpanSize(MinSpanSize))
	if err != nil {
		t.Fatal(err)
	}
	var seeds [][]byte
	for _, z := range []*Ztoc{zc, zb} {
		b, err := Marshal(z)
		if err != nil {
			t.Fatal(err)
		}
		v1 := *z
		v1.Checkpoints = append(z.Checkpoints[:zinfoHeaderSize:zinfoHeaderSize], z.Checkpoints[zinfoHeaderSize+zinfoRecordSize:]...)
		b1, err := Marshal(&v1)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b, b1)
	}
	return seeds
}

// smallHead makes ReadLazy read lazily from any size with a short first
// read (the estimate is often short: the second read is taken too).
func smallHead(t testing.TB) {
	h, m := lazyHeadSize, lazyMinSize
	lazyHeadSize, lazyMinSize = 256, 0
	t.Cleanup(func() { lazyHeadSize, lazyMinSize = h, m })
}

// checkLazy reads b lazily and, when that succeeds, checks the result
// against Unmarshal and NewIndex of the whole: a lazy read accepts only
// what the whole read accepts, and decodes it to the same zTOC and spans.
func checkLazy(t *testing.T, b []byte) (lazy bool) {
	l, err := ReadLazy(context.Background(), memSource(b), digest.FromBytes(b), int64(len(b)))
	if err != nil {
		var ce *CorruptError
		if !errors.As(err, &ce) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("untyped error %v", err)
		}
		return false
	}
	z, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("lazy read accepted what Unmarshal refuses: %v", err)
	}
	if !l.IsLazy() {
		if !reflect.DeepEqual(l.Ztoc, z) {
			t.Fatal("whole read differs from Unmarshal")
		}
		return false
	}
	ix, err := NewIndex(z)
	if err != nil {
		t.Fatalf("lazy read accepted what NewIndex refuses: %v", err)
	}
	lz := *l.Ztoc
	z.Checkpoints = nil
	if !reflect.DeepEqual(&lz, z) {
		t.Fatal("lazy read differs from Unmarshal")
	}
	if !reflect.DeepEqual(l.index.spans, ix.spans) {
		t.Fatal("lazy spans differ from NewIndex's")
	}
	for i, p := range ix.points {
		q := l.index.points[i]
		if p.In != q.In || p.Out != q.Out || p.Bits != q.Bits {
			t.Fatalf("checkpoint %d: %+v, lazily %+v", i, q, p)
		}
		off, ok := l.WindowOffset(SpanID(i))
		if ok != (i > 0 || l.first == 0) {
			t.Fatalf("window %d stored %v", i, ok)
		}
		if ok && !bytes.Equal(b[off:off+WindowSize], p.Window) {
			t.Fatalf("window %d not at %d", i, off)
		}
	}
	return true
}

// TestReadLazyShortHead: with a first read too short for the span
// digests, ReadLazy reads up to the checkpoint blob in a second read.
func TestReadLazyShortHead(t *testing.T) {
	smallHead(t)
	for i, s := range lazySeeds(t) {
		if !checkLazy(t, s) {
			t.Errorf("seed %d not read lazily", i)
		}
	}
}

func FuzzReadLazy(f *testing.F) {
	for _, s := range lazySeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		smallHead(t)
		checkLazy(t, b)
	})
}

// TestReadLazyMutations runs checkLazy over seeded random mutations of the
// seeds, header bytes mostly (where the tables and offsets are): the fuzz
// engine runs few inputs of this size per second.
func TestReadLazyMutations(t *testing.T) {
	smallHead(t)
	seeds := lazySeeds(t)
	r := rand.New(rand.NewPCG(1, 1))
	n := 2000
	if testing.Short() {
		n = 300
	}
	lazy := 0
	for i := range n {
		s := bytes.Clone(seeds[i%len(seeds)])
		for range 1 + r.IntN(4) {
			p := r.IntN(len(s))
			if r.IntN(2) == 0 {
				p = r.IntN(min(len(s), 600))
			}
			s[p] = byte(r.IntN(256))
		}
		if r.IntN(5) == 0 {
			s = s[:r.IntN(len(s))]
		}
		if checkLazy(t, s) {
			lazy++
		}
	}
	if lazy == 0 {
		t.Error("no mutation read lazily")
	}
}
