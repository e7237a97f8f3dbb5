package exporter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// failingReaderAt fails reads past off with err (with bulk, only reads
// of more than 4 KiB: the file data, not the headers Scan reads).
type failingReaderAt struct {
	b    []byte
	off  int64
	err  error
	bulk bool
}

func (f *failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.off && (!f.bulk || len(p) > 4096) {
		n := 0
		if off < f.off {
			n = copy(p, f.b[off:f.off])
		}
		return n, f.err
	}
	return copy(p, f.b[off:]), nil
}

// TestBuildLayerReportsReadError checks that a source that fails part way
// through is reported as that failure, not as what the compressor or the
// tar reader made of the bytes that did arrive.
func TestBuildLayerReportsReadError(t *testing.T) {
	t.Parallel()
	in := makeTar(t, manyEntries(t, 40))
	cause := errors.New("registry connection reset")
	for _, cut := range []int64{int64(len(in)) / 3, int64(len(in)) - 1024} {
		t.Run("stream/"+itoa(int(cut)), func(t *testing.T) {
			src := io.MultiReader(bytes.NewReader(in[:cut]), &errReaderOnce{err: cause})
			_, err := BuildLayerStream(context.Background(), io.Discard, src, WithSpanSize(64<<10))
			if !errors.Is(err, cause) {
				t.Fatalf("BuildLayerStream: got %v, want the read error %q", err, cause)
			}
		})
		for _, bulk := range []bool{false, true} {
			if bulk && cut > int64(len(in))/2 {
				continue // the last reads are small
			}
			t.Run("readerat/"+itoa(int(cut))+map[bool]string{true: "/data"}[bulk], func(t *testing.T) {
				src := &failingReaderAt{b: in, off: cut, err: cause, bulk: bulk}
				_, err := BuildLayer(context.Background(), io.Discard, src, int64(len(in)), WithSpanSize(64<<10))
				if !errors.Is(err, cause) {
					t.Fatalf("BuildLayer: got %v, want the read error %q", err, cause)
				}
			})
		}
	}
}

type errReaderOnce struct{ err error }

func (e *errReaderOnce) Read([]byte) (int, error) { return 0, e.err }
