package remote

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
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

// slowServer serves fx's blob by single ranges, 8 KiB every 5 ms, and
// records the ranges asked, when each request came and when its last byte
// was sent.
type slowServer struct {
	blob []byte

	mu     sync.Mutex
	ranges [][2]int64
	times  [][2]time.Time
}

func (s *slowServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var start, end int64
	if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &start, &end); err != nil {
		http.Error(w, "want one range", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	i := len(s.ranges)
	s.ranges = append(s.ranges, [2]int64{start, end + 1})
	s.times = append(s.times, [2]time.Time{time.Now()})
	s.mu.Unlock()
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, len(s.blob)))
	w.Header().Set("Content-Length", fmt.Sprint(end-start+1))
	w.WriteHeader(http.StatusPartialContent)
	for off := start; off <= end; off += 8 << 10 {
		w.Write(s.blob[off:min(off+8<<10, end+1)])
		w.(http.Flusher).Flush()
		if off+8<<10 > end {
			s.mu.Lock()
			s.times[i][1] = time.Now()
			s.mu.Unlock()
			return
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
	}
}

// TestNoReadAheadOverPrefetch: a start-up reading its prefetched spans in
// order while they arrive fetches nothing past them (read-ahead took such
// reads for a stream and fetched the spans after the prefetch).
func TestNoReadAheadOverPrefetch(t *testing.T) {
	fx := newFixture(t)
	spans := fx.ix.Spans()
	const n = 10
	if len(spans) <= n {
		t.Fatalf("fixture has %d spans, want more than %d", len(spans), n)
	}
	s := &slowServer{blob: fx.blob}
	hs := httptest.NewServer(s)
	defer hs.Close()
	fx.url = hs.URL
	f, _ := fx.fetcher(t, nil)
	ids := make([]SpanID, n)
	for i := range ids {
		ids[i] = SpanID(i)
	}
	prefetched := make(chan error, 1)
	go func() { prefetched <- f.Prefetch(context.Background(), ids) }()
	p := make([]byte, 16)
	for i := range n {
		off := spans[i].UncompressedStart
		if _, err := f.ReadAt(context.Background(), p, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, fx.tar[off:off+16]) {
			t.Fatalf("span %d: wrong bytes", i)
		}
	}
	if err := <-prefetched; err != nil {
		t.Fatal(err)
	}
	f.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.ranges {
		if r[1] > spans[n-1].CompressedEnd {
			t.Errorf("fetched bytes %d-%d, past the prefetched spans (which end at %d)", r[0], r[1], spans[n-1].CompressedEnd)
		}
	}
}

// TestPrefetchInOrder: a prefetch larger than one fetch is fetched batch
// after batch, in layer order, not all at once: each request once the
// bytes of the one before are in.
func TestPrefetchInOrder(t *testing.T) {
	fx := newFixture(t)
	spans := fx.ix.Spans()
	s := &slowServer{blob: fx.blob}
	hs := httptest.NewServer(s)
	defer hs.Close()
	fx.url = hs.URL
	f, _ := fx.fetcher(t, nil, WithMaxFetchSize(100<<10), WithReadAhead(0))
	ids := make([]SpanID, len(spans))
	for i := range ids {
		ids[i] = SpanID(i)
	}
	if err := f.Prefetch(context.Background(), ids); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ranges) < 3 {
		t.Fatalf("%d requests, want 3 or more (100 KiB each)", len(s.ranges))
	}
	for i := 1; i < len(s.ranges); i++ {
		if s.ranges[i][0] < s.ranges[i-1][1] {
			t.Errorf("request %d (bytes %d-) after one ending at %d: not in layer order", i, s.ranges[i][0], s.ranges[i-1][1])
		}
		if s.times[i][0].Before(s.times[i-1][1]) {
			t.Errorf("request %d came %v before the last byte of the one before was sent", i, s.times[i-1][1].Sub(s.times[i][0]))
		}
	}
	p := make([]byte, len(fx.tar))
	if _, err := f.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, fx.tar) {
		t.Fatalf("read: %v", err)
	}
}
