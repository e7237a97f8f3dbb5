package ztoc_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/ztoc"
)

// rangeSource serves a blob to ReadLazy and LazyWindows, counting calls
// and bytes.
type rangeSource struct {
	blob  []byte
	mu    sync.Mutex
	calls int
	bytes int64
}

func (s *rangeSource) ReadRanges(_ context.Context, rs []ztoc.ByteRange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	for _, r := range rs {
		if r.Off < 0 || r.Off+int64(len(r.Buf)) > int64(len(s.blob)) {
			return fmt.Errorf("range %d+%d outside %d bytes", r.Off, len(r.Buf), len(s.blob))
		}
		s.bytes += int64(copy(r.Buf, s.blob[r.Off:]))
	}
	return nil
}

// tee writes what src reads into store, as the daemon keeps a lazily
// read zTOC's parts.
type tee struct {
	src   ztoc.RangeSource
	store ztoc.WindowFile
}

func (t tee) ReadRanges(ctx context.Context, rs []ztoc.ByteRange) error {
	if err := t.src.ReadRanges(ctx, rs); err != nil {
		return err
	}
	for _, r := range rs {
		if _, err := t.store.WriteAt(r.Buf, r.Off); err != nil {
			return err
		}
	}
	return nil
}

// lazyCase is a layer and its zTOC blob.
type lazyCase struct {
	tarball, blob, zb []byte
	z                 *ztoc.Ztoc
}

// compressedCase: spans made independent by Compress.
func compressedCase(t *testing.T, tarball []byte, span int64) lazyCase {
	t.Helper()
	var blob bytes.Buffer
	z, err := ztoc.Compress(&blob, bytes.NewReader(tarball), ztoc.WithSpanSize(span), ztoc.WithCompressionLevel(1))
	if err != nil {
		t.Fatal(err)
	}
	return lazyCase{tarball: tarball, blob: blob.Bytes(), zb: mustMarshal(t, z), z: z}
}

// builtCase: an existing gzip layer indexed as upstream indexes it: spans
// resume inside one deflate stream and need their windows. With v1 the
// checkpoint blob is written in upstream's version 1 layout.
func builtCase(t *testing.T, tarball []byte, span int64, v1 bool) lazyCase {
	t.Helper()
	blob := gzipStd(t, tarball, 6)
	z, err := ztoc.Build(bytes.NewReader(blob), ztoc.WithSpanSize(span), ztoc.WithBuildToolIdentifier(ztoc.UpstreamBuildTool))
	if err != nil {
		t.Fatal(err)
	}
	if v1 {
		const hdr, rec = 12, 8 + 8 + 1 + ztoc.WindowSize
		if in := int64(binary.LittleEndian.Uint64(z.Checkpoints[hdr:])); in != 10 {
			t.Fatalf("checkpoint 0 at %d, v1 implies 10", in)
		}
		z.Checkpoints = append(z.Checkpoints[:hdr:hdr], z.Checkpoints[hdr+rec:]...)
	}
	return lazyCase{tarball: tarball, blob: blob, zb: mustMarshal(t, z), z: z}
}

// readFiles reads every regular file of the tar through ix and compares it
// with the tar's own bytes.
func readFiles(t *testing.T, ix *ztoc.Index, c lazyCase) int {
	t.Helper()
	r := ix.Reader(bytes.NewReader(c.blob))
	tr := tar.NewReader(bytes.NewReader(c.tarball))
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		want, _ := io.ReadAll(tr)
		e := ix.Ztoc().Lookup(h.Name)
		if e == nil {
			t.Fatalf("%s not in the zTOC", h.Name)
		}
		got, err := r.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes differ from the tar's %d", h.Name, len(got), len(want))
		}
		n++
	}
	return n
}

