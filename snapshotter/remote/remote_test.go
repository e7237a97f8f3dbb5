package remote

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/snapshotter/fs/fstest"
	"github.com/socikit/socikit/ztoc"
)

type server struct {
	blob        []byte
	requests    atomic.Int64
	fail503     atomic.Int64 // answer this many requests with 503
	noMulti     bool
	hang        bool
	mu          sync.Mutex
	rangesAsked []string
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	s.rangesAsked = append(s.rangesAsked, r.Header.Get("Range"))
	s.mu.Unlock()
	if s.hang {
		<-r.Context().Done()
		return
	}
	if s.fail503.Add(-1) >= 0 {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if s.noMulti && strings.Contains(r.Header.Get("Range"), ",") {
		w.WriteHeader(http.StatusOK)
		w.Write(s.blob)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(s.blob))
}

type fixture struct {
	tar  []byte
	blob []byte
	ix   *ztoc.Index
	srv  *server
	url  string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	tb, err := fstest.Tar(fstest.Tricky(t.Name(), 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	var blob bytes.Buffer
	z, err := ztoc.Compress(&blob, bytes.NewReader(tb), ztoc.WithSpanSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{blob: blob.Bytes()}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &fixture{tar: tb, blob: blob.Bytes(), ix: ix, srv: s, url: hs.URL + "/blob"}
}

// fetcher returns a Fetcher of fx's layer over an httprange.HTTPBlob made
// with bopts, and the Counters both report to.
func (fx *fixture) fetcher(t testing.TB, bopts []httprange.Option, fopts ...Option) (*Fetcher, *Counters) {
	t.Helper()
	m := &Counters{}
	b, err := httprange.NewHTTPBlob(http.DefaultClient, fx.url, int64(len(fx.blob)),
		append([]httprange.Option{httprange.WithBackoff(time.Millisecond), httprange.WithMetrics(m)}, bopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(t.TempDir(), cache.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Acquire(digest.FromBytes(fx.blob))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Release() })
	f, err := NewFetcher(context.Background(), fx.ix, b, l, append([]Option{WithMetrics(m)}, fopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, m
}

func TestReadAtMatchesTar(t *testing.T) {
	fx := newFixture(t)
	// No read-ahead: its fetches would land after the cached read below.
	f, m := fx.fetcher(t, nil, WithReadAhead(0))
	ctx := context.Background()
	for _, r := range []struct{ off, n int64 }{{0, 512}, {1000, 200000}, {int64(len(fx.tar)) - 3000, 3000}, {5, 0}} {
		p := make([]byte, r.n)
		if n, err := f.ReadAt(ctx, p, r.off); int64(n) != r.n || err != nil {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", r.off, r.n, n, err)
		}
		if !bytes.Equal(p, fx.tar[r.off:r.off+r.n]) {
			t.Fatalf("ReadAt(%d, %d): wrong bytes", r.off, r.n)
		}
	}
	// The span range [1000, 201000) was one coalesced request.
	before := fx.srv.requests.Load()
	p := make([]byte, 100)
	f.ReadAt(ctx, p, 1000)
	if fx.srv.requests.Load() != before {
		t.Fatal("cached read made a request")
	}
	if m.Hits.Load() == 0 || m.FetchedBytes.Load() == 0 {
		t.Fatalf("metrics: %+v", m)
	}
}

func TestCoalesceAndSingleflight(t *testing.T) {
	fx := newFixture(t)
	f, _ := fx.fetcher(t, nil)
	n := len(fx.ix.Spans())
	if n < 10 {
		t.Fatalf("only %d spans", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- f.Fetch(context.Background(), 2, 9)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// 8 concurrent readers of 8 adjacent spans: one range request.
	if got := fx.srv.requests.Load(); got != 1 {
		t.Fatalf("%d requests, want 1 (%v)", got, fx.srv.rangesAsked)
	}
}

func TestPrefetchMultiRange(t *testing.T) {
	for _, noMulti := range []bool{false, true} {
		t.Run(map[bool]string{false: "multi", true: "fallback"}[noMulti], func(t *testing.T) {
			fx := newFixture(t)
			fx.srv.noMulti = noMulti
			f, _ := fx.fetcher(t, nil)
			if err := f.Prefetch(context.Background(), []SpanID{1, 3, 5, 6, 9}); err != nil {
				t.Fatal(err)
			}
			want := int64(1)
			if noMulti {
				want = 1 + 4 // refused multi-range request, then one per run
			}
			if got := fx.srv.requests.Load(); got != want {
				t.Fatalf("%d requests, want %d: %q", got, want, fx.srv.rangesAsked)
			}
			cached, _ := f.Progress()
			if cached != 5 {
				t.Fatalf("%d spans cached, want 5", cached)
			}
		})
	}
}

func TestRetry503(t *testing.T) {
	fx := newFixture(t)
	fx.srv.fail503.Store(2)
	f, _ := fx.fetcher(t, nil)
	if err := f.Fetch(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	if got := fx.srv.requests.Load(); got != 3 {
		t.Fatalf("%d requests, want 3", got)
	}
}

func TestCorruptSpan(t *testing.T) {
	fx := newFixture(t)
	s := fx.ix.Spans()[4]
	fx.srv.blob = bytes.Clone(fx.blob)
	fx.srv.blob[(s.CompressedStart+s.CompressedEnd)/2] ^= 0xff
	f, m := fx.fetcher(t, nil)
	err := f.Fetch(context.Background(), 3, 5)
	if !errors.Is(err, ztoc.ErrDigestMismatch) {
		t.Fatalf("err = %v, want digest mismatch", err)
	}
	// Fetched again DefaultVerifyRetries times, failing each time.
	if got := m.VerifyFailure.Load(); got != 1+DefaultVerifyRetries {
		t.Fatalf("%d verification failures, want %d", got, 1+DefaultVerifyRetries)
	}
	if got := m.Retries[RetryVerify].Load(); got != DefaultVerifyRetries {
		t.Fatalf("%d verify retries, want %d", got, DefaultVerifyRetries)
	}
	// The neighbours of the bad span were cached; the bad one was not.
	if !f.cached(3) || !f.cached(5) || f.cached(4) {
		t.Fatalf("cached 3,4,5 = %v %v %v", f.cached(3), f.cached(4), f.cached(5))
	}
}

func TestServerGone(t *testing.T) {
	fx := newFixture(t)
	hs := httptest.NewServer(fx.srv)
	hs.Close() // nothing listens there any more
	f, _ := fx.fetcherAt(t, hs.URL+"/blob", []httprange.Option{httprange.WithRetries(2)})
	start := time.Now()
	if err := f.Fetch(context.Background(), 0, 0); err == nil {
		t.Fatal("fetch from a closed server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestServerHangs(t *testing.T) {
	fx := newFixture(t)
	fx.srv.hang = true
	f, _ := fx.fetcher(t, []httprange.Option{httprange.WithRetries(1), httprange.WithRequestTimeout(200 * time.Millisecond)})
	start := time.Now()
	err := f.Fetch(context.Background(), 0, 0)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestBackground(t *testing.T) {
	fx := newFixture(t)
	f, m := fx.fetcher(t, nil)
	if err := f.Background(context.Background(), BackgroundOptions{}); err != nil {
		t.Fatal(err)
	}
	cached, total := f.Progress()
	if cached != total {
		t.Fatalf("%d of %d spans cached", cached, total)
	}
	if m.Fetches[Background].Load() == 0 {
		t.Fatal("no background fetch counted")
	}
	p := make([]byte, len(fx.tar))
	before := fx.srv.requests.Load()
	if _, err := f.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, fx.tar) {
		t.Fatalf("read all: %v", err)
	}
	if fx.srv.requests.Load() != before {
		t.Fatal("read after background fill made requests")
	}
}

// TestReadAhead reads the layer front to back in small reads, as a copy or
// a checksum of every file does: read-ahead fetches the spans before they
// are asked for, in growing windows, so there are far fewer requests than
// spans; reading backwards fetches nothing ahead.
func TestReadAhead(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	f, m := fx.fetcher(t, nil)
	spans := len(fx.ix.Spans())
	p := make([]byte, 16<<10)
	for off := int64(0); off < int64(len(fx.tar)); off += int64(len(p)) {
		n, err := f.ReadAt(ctx, p, off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(p[:n], fx.tar[off:off+int64(n)]) {
			t.Fatalf("wrong bytes at %d", off)
		}
	}
	if m.Fetches[ReadAhead].Load() == 0 {
		t.Fatal("no read-ahead fetch")
	}
	if got := fx.srv.requests.Load(); got > int64(spans)/3 {
		t.Fatalf("%d requests for %d spans read in order", got, spans)
	}
	t.Logf("%d spans, %d requests, %d read-ahead fetches", spans, fx.srv.requests.Load(), m.Fetches[ReadAhead].Load())

	fx = newFixture(t)
	f, m = fx.fetcher(t, nil)
	for id := spans - 1; id >= 0; id -= 2 {
		s := fx.ix.Spans()[id]
		if _, err := f.ReadAt(ctx, p[:1], s.UncompressedStart); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.Fetches[ReadAhead].Load(); got != 0 {
		t.Fatalf("%d read-ahead fetches for backward reads", got)
	}

	// Reading through prefetched spans (a reordered layer's start-up
	// files) reads nothing ahead.
	fx = newFixture(t)
	f, m = fx.fetcher(t, nil)
	var hot []SpanID
	for id := range SpanID(10) {
		hot = append(hot, id)
	}
	if err := f.Prefetch(ctx, hot); err != nil {
		t.Fatal(err)
	}
	end := fx.ix.Spans()[9].UncompressedEnd
	for off := int64(0); off+int64(len(p)) <= end; off += int64(len(p)) {
		if _, err := f.ReadAt(ctx, p, off); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.Fetches[ReadAhead].Load(); got != 0 {
		t.Fatalf("%d read-ahead fetches while reading prefetched spans", got)
	}
}

func TestParseFetchKind(t *testing.T) {
	for k := OnDemand; k < NumFetchKinds; k++ {
		if got, err := ParseFetchKind(k.String()); err != nil || got != k {
			t.Errorf("%v: %v %v", k, got, err)
		}
	}
}

// TestBuiltIndex reads a layer compressed by compress/gzip and indexed by
// ztoc.Build, as base images and upstream SOCI indexes are: checkpoints
// fall inside deflate streams (bits != 0) and spans overlap by a byte.
func TestBuiltIndex(t *testing.T) {
	tb, err := fstest.Tar(fstest.Tricky(t.Name(), 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb)
	zw.Close()
	for name, blob := range map[string][]byte{"gzip": gz.Bytes(), "tar": tb} {
		t.Run(name, func(t *testing.T) { testBuiltIndex(t, tb, blob) })
	}
}

func testBuiltIndex(t *testing.T, tb, blob []byte) {
	z, err := ztoc.Build(bytes.NewReader(blob), ztoc.WithSpanSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{blob: blob}
	hs := httptest.NewServer(s)
	defer hs.Close()
	fx := &fixture{tar: tb, blob: blob, ix: ix, srv: s, url: hs.URL + "/blob"}
	f, _ := fx.fetcher(t, nil)
	// Odd spans first, then everything: runs start at checkpoints with bits.
	var odd []SpanID
	for id := 1; id < len(ix.Spans()); id += 2 {
		odd = append(odd, SpanID(id))
	}
	if err := f.Prefetch(context.Background(), odd); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, len(tb))
	if n, err := f.ReadAt(context.Background(), p, 0); err != nil && n != len(p) {
		t.Fatal(err)
	}
	if !bytes.Equal(p[:z.UncompressedArchiveSize], tb[:z.UncompressedArchiveSize]) {
		t.Fatal("wrong bytes")
	}
}
