package cache

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func dg(s string) digest.Digest { return digest.FromString(s) }

func TestPutReadPersist(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Acquire(dg("a"))
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789"), 1000)
	if err := l.Put(3, data); err != nil {
		t.Fatal(err)
	}
	if n, ok := l.Has(3); !ok || n != int64(len(data)) {
		t.Fatalf("Has(3) = %d, %v", n, ok)
	}
	if _, ok := l.Has(4); ok {
		t.Fatal("Has(4) true")
	}
	p := make([]byte, 20)
	if n, err := l.ReadAt(3, p, 5); n != 20 || err != nil || string(p) != "56789012345678901234" {
		t.Fatalf("ReadAt = %d %v %q", n, err, p)
	}
	if n, err := l.ReadAt(3, p, int64(len(data))-5); n != 5 || err != io.EOF {
		t.Fatalf("ReadAt at end = %d %v", n, err)
	}
	if _, err := l.ReadAt(4, p, 0); !os.IsNotExist(err) && err == nil {
		t.Fatalf("ReadAt missing span: %v", err)
	}
	l.Release()
	if _, err := l.ReadAt(3, p, 0); err != ErrReleased {
		t.Fatalf("read after release: %v", err)
	}
	// Leftover temporary files are removed; spans survive a restart.
	os.WriteFile(filepath.Join(dir, "sha256", dg("a").Encoded(), "9.123"+tmpSuffix), []byte("x"), 0o600)
	c2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Size() != int64(len(data))+trailerSize {
		t.Fatalf("size after reopen %d", c2.Size())
	}
	l2, _ := c2.Acquire(dg("a"))
	defer l2.Release()
	if _, ok := l2.Has(3); !ok {
		t.Fatal("span lost across restart")
	}
	if _, ok := l2.Has(9); ok {
		t.Fatal("temporary file counted as a span")
	}
}