// TestReadLazy: a zTOC read lazily (socikit-built, upstream-built with v2
// and v1 checkpoint blobs) decodes to what Unmarshal gives, fetches a
// small part of the blob in two reads, serves every file byte-identical,
// fetches windows only for spans that need one (none for Compress's), and
// Complete checks the whole blob and leaves it in the store.
func TestReadLazy(t *testing.T) {
	_, dir := sizes()
	tarball := goSrcTar(t, dir)
	cases := map[string]lazyCase{
		"compress":   compressedCase(t, tarball, 32<<10),
		"upstream":   builtCase(t, tarball, 32<<10, false),
		"upstreamV1": builtCase(t, tarball, 32<<10, true),
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := digest.FromBytes(c.zb)
			src := &rangeSource{blob: c.zb}
			store := &memFile{b: make([]byte, len(c.zb))}
			l, err := ztoc.ReadLazy(context.Background(), tee{src, store}, d, int64(len(c.zb)))
			if err != nil {
				t.Fatal(err)
			}
			if !l.IsLazy() {
				t.Fatalf("%d-byte zTOC read whole", len(c.zb))
			}
			want, err := ztoc.Unmarshal(c.zb)
			if err != nil {
				t.Fatal(err)
			}
			got := *l.Ztoc
			want.Checkpoints = nil
			if !reflect.DeepEqual(&got, want) {
				t.Error("lazily read zTOC differs from Unmarshal's")
			}
			spans := int64(want.MaxSpanID) + 1
			t.Logf("%d spans, zTOC %d bytes, read lazily %d bytes in %d reads (%.1f%%)", spans, len(c.zb), l.Fetched, l.Reads,
				100*float64(l.Fetched)/float64(len(c.zb)))
			if l.Reads != 2 || src.calls != 2 || l.Fetched != src.bytes {
				t.Errorf("%d reads (%d calls, %d bytes), want 2", l.Reads, src.calls, src.bytes)
			}
			if l.Fetched > int64(len(c.zb))-spans/2*ztoc.WindowSize {
				t.Errorf("fetched %d of %d bytes: windows read", l.Fetched, len(c.zb))
			}
			w := l.Windows(context.Background(), src, store)
			ix, err := l.NewIndex(w)
			if err != nil {
				t.Fatal(err)
			}
			full, err := ztoc.NewIndex(c.z)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ix.Spans(), full.Spans()) {
				t.Fatal("spans differ from NewIndex's")
			}
			n := readFiles(t, ix, c)
			t.Logf("%d files read, %d window bytes fetched", n, w.Fetched())
			switch name {
			case "compress":
				if w.Fetched() != 0 {
					t.Errorf("fetched %d window bytes for independent spans", w.Fetched())
				}
			default:
				if w.Fetched() == 0 {
					t.Error("no window fetched for dependent spans")
				}
			}
			if err := w.Complete(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !w.Verified() || !bytes.Equal(store.b, c.zb) {
				t.Error("store does not hold the verified zTOC")
			}
			readFiles(t, ix, c)
		})
	}
}

// TestReadLazyTampered: bytes served for a lazily read zTOC that are not
// the zTOC's (here a file name of the TOC) are found by Complete, after
// which the index decompresses nothing; a tampered window too. A zTOC read
// whole is checked at once.
func TestReadLazyTampered(t *testing.T) {
	_, dir := sizes()
	c := builtCase(t, goSrcTar(t, dir), 32<<10, false)
	d := digest.FromBytes(c.zb)
	for _, what := range []string{"toc", "window"} {
		t.Run(what, func(t *testing.T) {
			bad := bytes.Clone(c.zb)
			switch what {
			case "toc":
				i := bytes.LastIndex(bad, []byte(c.z.Files[len(c.z.Files)-1].Name))
				bad[i] ^= 1
			case "window":
				l, err := ztoc.ReadLazy(context.Background(), &rangeSource{blob: c.zb}, d, int64(len(c.zb)))
				if err != nil {
					t.Fatal(err)
				}
				off, ok := l.WindowOffset(5)
				if !ok {
					t.Fatal("no window 5")
				}
				bad[off+100] ^= 0xff
			}
			src := &rangeSource{blob: bad}
			store := &memFile{b: make([]byte, len(bad))}
			l, err := ztoc.ReadLazy(context.Background(), tee{src, store}, d, int64(len(bad)))
			if err != nil {
				t.Fatal(err)
			}
			w := l.Windows(context.Background(), src, store)
			ix, err := l.NewIndex(w)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Complete(context.Background()); err == nil {
				t.Fatal("Complete accepted a tampered zTOC")
			}
			s := ix.Spans()[1]
			if _, err := ix.Decompress(1, 1, c.blob[s.CompressedStart:s.CompressedEnd]); err == nil {
				t.Error("decompression after a failed Complete")
			}
		})
	}
	t.Run("small", func(t *testing.T) {
		small := compressedCase(t, goSrcTar(t, "encoding/hex"), 1<<20)
		src := &rangeSource{blob: bytes.Clone(small.zb)}
		l, err := ztoc.ReadLazy(context.Background(), src, digest.FromBytes(small.zb), int64(len(small.zb)))
		if err != nil || l.IsLazy() || l.Reads != 1 {
			t.Fatalf("small zTOC: lazy %v, %d reads, %v", l != nil && l.IsLazy(), src.calls, err)
		}
		src.blob[len(src.blob)-3] ^= 1
		if _, err := ztoc.ReadLazy(context.Background(), src, digest.FromBytes(small.zb), int64(len(small.zb))); err == nil {
			t.Error("a tampered small zTOC read whole was accepted")
		}
	})
}

