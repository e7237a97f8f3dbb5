package ztoc_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/ztoc"
)

// TestLazyZtoc: the lazy zTOC of a zTOC (socikit-built, upstream-built v2
// and v1) is deterministic, inflates to the blob with zeroed windows,
// decodes to what Unmarshal gives of the whole blob, and serves every
// file with windows fetched from the zTOC (none for Compress's spans).
func TestLazyZtoc(t *testing.T) {
	_, dir := sizes()
	tarball := goSrcTar(t, dir)
	cases := map[string]lazyCase{
		"compress":   compressedCase(t, tarball, 32<<10),
		"upstream":   builtCase(t, tarball, 32<<10, false),
		"upstreamV1": builtCase(t, tarball, 32<<10, true),
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			gz, err := ztoc.EncodeLazy(c.zb)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ztoc.EncodeLazy(bytes.Clone(c.zb))
			if err != nil || !bytes.Equal(gz, again) {
				t.Fatalf("EncodeLazy not deterministic (err %v)", err)
			}
			buf, err := ztoc.LazyBuffer(c.zb)
			if err != nil {
				t.Fatal(err)
			}
			zr, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				t.Fatal(err)
			}
			var inflated bytes.Buffer
			if _, err := inflated.ReadFrom(zr); err != nil || !bytes.Equal(inflated.Bytes(), buf) {
				t.Fatalf("lazy zTOC does not inflate to the lazy buffer (err %v)", err)
			}
			d, size := digest.FromBytes(c.zb), int64(len(c.zb))
			l, err := ztoc.DecodeLazy(gz, d, size)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ztoc.Unmarshal(c.zb)
			if err != nil {
				t.Fatal(err)
			}
			want.Checkpoints = nil
			if got := *l.Ztoc; !reflect.DeepEqual(&got, want) {
				t.Error("decoded lazy zTOC differs from Unmarshal's")
			}
			if !l.IsLazy() || !l.Checked || l.Fetched != int64(len(gz)) || l.Reads != 1 {
				t.Errorf("lazy %v checked %v fetched %d reads %d", l.IsLazy(), l.Checked, l.Fetched, l.Reads)
			}
			spans := int64(want.MaxSpanID) + 1
			zeros := 0
			for i := range spans {
				if off, ok := l.WindowOffset(ztoc.SpanID(i)); ok {
					if !bytes.Equal(buf[off:off+ztoc.WindowSize], make([]byte, ztoc.WindowSize)) {
						t.Fatalf("window %d not zeroed", i)
					}
					zeros++
				}
			}
			t.Logf("zTOC %d B, %d windows, lazy zTOC %d B (%.2f%%)", size, zeros, len(gz), 100*float64(len(gz))/float64(size))
			src := &rangeSource{blob: c.zb}
			store := &memFile{b: buf}
			w := l.Windows(context.Background(), src, store)
			ix, err := l.NewIndex(w)
			if err != nil {
				t.Fatal(err)
			}
			readFiles(t, ix, c)
			if (name == "compress") != (w.Fetched() == 0) {
				t.Errorf("%d window bytes fetched", w.Fetched())
			}
			if err := w.Complete(context.Background()); err != nil || !bytes.Equal(store.b, c.zb) {
				t.Fatalf("Complete: %v", err)
			}
		})
	}
}

// TestDecodeLazyRefuses: a lazy zTOC that inflates to more or fewer bytes
// than the zTOC, is not gzip, or is not a zTOC is refused.
func TestDecodeLazyRefuses(t *testing.T) {
	_, dir := sizes()
	c := compressedCase(t, goSrcTar(t, dir), 32<<10)
	gz, err := ztoc.EncodeLazy(c.zb)
	if err != nil {
		t.Fatal(err)
	}
	d, size := digest.FromBytes(c.zb), int64(len(c.zb))
	buf, _ := ztoc.LazyBuffer(c.zb)
	gzipOf := func(b []byte) []byte {
		var out bytes.Buffer
		zw := gzip.NewWriter(&out)
		if _, err := zw.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	for name, tc := range map[string]struct {
		gz   []byte
		size int64
	}{
		"larger":   {gzipOf(append(bytes.Clone(buf), 0)), size},
		"smaller":  {gz, size + 1},
		"not gzip": {buf, size},
		"zeros":    {gzipOf(make([]byte, size)), size},
		"cut":      {gz[:len(gz)-4], size},
	} {
		if _, err := ztoc.DecodeLazy(tc.gz, d, tc.size); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := ztoc.EncodeLazy(make([]byte, 100)); !errors.Is(err, ztoc.ErrNotLazy) {
		t.Errorf("EncodeLazy of junk: %v, want ErrNotLazy", err)
	}
}

// FuzzDecodeLazy: DecodeLazy of any bytes errs or decodes, never panics.
func FuzzDecodeLazy(f *testing.F) {
	_, dir := sizes()
	c := compressedCase(&testing.T{}, goSrcTar(&testing.T{}, dir), 32<<10)
	if gz, err := ztoc.EncodeLazy(c.zb); err == nil {
		f.Add(gz, int64(len(c.zb)))
	}
	f.Fuzz(func(t *testing.T, gz []byte, size int64) {
		if size > 4<<20 {
			return
		}
		if l, err := ztoc.DecodeLazy(gz, digest.FromBytes(nil), size); err == nil && l.Ztoc == nil {
			t.Fatal("no zTOC and no error")
		}
	})
}
