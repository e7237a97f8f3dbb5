package httprange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// counts is a FaultMetrics that counts.
type counts struct {
	Retries     [NumRetryReasons]atomic.Int64
	Stalls      atomic.Int64
	Hedges      atomic.Int64
	HedgeWins   atomic.Int64
	WholeBlobs  atomic.Int64
	SlowFetches atomic.Int64
}

func (c *counts) Retried(r RetryReason) { c.Retries[r].Add(1) }
func (c *counts) Stalled()              { c.Stalls.Add(1) }
func (c *counts) Hedged(won bool) {
	c.Hedges.Add(1)
	if won {
		c.HedgeWins.Add(1)
	}
}
func (c *counts) WholeBlob() { c.WholeBlobs.Add(1) }
func (c *counts) SlowFetch() { c.SlowFetches.Add(1) }

// testBlob returns n bytes seeded from the test's name.
func testBlob(t testing.TB, n int) []byte {
	var seed uint64
	for _, c := range t.Name() {
		seed = seed*31 + uint64(c)
	}
	r := rand.New(rand.NewPCG(seed, 0))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// scriptServer serves a blob by ranges (http.ServeContent), answering the
// i-th request as script[i] says: "whole" a 200 with the whole blob, "503"
// a 503, "" (or past the end) the right answer.
type scriptServer struct {
	url  string
	blob []byte

	mu     sync.Mutex
	script []string
	ranges []string // Range header of each request
}

func newScriptServer(t *testing.T, blob []byte, script ...string) *scriptServer {
	t.Helper()
	s := &scriptServer{blob: blob, script: script}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	s.url = hs.URL + "/blob"
	return s
}

func (s *scriptServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

func (s *scriptServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := len(s.ranges)
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	fault := ""
	if i < len(s.script) {
		fault = s.script[i]
	}
	s.mu.Unlock()
	switch fault {
	case "whole":
		w.Header().Set("Content-Length", strconv.Itoa(len(s.blob)))
		w.WriteHeader(http.StatusOK)
		w.Write(s.blob)
	case "503":
		http.Error(w, "injected", http.StatusServiceUnavailable)
	default:
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(s.blob))
	}
}

// TestWholeBlobFar: a 200 with the whole blob to a range far into it
// (beyond WithMaxRequestSize) is asked again rather than read through;
// on the last attempt it is read through.
func TestWholeBlobFar(t *testing.T) {
	blob := testBlob(t, 20000)
	const off, n = 10000, 100
	for _, c := range []struct {
		script []string
		reason int64
	}{
		{[]string{"whole"}, 1},
		{[]string{"whole", "whole", "whole"}, 2}, // the third is read through
	} {
		srv := newScriptServer(t, blob, c.script...)
		m := &counts{}
		b, err := NewHTTPBlob(http.DefaultClient, srv.url, int64(len(blob)), WithStallTimeout(150*time.Millisecond, 150*time.Millisecond),
			WithHedgeDelay(0), WithBackoff(time.Millisecond), WithMaxRequestSize(4096), WithRetries(2), WithMetrics(m))
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, n)
		if err := b.ReadRanges(context.Background(), []Range{{Off: off, Buf: p}}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, blob[off:off+n]) {
			t.Fatal("wrong bytes")
		}
		if got := m.Retries[RetryWholeBlob].Load(); got != c.reason {
			t.Errorf("%v: whole-blob retries %d, want %d (requests %q)", c.script, got, c.reason, srv.requests())
		}
		if got := m.WholeBlobs.Load(); got != int64(len(c.script)) {
			t.Errorf("%v: %d whole blobs counted", c.script, got)
		}
	}
}

// TestDeadlines: the stall deadline and hedge delay follow the host's
// latencies within their bounds, and double per attempt.
func TestDeadlines(t *testing.T) {
	o, err := makeOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostStats{logs: map[string]*logState{}}
	if s, hd := h.deadlines(&o, 0); s != DefaultStallCold || hd != DefaultStallCold/4 {
		t.Errorf("cold: %v, %v", s, hd)
	}
	for range 20 {
		h.observe(5*time.Millisecond, true)
	}
	if s, hd := h.deadlines(&o, 0); s != DefaultStallFloor || hd != DefaultHedgeDelay {
		t.Errorf("fast host: %v, %v; want the floors", s, hd)
	}
	if s, _ := h.deadlines(&o, 2); s != 4*DefaultStallFloor {
		t.Errorf("third attempt: %v, want 4 × floor", s)
	}
	if s, _ := h.deadlines(&o, 10); s != DefaultStallCeiling {
		t.Errorf("11th attempt: %v, want the ceiling", s)
	}
	for range 128 {
		h.observe(700*time.Millisecond, true)
	}
	if s, hd := h.deadlines(&o, 0); s != 2800*time.Millisecond || hd != 1400*time.Millisecond {
		t.Errorf("slow host: %v, %v; want 2.8 s, 1.4 s", s, hd)
	}
	for range 128 {
		h.observe(time.Minute, false)
	}
	if s, _ := h.deadlines(&o, 0); s != DefaultStallCeiling {
		t.Errorf("very slow host: %v, want the ceiling", s)
	}
	// Hedges: at most 10 % of requests, plus 4.
	h.requests.Store(100)
	n := 0
	for h.allowHedge() {
		n++
	}
	if n != 14 {
		t.Errorf("%d hedges allowed for 100 requests, want 14", n)
	}
	// Log lines: one per kind per logEvery, the rest counted.
	if ok, _ := h.logOK("x"); !ok {
		t.Error("first line suppressed")
	}
	if ok, _ := h.logOK("x"); ok {
		t.Error("second line not suppressed")
	}
	if ok, _ := h.logOK("y"); !ok {
		t.Error("other kind suppressed")
	}
}

