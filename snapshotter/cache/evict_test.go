package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// spanBytes is the content of span id of layer name: every span of every
// layer differs, so a read of the wrong file shows.
func spanBytes(name string, id SpanID, n int) []byte {
	unit := []byte(fmt.Sprintf("%s/%04d|", name, id))
	return bytes.Repeat(unit, n/len(unit)+1)[:n]
}

// TestEvictMountedConcurrent reads the spans of three layers in use from
// 8 goroutines, as the fetcher does (pin, put if missing, read, unpin),
// with a size limit of a quarter of the spans, while content files are
// made and read: spans of the layers in use are evicted, every read
// returns the right bytes and none fails, and the cache stays within the
// limit plus the pinned spans and the file just written.
func TestEvictMountedConcurrent(t *testing.T) {
	const (
		spanSize = 4096
		spans    = 32
		readers  = 8
		rounds   = 400
	)
	limit := int64(3 * spans * (spanSize + trailerSize) / 4)
	c, err := Open(t.TempDir(), WithMaxSize(limit), WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c"}
	layers := make([]*Layer, len(names))
	for i, n := range names {
		if layers[i], err = c.Acquire(dg(n)); err != nil {
			t.Fatal(err)
		}
	}
	// Over the limit by at most: two pinned spans per reader, a content
	// file (two spans) being made or just made, and the span just put.
	bound := limit + int64(2*readers+3)*(spanSize+trailerSize)
	var maxSize atomic.Int64
	watch := func() {
		if n := c.Size(); n > maxSize.Load() {
			maxSize.Store(n)
		}
	}
	var wg sync.WaitGroup
	var reads, puts atomic.Int64
	errs := make(chan error, readers+1)
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				li := (r + i) % len(names)
				l := layers[li]
				first := SpanID((r*7 + i*5) % (spans - 1))
				last := first + SpanID(i%2)
				unpin := l.Pin(first, last)
				for id := first; id <= last; id++ {
					if _, ok := l.Has(id); !ok {
						if err := l.Put(id, spanBytes(names[li], id, spanSize)); err != nil {
							errs <- err
							unpin()
							return
						}
						puts.Add(1)
					}
					watch()
				}
				for id := first; id <= last; id++ {
					p := make([]byte, 100)
					off := int64((i * 37) % (spanSize - 100))
					n, err := l.ReadAt(id, p, off)
					if err != nil {
						errs <- fmt.Errorf("read span %d of %s (pinned): %w", id, names[li], err)
						unpin()
						return
					}
					if want := spanBytes(names[li], id, spanSize)[off : off+100]; !bytes.Equal(p[:n], want) {
						errs <- fmt.Errorf("span %d of %s at %d: read %q, want %q", id, names[li], off, p[:n], want)
						unpin()
						return
					}
					reads.Add(1)
				}
				unpin()
			}
		}()
	}
	// Content files over two spans, made and read while spans go.
	var files atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		l := layers[0]
		for i := range rounds / 4 {
			id := SpanID(i % (spans - 1))
			unpin := l.Pin(id, id+1)
			for s := id; s <= id+1; s++ {
				if _, ok := l.Has(s); !ok {
					l.Put(s, spanBytes("a", s, spanSize))
				}
			}
			key := int64(i % 5)
			err := l.PutFile(key, []Extent{{Span: id, Off: 10, Len: spanSize - 10}, {Span: id + 1, Off: 0, Len: 10}})
			unpin()
			watch()
			if err != nil {
				errs <- fmt.Errorf("content file of pinned spans: %w", err)
				return
			}
			f, err := l.OpenFile(key, spanSize)
			if errors.Is(err, os.ErrNotExist) {
				continue // evicted already
			}
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(f)
			f.Close()
			want := append(spanBytes("a", id, spanSize)[10:], spanBytes("a", id+1, spanSize)[:10]...)
			if err != nil || !bytes.Equal(b, want) {
				errs <- fmt.Errorf("content file %d: %v, bytes right %v", key, err, bytes.Equal(b, want))
				return
			}
			files.Add(1)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ev := c.Evicted()
	t.Logf("%d reads, %d puts, %d content files read; evicted %d spans, %d files, %d bytes; max size %d (limit %d, bound %d)",
		reads.Load(), puts.Load(), files.Load(), ev.Spans, ev.Files, ev.Bytes, maxSize.Load(), limit, bound)
	if ev.Spans == 0 {
		t.Fatal("no span of a layer in use was evicted")
	}
	if maxSize.Load() > bound {
		t.Fatalf("cache reached %d bytes, over the bound %d", maxSize.Load(), bound)
	}
	for _, l := range layers {
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if c.Size() > limit {
		t.Fatalf("size %d over the limit %d with nothing pinned", c.Size(), limit)
	}
	if got := (&fullDisk{dir: c.Dir()}).used(); got != c.Size() {
		t.Fatalf("files on disk hold %d bytes, the cache counts %d", got, c.Size())
	}
}
