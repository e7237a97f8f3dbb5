package ztoc_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/socikit/socikit/ztoc"
)

// memFile is a WindowFile in memory that can be made to fail reads.
type memFile struct {
	b    []byte
	fail bool
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if m.fail {
		return 0, errors.New("injected read error")
	}
	return copy(p, m.b[off:]), nil
}

// TestOffloadWindows: an index whose windows live in a file decompresses
// every span (and runs of spans) to the same bytes as one holding them,
// keeps no Checkpoints blob, and turns a failing window read into an error.
func TestOffloadWindows(t *testing.T) {
	_, dir := sizes()
	tarball := goSrcTar(t, dir)
	var blob bytes.Buffer
	z, err := ztoc.Compress(&blob, bytes.NewReader(tarball), ztoc.WithSpanSize(128<<10), ztoc.WithCompressionLevel(1))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "windows"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, err := ix.OffloadWindows(f)
	if err != nil {
		t.Fatal(err)
	}
	if off.Ztoc().Checkpoints != nil || z.Checkpoints == nil {
		t.Fatal("offloaded index keeps the checkpoint blob, or the original lost it")
	}
	if fi, _ := f.Stat(); fi.Size() != int64(len(ix.Spans()))*ztoc.WindowSize {
		t.Fatalf("window file is %d bytes for %d spans", fi.Size(), len(ix.Spans()))
	}
	spans := ix.Spans()
	if len(spans) < 4 {
		t.Fatalf("only %d spans", len(spans))
	}
	decompress := func(ix *ztoc.Index, first, last ztoc.SpanID) []byte {
		t.Helper()
		c := blob.Bytes()[spans[first].CompressedStart:spans[last].CompressedEnd]
		b, err := ix.Decompress(first, last, c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for id := range spans {
		id := ztoc.SpanID(id)
		if want, got := decompress(ix, id, id), decompress(off, id, id); !bytes.Equal(want, got) {
			t.Fatalf("span %d differs after offload", id)
		}
	}
	last := ztoc.SpanID(len(spans) - 1)
	if !bytes.Equal(decompress(off, 1, last), tarball[spans[1].UncompressedStart:spans[last].UncompressedEnd]) {
		t.Fatal("run of spans differs after offload")
	}
	mf := &memFile{}
	bad, err := ix.OffloadWindows(mf)
	if err != nil {
		t.Fatal(err)
	}
	mf.fail = true
	if _, err := bad.Decompress(2, 2, blob.Bytes()[spans[2].CompressedStart:spans[2].CompressedEnd]); err == nil {
		t.Fatal("decompress with an unreadable window succeeded")
	}
}
