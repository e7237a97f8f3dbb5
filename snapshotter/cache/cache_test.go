package cache

import (
	"bytes"
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
	if c2.Size() != int64(len(data)) {
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
	// A layer in use is never evicted, even over the limit.
	busy.Put(1, make([]byte, 300))
	if _, ok := busy.Has(1); !ok {
		t.Fatal("busy layer evicted")
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