// TestLazyFigures prints what a lazy read of real layers' zTOCs costs
// before the mount (docs/performance.md): SOCIKIT_LAZY_TARS lists tar
// files (one per layer), each compressed by Compress (1 MiB and 4 MiB
// spans) and indexed as upstream does (gzip -6, Build, 4 MiB spans).
func TestLazyFigures(t *testing.T) {
	tars := os.Getenv("SOCIKIT_LAZY_TARS")
	if tars == "" {
		t.Skip("SOCIKIT_LAZY_TARS not set")
	}
	type sum struct{ layers, ztocs, lazy, gz int64 }
	sums := map[string]*sum{}
	var names []string
	for _, p := range strings.Split(tars, ",") {
		tarball, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []struct {
			name string
			make func() (blob []byte, z *ztoc.Ztoc, err error)
		}{
			{"compress-1MiB", func() ([]byte, *ztoc.Ztoc, error) {
				var b bytes.Buffer
				z, err := ztoc.Compress(&b, bytes.NewReader(tarball), ztoc.WithSpanSize(1<<20))
				return b.Bytes(), z, err
			}},
			{"compress-4MiB", func() ([]byte, *ztoc.Ztoc, error) {
				var b bytes.Buffer
				z, err := ztoc.Compress(&b, bytes.NewReader(tarball), ztoc.WithSpanSize(4<<20))
				return b.Bytes(), z, err
			}},
			{"upstream-4MiB", func() ([]byte, *ztoc.Ztoc, error) {
				blob := gzipStd(t, tarball, 6)
				z, err := ztoc.Build(bytes.NewReader(blob), ztoc.WithSpanSize(4<<20))
				return blob, z, err
			}},
		} {
			blob, z, err := v.make()
			if err != nil {
				t.Fatal(err)
			}
			zb := mustMarshal(t, z)
			src := &rangeSource{blob: zb}
			l, err := ztoc.ReadLazy(context.Background(), src, digest.FromBytes(zb), int64(len(zb)))
			if err != nil {
				t.Fatal(err)
			}
			gz, err := ztoc.EncodeLazy(zb)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %s: layer %d B, %d files, %d spans, zTOC %d B, read before the mount %d B in %d reads (%.1f%% of the zTOC, %.2f%% of the layer), lazy zTOC %d B (%.2f%% of the layer)",
				filepath.Base(p), v.name, len(blob), len(z.Files), z.MaxSpanID+1, len(zb), l.Fetched, l.Reads,
				100*float64(l.Fetched)/float64(len(zb)), 100*float64(l.Fetched)/float64(len(blob)), len(gz), 100*float64(len(gz))/float64(len(blob)))
			s := sums[v.name]
			if s == nil {
				s = &sum{}
				sums[v.name] = s
				names = append(names, v.name)
			}
			s.layers += int64(len(blob))
			s.ztocs += int64(len(zb))
			s.lazy += l.Fetched
			s.gz += int64(len(gz))
		}
	}
	for _, n := range names {
		s := sums[n]
		t.Logf("all layers, %s: layers %d B, zTOCs %d B (%.2f%%), read before the mount %d B (%.2f%% of the layers), lazy zTOCs %d B (%.2f%% of the layers)",
			n, s.layers, s.ztocs, 100*float64(s.ztocs)/float64(s.layers), s.lazy, 100*float64(s.lazy)/float64(s.layers),
			s.gz, 100*float64(s.gz)/float64(s.layers))
	}
}
