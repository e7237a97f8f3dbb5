package inflate

import (
	"archive/tar"
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
)

func goroot() string {
	if g := os.Getenv("GOROOT"); g != "" {
		return g
	}
	return runtime.GOROOT() //nolint:staticcheck // only used to find test data
}

var (
	goSrcOnce sync.Once
	goSrc     []byte
)

// goSources returns up to ~2 MiB of concatenated Go source files from GOROOT.
func goSources(t testing.TB) []byte {
	goSrcOnce.Do(func() {
		var buf bytes.Buffer
		dir := filepath.Join(goroot(), "src", "compress")
		_ = filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() || !strings.HasSuffix(p, ".go") || buf.Len() > 2<<20 {
				return nil
			}
			b, err := os.ReadFile(p)
			if err == nil {
				buf.Write(b)
			}
			return nil
		})
		goSrc = buf.Bytes()
	})
	if len(goSrc) == 0 {
		t.Skip("no Go sources found in GOROOT")
	}
	return goSrc
}

var srcTarOnce sync.Once
var srcTar []byte

// goSrcTar returns an in-memory tar of $GOROOT/src (capped at maxBytes of file data).
func goSrcTar(tb testing.TB, maxBytes int) []byte {
	srcTarOnce.Do(func() {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		root := filepath.Join(goroot(), "src")
		_ = filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil || !de.Type().IsRegular() || buf.Len() > maxBytes {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			if tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}) != nil {
				return nil
			}
			_, _ = tw.Write(b)
			return nil
		})
		_ = tw.Close()
		srcTar = buf.Bytes()
	})
	if len(srcTar) == 0 {
		tb.Skip("no GOROOT sources")
	}
	return srcTar
}

func randData(seed int64, n int) []byte {
	r := rand.New(rand.NewSource(seed))
	b := make([]byte, n)
	r.Read(b)
	return b
}

// textData produces compressible text-like data.
func textData(seed int64, n int) []byte {
	r := rand.New(rand.NewSource(seed))
	words := []string{"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "deflate",
		"inflate", "window", "boundary", "checkpoint", "\n", "zTOC", "span", "member", "snapshot"}
	var buf bytes.Buffer
	for buf.Len() < n {
		buf.WriteString(words[r.Intn(len(words))])
		if r.Intn(7) == 0 {
			buf.WriteByte(byte(r.Intn(256)))
		}
		buf.WriteByte(' ')
	}
	return buf.Bytes()[:n]
}

// mixedData mixes random, zero and text runs (exercising stored, fixed and
// dynamic blocks and long matches).
func mixedData(seed int64, n int) []byte {
	r := rand.New(rand.NewSource(seed))
	var buf bytes.Buffer
	for buf.Len() < n {
		k := 1 + r.Intn(40000)
		switch r.Intn(4) {
		case 0:
			buf.Write(randData(r.Int63(), k))
		case 1:
			buf.Write(make([]byte, k))
		case 2:
			buf.Write(textData(r.Int63(), k))
		default:
			b := buf.Bytes()
			if len(b) > 0 {
				off := r.Intn(len(b))
				end := min(len(b), off+k)
				buf.Write(bytes.Clone(b[off:end]))
			}
		}
	}
	return buf.Bytes()[:n]
}

func gzStd(tb testing.TB, data []byte, level int) []byte {
	var buf bytes.Buffer
	w, err := stdgzip.NewWriterLevel(&buf, level)
	if err != nil {
		tb.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func gzKlaus(tb testing.TB, data []byte, level int) []byte {
	var buf bytes.Buffer
	w, err := kgzip.NewWriterLevel(&buf, level)
	if err != nil {
		tb.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

// gzFlushes compresses data with sync flushes every flushEvery bytes and
// header fields set.
func gzFlushes(tb testing.TB, data []byte, level, flushEvery int) []byte {
	var buf bytes.Buffer
	w, err := stdgzip.NewWriterLevel(&buf, level)
	if err != nil {
		tb.Fatal(err)
	}
	w.Name = "file.txt"
	w.Comment = "a comment"
	w.Extra = []byte("extra-field-data")
	for len(data) > 0 {
		n := min(flushEvery, len(data))
		w.Write(data[:n])
		w.Flush()
		data = data[n:]
	}
	w.Close()
	return buf.Bytes()
}

type bnd struct {
	Boundary
	win []byte
}

// decodeAll decodes gz with our reader, returning output and boundaries
// (windows are kept for boundaries where keep(i) is true).
func decodeAll(tb testing.TB, gz []byte, keep func(i int) bool) ([]byte, []bnd, error) {
	z := NewGzipReader(bytes.NewReader(gz))
	var bs []bnd
	z.OnBoundary(func(b Boundary) {
		x := bnd{Boundary: b}
		if keep != nil && keep(len(bs)) {
			x.win = make([]byte, windowSize)
			z.Window(x.win)
		}
		bs = append(bs, x)
	})
	out, err := io.ReadAll(z)
	return out, bs, err
}