// TestSlowBodyNotCut: a body that keeps coming, however slowly, is not
// cut by the stall deadline (only a silence longer than it is).
func TestSlowBodyNotCut(t *testing.T) {
	blob := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(blob)-1, len(blob)))
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		w.WriteHeader(http.StatusPartialContent)
		for off := 0; off < len(blob); off += 8 << 10 { // 8 chunks, 100 ms apart: 700 ms in all
			if off > 0 {
				time.Sleep(100 * time.Millisecond)
			}
			w.Write(blob[off : off+8<<10])
			w.(http.Flusher).Flush()
		}
	}))
	defer hs.Close()
	m := &counts{}
	b, err := NewHTTPBlob(http.DefaultClient, hs.URL, int64(len(blob)),
		WithStallTimeout(400*time.Millisecond, 400*time.Millisecond), WithHedgeDelay(0), WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, len(blob))
	if err := b.ReadRanges(context.Background(), []Range{{Off: 0, Buf: p}}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, blob) || m.Stalls.Load() != 0 {
		t.Fatalf("stalls %d", m.Stalls.Load())
	}
}

func TestRetryAfterHeader(t *testing.T) {
	if d := retryAfter(http.Header{"Retry-After": {time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)}}, time.Now()); d < 80*time.Second || d > 91*time.Second {
		t.Errorf("Retry-After as a date: %v", d)
	}
	if d := retryAfter(http.Header{"Retry-After": {"7"}}, time.Now()); d != 7*time.Second {
		t.Errorf("Retry-After 7: %v", d)
	}
	for _, v := range []string{"", "-3", "soon"} {
		if d := retryAfter(http.Header{"Retry-After": {v}}, time.Now()); d != 0 {
			t.Errorf("Retry-After %q: %v", v, d)
		}
	}
}

