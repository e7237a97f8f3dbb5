package inflate

import (
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"sync"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
)

var (
	benchOnce sync.Once
	benchRaw  []byte
	benchGz   []byte
)

// benchInput is a tar of $GOROOT/src (~40 MB), gzip level 6.
func benchInput(b *testing.B) ([]byte, []byte) {
	benchOnce.Do(func() {
		benchRaw = goSrcTar(b, 40<<20)
		benchGz = gzStd(b, benchRaw, 6)
	})
	if len(benchGz) == 0 {
		b.Skip("no input")
	}
	return benchRaw, benchGz
}

func BenchmarkGzipReader(b *testing.B) {
	raw, gz := benchInput(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	z := NewGzipReader(nil)
	for b.Loop() {
		z.Reset(bytes.NewReader(gz))
		n, err := io.Copy(io.Discard, z)
		if err != nil || n != int64(len(raw)) {
			b.Fatal(err, n)
		}
	}
}

func BenchmarkGzipReaderBoundaries(b *testing.B) {
	raw, gz := benchInput(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	z := NewGzipReader(nil)
	win := make([]byte, windowSize)
	var last int64
	z.OnBoundary(func(bd Boundary) {
		if !bd.Final && bd.Out-last > 4<<20 {
			z.Window(win)
			last = bd.Out
		}
	})
	for b.Loop() {
		last = 0
		z.Reset(bytes.NewReader(gz))
		if _, err := io.Copy(io.Discard, z); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStdlibGzip(b *testing.B) {
	raw, gz := benchInput(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		z, err := stdgzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, z); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKlauspostGzip(b *testing.B) {
	raw, gz := benchInput(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		z, err := kgzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, z); err != nil {
			b.Fatal(err)
		}
	}
}
