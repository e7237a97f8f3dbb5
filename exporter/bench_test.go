package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"testing"
	"time"
)

// benchTar returns the tar to benchmark: $SOCIKIT_BENCH_TAR if set (a real
// layer, e.g. `tar -cf /tmp/goroot.tar -C $(go env GOROOT) .`), else a
// synthetic layer of many small and a few large files.
func benchTar(b *testing.B) []byte {
	if p := os.Getenv("SOCIKIT_BENCH_TAR"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	return makeTar(b, manyEntries(b, 1500))
}

// benchmarkExport compresses in with build: the exporter's layer pipeline
// or plain gzip.
func benchmarkExport(b *testing.B, in []byte, build func(w io.Writer, in []byte) error) {
	var out countWriter
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out.n = 0
		if err := build(&out, in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(out.n)/float64(len(in)), "ratio")
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func buildLayer(w io.Writer, in []byte) error {
	_, err := BuildLayer(context.Background(), w, bytes.NewReader(in), int64(len(in)))
	return err
}

// plainGzip is what BuildKit's image exporter does: compress/gzip at the
// default level.
func plainGzip(w io.Writer, in []byte) error {
	zw := gzip.NewWriter(w)
	if _, err := zw.Write(in); err != nil {
		return err
	}
	return zw.Close()
}

func BenchmarkBuildLayerAuto(b *testing.B) { benchmarkExport(b, benchTar(b), buildLayer) }
func BenchmarkPlainGzip(b *testing.B)      { benchmarkExport(b, benchTar(b), plainGzip) }

// BenchmarkExportVsGzip runs both on the same tar and reports the time and
// size ratios of BuildLayer (auto spans, no reorder) to plain gzip. Goals:
// time ratio <= 1.05, size ratio <= 1.005.
func BenchmarkExportVsGzip(b *testing.B) {
	in := benchTar(b)
	var tb, tg time.Duration
	var sb, sg countWriter
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sb.n, sg.n = 0, 0
		t0 := time.Now()
		if err := buildLayer(&sb, in); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := plainGzip(&sg, in); err != nil {
			b.Fatal(err)
		}
		tb += t1.Sub(t0)
		tg += time.Since(t1)
	}
	b.ReportMetric(float64(tb)/float64(tg), "time-ratio")
	b.ReportMetric(float64(sb.n)/float64(sg.n), "size-ratio")
}
