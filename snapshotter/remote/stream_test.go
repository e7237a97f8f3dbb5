package remote

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/socikit/socikit/internal/httprange"
)

// TestSpansServedAsTheyArrive: the spans at the start of a long range are
// stored and served while the rest of the range is still on its way, so a
// start-up reading a prefetched layer in order does not wait for the
// range's end.
func TestSpansServedAsTheyArrive(t *testing.T) {
	fx := newFixture(t)
	spans := fx.ix.Spans()
	if len(spans) < 4 {
		t.Fatalf("fixture has %d spans, want 4 or more", len(spans))
	}
	cut := spans[1].CompressedEnd // spans 0 and 1 whole, then the server waits
	release := make(chan struct{})
	held := make(chan struct{}, 1) // the long range's start is sent
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var start, end int64
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &start, &end); err != nil {
			http.Error(w, "want one range", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, len(fx.blob)))
		w.Header().Set("Content-Length", fmt.Sprint(end-start+1))
		w.WriteHeader(http.StatusPartialContent)
		if start < cut && end >= cut {
			w.Write(fx.blob[start:cut])
			w.(http.Flusher).Flush()
			held <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			start = cut
		}
		w.Write(fx.blob[start : end+1])
	}))
	defer hs.Close()
	fx.url = hs.URL
	// No stall cut: a cut would ask again for the rest, which the server
	// sends at once.
	f, _ := fx.fetcher(t, []httprange.Option{httprange.WithStallTimeout(time.Minute, time.Minute)}, WithReadAhead(0))

	ids := []SpanID{0, 1, 2, 3}
	prefetched := make(chan error, 1)
	go func() { prefetched <- f.Prefetch(context.Background(), ids) }()

	// Spans 0 and 1 are served while the range's end is held back.
	select {
	case <-held:
	case err := <-prefetched:
		t.Fatalf("prefetch ended (%v) without the range held back", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := spans[1].UncompressedEnd
	p := make([]byte, n)
	if _, err := f.ReadAt(ctx, p, 0); err != nil {
		close(release)
		t.Fatalf("read of the spans already in, while the range's end was held back: %v", err)
	}
	if !bytes.Equal(p, fx.tar[:n]) {
		t.Fatal("wrong bytes")
	}
	select {
	case err := <-prefetched:
		t.Fatalf("prefetch ended (%v) before the range's end was sent", err)
	default:
	}
	close(release)
	if err := <-prefetched; err != nil {
		t.Fatal(err)
	}
	end := spans[3].UncompressedEnd
	p = make([]byte, end)
	if _, err := f.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, fx.tar[:end]) {
		t.Fatalf("read after the prefetch: %v", err)
	}
}
