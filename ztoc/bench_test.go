package ztoc_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"sync"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/socikit/socikit/ztoc"
)

// benchCorpus is a tar of Go's source tree (or of the directory under
// GOROOT/src named by SOCIKIT_BENCH_SRC), built once per run.
var benchCorpusOnce = sync.OnceValues(func() ([]byte, error) {
	return makeGoSrcTar(os.Getenv("SOCIKIT_BENCH_SRC"))
})

func benchCorpus(b *testing.B) []byte {
	t, err := benchCorpusOnce()
	if err != nil {
		b.Fatal(err)
	}
	return t
}

var benchGzipOnce = sync.OnceValue(func() []byte {
	t, _ := benchCorpusOnce()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, 6)
	w.Write(t)
	w.Close()
	return buf.Bytes()
})

func benchGzip(b *testing.B) []byte {
	benchCorpus(b)
	return benchGzipOnce()
}

func benchmarkBuild(b *testing.B, span int64) {
	tarball, blob := benchCorpus(b), benchGzip(b)
	b.SetBytes(int64(len(tarball)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := ztoc.Build(bytes.NewReader(blob), ztoc.WithSpanSize(span)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuild indexes a gzip layer (Go's source tree, stdlib level 6).
func BenchmarkBuild4M(b *testing.B) { benchmarkBuild(b, 4<<20) }
func BenchmarkBuild1M(b *testing.B) { benchmarkBuild(b, 1<<20) }

// BenchmarkGunzipStdlib and BenchmarkGunzipKlauspost are the baselines for
// Build: plain decompression of the same layer.
func BenchmarkGunzipStdlib(b *testing.B) {
	tarball, blob := benchCorpus(b), benchGzip(b)
	b.SetBytes(int64(len(tarball)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, zr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGunzipKlauspost(b *testing.B) {
	tarball, blob := benchCorpus(b), benchGzip(b)
	b.SetBytes(int64(len(tarball)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		zr, err := kgzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, zr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompress is the build-side writer; BenchmarkGzipPlain the same
// tar through klauspost gzip at the same level with no span ends.
func BenchmarkCompress(b *testing.B)     { benchmarkCompress(b) }
func BenchmarkCompress1Job(b *testing.B) { benchmarkCompress(b, ztoc.WithJobs(1)) }

func benchmarkCompress(b *testing.B, opts ...ztoc.Option) {
	tarball := benchCorpus(b)
	b.SetBytes(int64(len(tarball)))
	b.ReportAllocs()
	var n int
	b.ResetTimer()
	for b.Loop() {
		var w countWriter
		if _, err := ztoc.Compress(&w, bytes.NewReader(tarball), opts...); err != nil {
			b.Fatal(err)
		}
		n = int(w)
	}
	b.ReportMetric(float64(n), "blob-bytes")
}

// BenchmarkGzipStdlib is what BuildKit does by default: compress/gzip at
// the default level.
func BenchmarkGzipStdlib(b *testing.B) {
	tarball := benchCorpus(b)
	b.SetBytes(int64(len(tarball)))
	b.ReportAllocs()
	var n int
	b.ResetTimer()
	for b.Loop() {
		var w countWriter
		zw := gzip.NewWriter(&w)
		if _, err := zw.Write(tarball); err != nil {
			b.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			b.Fatal(err)
		}
		n = int(w)
	}
	b.ReportMetric(float64(n), "blob-bytes")
}

func BenchmarkGzipPlain(b *testing.B) {
	tarball := benchCorpus(b)
	b.SetBytes(int64(len(tarball)))
	b.ReportAllocs()
	var n int
	b.ResetTimer()
	for b.Loop() {
		var w countWriter
		zw, _ := kgzip.NewWriterLevel(&w, ztoc.DefaultCompressionLevel)
		if _, err := zw.Write(tarball); err != nil {
			b.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			b.Fatal(err)
		}
		n = int(w)
	}
	b.ReportMetric(float64(n), "blob-bytes")
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// BenchmarkReadFile reads every regular file of the layer through the zTOC
// (span verification and decompression from checkpoints).
func BenchmarkReadFile(b *testing.B) {
	blob := benchGzip(b)
	z, err := ztoc.Build(bytes.NewReader(blob), ztoc.WithSpanSize(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	r, err := ztoc.NewReader(z, bytes.NewReader(blob))
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, e := range z.Files {
		if e.Type == ztoc.TypeReg && e.UncompressedSize > 64<<10 {
			total += e.UncompressedSize
		}
	}
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range z.Files {
			if e := &z.Files[i]; e.Type == ztoc.TypeReg && e.UncompressedSize > 64<<10 {
				if _, err := r.ReadFile(e); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}
