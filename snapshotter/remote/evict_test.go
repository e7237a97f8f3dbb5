package remote

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/snapshotter/cache"
)

// TestReadWhileEvicting reads a layer through a cache whose size limit is
// a quarter of the layer, from 6 readers at once with read-ahead and a
// background fetch: the cache evicts spans of the layer while it is read,
// reads racing an eviction fetch again, and every read returns the
// layer's bytes without an error. The background fetch stops once the
// layer does not fit.
func TestReadWhileEvicting(t *testing.T) {
	fx := newFixture(t)
	b, err := httprange.NewHTTPBlob(http.DefaultClient, fx.url, int64(len(fx.blob)), httprange.WithBackoff(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	limit := int64(len(fx.tar) / 4)
	c, err := cache.Open(t.TempDir(), cache.WithNoSync(), cache.WithMaxSize(limit))
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Acquire(digest.FromBytes(fx.blob))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	f, err := NewFetcher(context.Background(), fx.ix, b, l)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	bgDone := make(chan error, 1)
	go func() { bgDone <- f.Background(ctx, BackgroundOptions{Idle: time.Millisecond}) }()

	const readers, chunk = 6, 128 << 10
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	var maxSize int64
	var mu sync.Mutex
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := int64(len(fx.tar))
			start := int64(r) * size / readers
			for i := int64(0); i < size; i += chunk {
				off := (start + i) % size
				n := min(chunk, size-off)
				p := make([]byte, n)
				if got, err := f.ReadAt(ctx, p, off); err != nil || int64(got) != n {
					errs <- fmt.Errorf("reader %d: ReadAt(%d, %d) = %d, %v", r, off, n, got, err)
					return
				}
				if !bytes.Equal(p, fx.tar[off:off+n]) {
					errs <- fmt.Errorf("reader %d: ReadAt(%d, %d): wrong bytes", r, off, n)
					return
				}
				mu.Lock()
				maxSize = max(maxSize, c.Size())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-bgDone; err != nil {
		t.Fatalf("background fetch: %v", err)
	}
	ev := c.Evicted()
	cached, total := f.Progress()
	t.Logf("layer %d bytes, limit %d: evicted %d spans (%d bytes), max size %d, %d of %d spans cached at the end",
		len(fx.tar), limit, ev.Spans, ev.Bytes, maxSize, cached, total)
	if ev.Spans == 0 {
		t.Fatal("nothing evicted from the layer being read")
	}
	if cached == total {
		t.Fatal("whole layer cached over a limit of a quarter of it")
	}
	// Over the limit by at most the spans pinned by the reads in flight
	// (a read of 128 KiB covers at most 3 spans of 64 KiB) and one span
	// just put.
	if bound := limit + (readers*3+1)*(64<<10+cache.SpanOverhead); maxSize > bound {
		t.Fatalf("cache reached %d bytes, over the bound %d", maxSize, bound)
	}
}
