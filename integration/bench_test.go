//go:build integration

package interop

import (
	"bytes"
	"io"
	"os"
	"runtime"
	"testing"

	uz "github.com/awslabs/soci-snapshotter/ztoc"
	kgzip "github.com/klauspost/compress/gzip"
	"golang.org/x/sync/errgroup"

	"github.com/socikit/socikit/ztoc"
)

// The index benchmarks build a zTOC of the GOROOT/src layer (gzip level 6)
// at 4 MiB spans. Upstream builds from a file name, reading the blob three
// times (zlib index, span digests, TOC); socikit reads an *os.File once.
// Bytes are the uncompressed tar's.

func BenchmarkIndexUpstream(b *testing.B) {
	l := gorootLayer(b, "goroot-gzip6")
	b.SetBytes(int64(len(l.tar.raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := uz.NewBuilder(buildTool).BuildZtoc(l.path, span4M, uz.WithCompression("gzip")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIndexSocikit(b *testing.B) {
	l := gorootLayer(b, "goroot-gzip6")
	b.SetBytes(int64(len(l.tar.raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.Open(l.path)
		if err != nil {
			b.Fatal(err)
		}
		_, err = ztoc.Build(f, ztoc.WithSpanSize(span4M), ztoc.WithBuildToolIdentifier(buildTool))
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// The compress benchmarks gzip the GOROOT/src tar at level 6: plain
// klauspost gzip (no flushes, no index) against ztoc.Compress (klauspost
// gzip flushed at span boundaries, plus the zTOC) at 4 MiB spans.

func BenchmarkCompressPlainGzip(b *testing.B) {
	raw := gorootLayer(b, "goroot-uncompressed").tar.raw
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		zw, err := kgzip.NewWriterLevel(io.Discard, 6)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := zw.Write(raw); err != nil {
			b.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompressSocikit(b *testing.B) {
	raw := gorootLayer(b, "goroot-uncompressed").tar.raw
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ztoc.Compress(io.Discard, bytes.NewReader(raw), ztoc.WithSpanSize(span4M), ztoc.WithCompressionLevel(6)); err != nil {
			b.Fatal(err)
		}
	}
}

// The multi-layer benchmarks index the three gzip forms of the GOROOT/src
// layer as one image, as `convert` does: layers in parallel on both sides
// (upstream's index builder starts a goroutine per layer; socikit's convert
// runs GOMAXPROCS jobs). Bytes are the uncompressed tars'.

func multiLayers(b *testing.B) ([]*layer, int64) {
	var ls []*layer
	var n int64
	for _, name := range []string{"goroot-gzip6", "goroot-klauspost6", "goroot-2members"} {
		l := gorootLayer(b, name)
		ls = append(ls, l)
		n += int64(len(l.tar.raw))
	}
	return ls, n
}

func BenchmarkMultiLayerUpstream(b *testing.B) {
	ls, n := multiLayers(b)
	b.SetBytes(n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var g errgroup.Group
		for _, l := range ls {
			g.Go(func() error {
				_, err := uz.NewBuilder(buildTool).BuildZtoc(l.path, span4M, uz.WithCompression("gzip"))
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMultiLayerSocikit(b *testing.B) {
	ls, n := multiLayers(b)
	b.SetBytes(n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var g errgroup.Group
		g.SetLimit(runtime.GOMAXPROCS(0))
		for _, l := range ls {
			g.Go(func() error {
				f, err := os.Open(l.path)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = ztoc.Build(f, ztoc.WithSpanSize(span4M), ztoc.WithBuildToolIdentifier(buildTool))
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}