func TestRedact(t *testing.T) {
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("stop") }}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/x?X-Amz-Signature=secret", http.StatusTemporaryRedirect)
	}))
	defer hs.Close()
	b, err := NewHTTPBlob(c, hs.URL+"/b?token=secret", 100, WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	err = b.ReadRanges(context.Background(), []Range{{Off: 0, Buf: make([]byte, 10)}})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseContentRange(t *testing.T) {
	type res struct{ A, B, T int64 }
	for in, want := range map[string]res{"bytes 0-9/10": {0, 9, 10}, "bytes 5-5/*": {5, 5, -1}} {
		a, b, tot, err := parseContentRange(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
		}
		if diff := cmp.Diff(want, res{a, b, tot}); diff != "" {
			t.Errorf("%q: %s", in, diff)
		}
	}
	for _, bad := range []string{"", "bytes 9-0/10", "items 0-1/2", "bytes 0-1", "bytes -1-3/10"} {
		if _, _, _, err := parseContentRange(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestReaderAt reads through a redirect (as to blob storage) and at the
// blob's end; a 200 with the whole blob is read up to the range, as the
// snapshotter does; a Content-Range other than the one asked fails; 503s
// are retried; the context bounds the retries.
func TestReaderAt(t *testing.T) {
	blob := testBlob(t, 1000)
	var mode atomic.Value
	mode.Store("ok")
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/blob", http.StatusTemporaryRedirect)
			return
		}
		requests.Add(1)
		var a, b int
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b); err != nil {
			http.Error(w, "no range", http.StatusBadRequest)
			return
		}
		switch mode.Load() {
		case "ignore-range":
			w.Write(blob)
			return
		case "wrong-range":
			a++
		case "503":
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(blob)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(blob[a : b+1])
	}))
	defer srv.Close()
	m := &counts{}
	b, err := NewHTTPBlob(srv.Client(), srv.URL+"/redirect", int64(len(blob)), WithBackoff(time.Millisecond), WithRetries(2), WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	r := NewReaderAt(context.Background(), b)
	if r.Size() != int64(len(blob)) {
		t.Fatalf("size %d", r.Size())
	}
	p := make([]byte, 100)
	if n, err := r.ReadAt(p, 10); err != nil || n != 100 || !bytes.Equal(p, blob[10:110]) {
		t.Fatalf("ReadAt: %d %v", n, err)
	}
	if n, err := r.ReadAt(p, 950); !errors.Is(err, io.EOF) || n != 50 || !bytes.Equal(p[:50], blob[950:]) {
		t.Fatalf("ReadAt at the end: %d %v", n, err)
	}
	if n, err := r.ReadAt(p, 1000); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("ReadAt past the end: %d %v", n, err)
	}
	mode.Store("ignore-range")
	clear(p)
	if n, err := r.ReadAt(p, 10); err != nil || n != 100 || !bytes.Equal(p, blob[10:110]) {
		t.Errorf("200 with the whole blob: %d %v", n, err)
	}
	mode.Store("wrong-range")
	if _, err := r.ReadAt(p, 10); err == nil {
		t.Error("wrong Content-Range: ReadAt succeeded")
	}
	mode.Store("503")
	before := requests.Load()
	if _, err := r.ReadAt(p, 10); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503s: %v", err)
	}
	if got := requests.Load() - before; got != 3 || m.Retries[Retry5xx].Load() != 2 {
		t.Errorf("503s: %d requests, %d retries; want 3 and 2", got, m.Retries[Retry5xx].Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	slow, err := NewHTTPBlob(srv.Client(), srv.URL+"/blob", int64(len(blob)), WithBackoff(time.Second), WithRetries(100))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := NewReaderAt(ctx, slow).ReadAt(p, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("retries under a cancelled context: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancelled after %v", d)
	}
}

// countingTransport counts the requests it carries.
type countingTransport struct {
	n    atomic.Int64
	base http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// TestOptionsPerConstructor: NewRegistryBlob's requests go through the
// WithTransport transport; NewHTTPBlob refuses the registry options rather
// than ignore them.
func TestOptionsPerConstructor(t *testing.T) {
	blob := testBlob(t, 5000)
	d := digest.FromBytes(blob)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/":
			w.WriteHeader(http.StatusOK)
		case "/v2/x/blobs/" + d.String():
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
		default:
			http.NotFound(w, r)
		}
	}))
	defer hs.Close()
	repo, err := name.NewRepository(strings.TrimPrefix(hs.URL, "http://")+"/x", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	rt := &countingTransport{base: http.DefaultTransport}
	b, err := NewRegistryBlob(context.Background(), repo, d, int64(len(blob)), WithTransport(rt))
	if err != nil {
		t.Fatal(err)
	}
	before := rt.n.Load()
	p := make([]byte, 100)
	if err := b.ReadRanges(context.Background(), []Range{{Off: 4000, Buf: p}}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, blob[4000:4100]) {
		t.Fatal("wrong bytes")
	}
	if got := rt.n.Load() - before; got != 1 {
		t.Errorf("%d range requests through the transport, want 1", got)
	}
	for _, opt := range []Option{WithTransport(rt), WithKeychain(authn.DefaultKeychain)} {
		if _, err := NewHTTPBlob(http.DefaultClient, hs.URL, 10, opt); err == nil {
			t.Error("NewHTTPBlob took a registry option")
		}
	}
}

// TestWithoutRangeByRange: a server answering a multi-range request with
// the whole blob (as S3 does) is asked range by range by default, and
// with WithoutRangeByRange the read fails with ErrMultiRangeRefused after
// that one request.
func TestWithoutRangeByRange(t *testing.T) {
	blob := bytes.Repeat([]byte("0123456789"), 1000)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if strings.Contains(r.Header.Get("Range"), ",") {
			_, _ = w.Write(blob)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
	}))
	defer srv.Close()
	for _, refuse := range []bool{false, true} {
		requests.Store(0)
		var opts []Option
		if refuse {
			opts = append(opts, WithoutRangeByRange())
		}
		b, err := NewHTTPBlob(srv.Client(), srv.URL, int64(len(blob)), opts...)
		if err != nil {
			t.Fatal(err)
		}
		rs := []Range{{Off: 5, Buf: make([]byte, 3)}, {Off: 5000, Buf: make([]byte, 4)}}
		err = b.ReadRanges(context.Background(), rs)
		switch {
		case refuse && !errors.Is(err, ErrMultiRangeRefused):
			t.Errorf("WithoutRangeByRange: %v, want ErrMultiRangeRefused", err)
		case refuse && requests.Load() != 1:
			t.Errorf("WithoutRangeByRange: %d requests, want 1", requests.Load())
		case !refuse && err != nil:
			t.Errorf("range by range: %v", err)
		case !refuse && (string(rs[0].Buf) != "567" || string(rs[1].Buf) != "0123" || requests.Load() != 3):
			t.Errorf("range by range: %q %q in %d requests", rs[0].Buf, rs[1].Buf, requests.Load())
		}
	}
}
