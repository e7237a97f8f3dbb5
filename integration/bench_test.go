//go:build integration

package interop

import (
	"bytes"
	"io"
	"os"
	"testing"

	uz "github.com/awslabs/soci-snapshotter/ztoc"
	kgzip "github.com/klauspost/compress/gzip"

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