func TestEvictUnused(t *testing.T) {
	now := time.Unix(1000, 0)
	c, err := Open(t.TempDir(), WithMaxSize(250), WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	c.opts.now = func() time.Time { now = now.Add(time.Second); return now }
	put := func(name string, n int) *Layer {
		l, err := c.Acquire(dg(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Put(0, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		return l
	}
	old := put("old", 100)
	old.Release()
	newer := put("newer", 100)
	newer.Release()
	busy := put("busy", 100) // 300 > 250: "old" goes
	c.mu.Lock()
	_, hasOld := c.layers[dg("old")]
	_, hasNewer := c.layers[dg("newer")]
	c.mu.Unlock()
	if hasOld || !hasNewer {
		t.Fatalf("after eviction: old %v newer %v", hasOld, hasNewer)
	}
	// In a layer in use, the span just put stays, even over the limit;
	// older unpinned ones go.
	busy.Put(1, make([]byte, 300))
	if _, ok := busy.Has(1); !ok {
		t.Fatal("span just put evicted")
	}
	if _, ok := busy.Has(0); ok {
		t.Fatal("older span of the layer in use kept over the limit")
	}
	if c.Remove(dg("busy")) == nil {
		t.Fatal("Remove of a layer in use succeeded")
	}
	busy.Release()
	if c.Size() > 250 {
		t.Fatalf("size %d over limit after release", c.Size())
	}
}

func TestShared(t *testing.T) {
	c, _ := Open(t.TempDir())
	a, _ := c.Acquire(dg("x"))
	b, _ := c.Acquire(dg("x"))
	a.Put(0, []byte("abc"))
	a.Release()
	p := make([]byte, 3)
	if _, err := b.ReadAt(0, p, 0); err != nil || string(p) != "abc" {
		t.Fatalf("second handle: %v %q", err, p)
	}
	b.Release()
}

func TestContentFiles(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, WithMaxSize(1000), WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Acquire(dg("a"))
	if err != nil {
		t.Fatal(err)
	}
	l.Put(0, []byte("0123456789"))
	l.Put(1, []byte("abcdefghij"))
	if _, err := l.OpenFile(7, 6); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenFile before PutFile: %v", err)
	}
	// A part outside the cached spans stores nothing.
	if err := l.PutFile(7, []Extent{{Span: 1, Off: 5, Len: 6}}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("PutFile past a span: %v", err)
	}
	if err := l.PutFile(7, []Extent{{Span: 2, Off: 0, Len: 1}}); err == nil {
		t.Fatal("PutFile of a missing span succeeded")
	}
	if err := l.PutFile(7, []Extent{{Span: 0, Off: 7, Len: 3}, {Span: 1, Off: 0, Len: 3}}); err != nil {
		t.Fatal(err)
	}
	f, err := l.OpenFile(7, 6)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "789abc" {
		t.Fatalf("content %q", b)
	}
	if _, err := l.OpenFile(7, 5); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenFile with the wrong size: %v", err)
	}
	if n, sz := l.Files(); n != 1 || sz != 6 {
		t.Fatalf("Files() = %d %d", n, sz)
	}
	if n, sz := l.Cached(); n != 2 || sz != 20 {
		t.Fatalf("Cached() = %d %d", n, sz)
	}
	if c.Size() != 26+2*trailerSize {
		t.Fatalf("size %d, want spans and content files", c.Size())
	}
	// Replacing keeps the accounting right.
	if err := l.PutFile(7, []Extent{{Span: 0, Off: 7, Len: 3}, {Span: 1, Off: 0, Len: 3}}); err != nil || c.Size() != 26+2*trailerSize {
		t.Fatalf("replace: %v, size %d", err, c.Size())
	}
	l.Release()

	// Content files last one process: a reopened cache removes them.
	fdir := filepath.Join(dir, "sha256", dg("a").Encoded(), filesDir)
	os.WriteFile(filepath.Join(fdir, "9.123"+tmpSuffix), []byte("x"), 0o600)
	c2, err := Open(dir, WithMaxSize(1000), WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	if c2.Size() != 20+2*trailerSize {
		t.Fatalf("size after reopen %d, want the spans only", c2.Size())
	}
	if _, err := os.Stat(fdir); !os.IsNotExist(err) {
		t.Fatalf("content files left after reopen: %v", err)
	}
	l2, _ := c2.Acquire(dg("a"))
	if _, err := l2.OpenFile(7, 6); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenFile after reopen: %v", err)
	}
	if _, ok := l2.Has(1); !ok {
		t.Fatal("span lost with the content files")
	}
	if err := l2.PutFile(7, []Extent{{Span: 0, Off: 7, Len: 3}}); err != nil {
		t.Fatal(err)
	}
	l2.Release()
	// Content files go with their layer.
	if err := c2.Remove(dg("a")); err != nil || c2.Size() != 0 {
		t.Fatalf("remove: %v, size %d", err, c2.Size())
	}
	if _, err := os.Stat(fdir); !os.IsNotExist(err) {
		t.Fatalf("content files left after remove: %v", err)
	}
}

func TestContentFilesEvict(t *testing.T) {
	c, _ := Open(t.TempDir(), WithMaxSize(250), WithNoSync())
	old, _ := c.Acquire(dg("old"))
	old.Put(0, make([]byte, 60))
	if err := old.PutFile(0, []Extent{{Span: 0, Off: 0, Len: 60}}); err != nil {
		t.Fatal(err)
	}
	old.Release()
	busy, _ := c.Acquire(dg("busy"))
	defer busy.Release()
	busy.Put(0, make([]byte, 130)) // 266 > 250: "old" goes, content file included
	if _, err := os.Stat(filepath.Join(c.Dir(), "sha256", dg("old").Encoded(), filesDir)); !os.IsNotExist(err) {
		t.Fatalf("content files of the evicted layer left: %v", err)
	}
	if c.Size() != 130+trailerSize {
		t.Fatalf("size %d", c.Size())
	}
}
