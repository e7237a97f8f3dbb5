package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/ztoc"
)

// faultServer serves a blob by ranges (http.ServeContent), answering the
// requests with a planned fault in order: script[i] for the i-th request,
// "" (or past the end) for a right answer.
type faultServer struct {
	blob []byte

	mu     sync.Mutex
	script []string
	ranges []string // Range header of each request
	done   chan struct{}
}

// The faults of faultServer.
const (
	fReset        = "reset"         // connection reset before any byte
	f500          = "500"           // and 502, 503
	f429          = "429"           // with Retry-After: 1
	f429Long      = "429-long"      // with Retry-After: 3600
	fShort        = "short"         // half the body, then the connection closed
	fStallHeaders = "stall-headers" // nothing until the client goes
	fStallBody    = "stall-body"    // half the body, then nothing until the client goes
	fWhole        = "whole"         // 200 with the whole blob
	fCorrupt      = "corrupt"       // one byte of the body flipped
	fBadMulti     = "bad-multi"     // a multipart body whose parts' Content-Range cannot be parsed
)

func newFaultServer(t *testing.T, blob []byte, script ...string) (*faultServer, string) {
	t.Helper()
	s := &faultServer{blob: blob, script: script, done: make(chan struct{})}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		close(s.done)
		hs.CloseClientConnections()
		hs.Close()
	})
	return s, hs.URL + "/blob"
}

func (s *faultServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

func (s *faultServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := len(s.ranges)
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	fault := ""
	if i < len(s.script) {
		fault = s.script[i]
	}
	s.mu.Unlock()
	wait := func() {
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
	}
	switch fault {
	case fReset:
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	case "500", "502", "503":
		code, _ := strconv.Atoi(fault)
		http.Error(w, "injected", code)
	case f429:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	case f429Long:
		w.Header().Set("Retry-After", "3600")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	case fStallHeaders:
		wait()
	case fShort, fStallBody, fCorrupt, fBadMulti:
		rec := httptest.NewRecorder()
		http.ServeContent(rec, r, "", time.Time{}, bytes.NewReader(s.blob))
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		switch fault {
		case fCorrupt:
			body = bytes.Clone(body)
			body[len(body)/2] ^= 0x55
		case fBadMulti:
			body = bytes.ReplaceAll(body, []byte("Content-Range: bytes "), []byte("Content-Range: bits  "))
		}
		w.WriteHeader(rec.Code)
		if fault == fCorrupt || fault == fBadMulti {
			w.Write(body)
			return
		}
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		if fault == fStallBody {
			wait()
		}
		panic(http.ErrAbortHandler) // closes the connection
	case fWhole:
		w.Header().Set("Content-Length", strconv.Itoa(len(s.blob)))
		w.WriteHeader(http.StatusOK)
		w.Write(s.blob)
	default:
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(s.blob))
	}
}

// faultOpts: a fixed stall deadline, no hedging, fast backoff.
func faultOpts(stall time.Duration) []httprange.Option {
	return []httprange.Option{httprange.WithStallTimeout(stall, stall), httprange.WithHedgeDelay(0),
		httprange.WithBackoff(time.Millisecond)}
}

// Stall deadlines of the fault tests: tests that inject no stall use
// noStall, so that a loaded machine (a request's headers late by a
// second) never counts as one; those that inject one cut it after
// stallCut, long enough that the retry of a healthy request is never cut
// too.
const (
	noStall  = 30 * time.Second
	stallCut = time.Second
)

// TestFaults fetches spans through each fault once: the read succeeds with
// the right bytes, quickly, and the fault is counted under its reason.
func TestFaults(t *testing.T) {
	fx := newFixture(t)
	spans := fx.ix.Spans()
	for _, c := range []struct {
		fault  string
		reason RetryReason // counted once; NumRetryReasons: no retry
		multi  bool        // fetch several runs (one multi-range request)
		check  func(t *testing.T, m *Counters, asked []string)
	}{
		{fault: fReset, reason: RetryConnection},
		{fault: "500", reason: Retry5xx},
		{fault: "502", reason: Retry5xx},
		{fault: "503", reason: Retry5xx},
		{fault: fShort, reason: RetryShortBody, check: resumed},
		{fault: fShort, reason: RetryShortBody, multi: true},
		{fault: fStallHeaders, reason: RetryStall, check: stalled},
		{fault: fStallBody, reason: RetryStall, check: func(t *testing.T, m *Counters, asked []string) {
			stalled(t, m, asked)
			resumed(t, m, asked)
		}},
		{fault: fStallBody, reason: RetryStall, multi: true},
		{fault: fWhole, reason: NumRetryReasons, check: func(t *testing.T, m *Counters, asked []string) {
			if m.WholeBlobs.Load() != 1 || len(asked) != 1 {
				t.Errorf("whole blobs %d, requests %q: want 1 and one request", m.WholeBlobs.Load(), asked)
			}
		}},
		{fault: fCorrupt, reason: RetryVerify, check: func(t *testing.T, m *Counters, asked []string) {
			if m.VerifyFailure.Load() != 1 {
				t.Errorf("%d verify failures, want 1", m.VerifyFailure.Load())
			}
		}},
		{fault: fBadMulti, reason: NumRetryReasons, multi: true, check: func(t *testing.T, m *Counters, asked []string) {
			// Refused multi-range answer: one request per run then.
			if len(asked) != 4 || strings.Contains(asked[1], ",") {
				t.Errorf("requests %q: want a multi-range one, then 3 single ranges", asked)
			}
		}},
	} {
		name := c.fault
		if c.multi {
			name += "/multi-range"
		}
		t.Run(name, func(t *testing.T) {
			srv, url := newFaultServer(t, fx.blob, c.fault)
			stall := noStall
			if c.reason == RetryStall {
				stall = stallCut
			}
			f, m := fx.fetcherAt(t, url, faultOpts(stall), WithReadAhead(0))
			first, last := SpanID(3), SpanID(6)
			start := time.Now()
			var err error
			if c.multi {
				err = f.Prefetch(context.Background(), []SpanID{1, 2, 5, 8})
			} else {
				err = f.Fetch(context.Background(), first, last)
			}
			took := time.Since(start)
			if err != nil {
				t.Fatalf("fetch: %v (requests %q)", err, srv.requests())
			}
			if took > 10*time.Second { // a stall not cut would wait for the test's end
				t.Errorf("took %v", took)
			}
			if !c.multi {
				p := make([]byte, spans[last].UncompressedEnd-spans[first].UncompressedStart)
				if _, err := f.ReadAt(context.Background(), p, spans[first].UncompressedStart); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p, fx.tar[spans[first].UncompressedStart:spans[last].UncompressedEnd]) {
					t.Fatal("wrong bytes")
				}
			}
			for r := range NumRetryReasons {
				want := int64(0)
				if RetryReason(r) == c.reason {
					want = 1
				}
				if got := m.Retries[r].Load(); got != want {
					t.Errorf("retries %s = %d, want %d (requests %q)", RetryReason(r), got, want, srv.requests())
				}
			}
			if c.check != nil {
				c.check(t, m, srv.requests())
			}
			t.Logf("%v, requests %q", took.Round(time.Millisecond), srv.requests())
		})
	}
}

// stalled checks that one request was cut.
func stalled(t *testing.T, m *Counters, _ []string) {
	t.Helper()
	if m.Stalls.Load() != 1 {
		t.Errorf("%d stalls counted, want 1", m.Stalls.Load())
	}
}

// resumed checks that the retry asked only for the bytes the first
// answer had not given.
func resumed(t *testing.T, _ *Counters, asked []string) {
	t.Helper()
	if len(asked) != 2 {
		t.Fatalf("requests %q, want 2", asked)
	}
	var a0, b0, a1, b1 int64
	fmt.Sscanf(asked[0], "bytes=%d-%d", &a0, &b0)
	fmt.Sscanf(asked[1], "bytes=%d-%d", &a1, &b1)
	if b1 != b0 || a1 <= a0 {
		t.Errorf("retry asked %q after %q: want the rest of the range", asked[1], asked[0])
	}
}

// fetcherAt is fx.fetcher reading url.
func (fx *fixture) fetcherAt(t *testing.T, url string, bopts []httprange.Option, fopts ...Option) (*Fetcher, *Counters) {
	t.Helper()
	saved := fx.url
	fx.url = url
	defer func() { fx.url = saved }()
	return fx.fetcher(t, bopts, fopts...)
}

// TestRetryAfter: a 429's Retry-After is waited (1 s here, not the 1 ms
// backoff), and capped by WithMaxRetryAfter.
func TestRetryAfter(t *testing.T) {
	fx := newFixture(t)
	for _, c := range []struct {
		fault    string
		opts     []httprange.Option
		min, max time.Duration
	}{
		{f429, nil, time.Second, 3 * time.Second},
		{f429Long, []httprange.Option{httprange.WithMaxRetryAfter(100 * time.Millisecond)}, 100 * time.Millisecond, time.Second},
	} {
		t.Run(c.fault, func(t *testing.T) {
			_, url := newFaultServer(t, fx.blob, c.fault)
			f, m := fx.fetcherAt(t, url, append(faultOpts(noStall), c.opts...))
			start := time.Now()
			if err := f.Fetch(context.Background(), 0, 0); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < c.min || d > c.max {
				t.Errorf("took %v, want %v..%v", d, c.min, c.max)
			}
			if m.Retries[Retry429].Load() != 1 {
				t.Errorf("429 retries = %d", m.Retries[Retry429].Load())
			}
		})
	}
}

// TestHedge: a request whose headers do not come is hedged after the
// hedge delay; the hedge answers and wins, long before the stall deadline.
func TestHedge(t *testing.T) {
	fx := newFixture(t)
	_, url := newFaultServer(t, fx.blob, fStallHeaders)
	// Until the host's latencies are known the hedge waits a quarter of
	// the stall deadline (100 ms here).
	f, m := fx.fetcherAt(t, url, []httprange.Option{httprange.WithStallTimeout(400*time.Millisecond, 400*time.Millisecond),
		httprange.WithHedgeDelay(50 * time.Millisecond)})
	start := time.Now()
	if err := f.Fetch(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second { // a stall waited out: 400 ms per attempt, retries
		t.Errorf("took %v", d)
	}
	if m.Hedges.Load() != 1 || m.HedgeWins.Load() != 1 || m.Stalls.Load() != 0 {
		t.Errorf("hedges %d, wins %d, stalls %d: want 1, 1, 0", m.Hedges.Load(), m.HedgeWins.Load(), m.Stalls.Load())
	}
}

// TestPersistentStall: a server that never answers fails each attempt at
// the stall deadline, not the request timeout.
func TestPersistentStall(t *testing.T) {
	fx := newFixture(t)
	fx.srv.hang = true
	f, m := fx.fetcher(t, append(faultOpts(200*time.Millisecond), httprange.WithRetries(2)))
	start := time.Now()
	err := f.Fetch(context.Background(), 0, 0)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no byte for") {
		t.Fatalf("err = %v, want a stall", err)
	}
	// 3 × 200 ms (a fixed deadline: floor = ceiling); the upper bound is
	// loose for loaded machines, far below the 30 s request timeout.
	if d := time.Since(start); d < 550*time.Millisecond || d > 10*time.Second {
		t.Errorf("took %v, want ~600 ms", d)
	}
	if m.Stalls.Load() != 3 || m.Retries[RetryStall].Load() != 2 {
		t.Errorf("stalls %d, stall retries %d: want 3, 2", m.Stalls.Load(), m.Retries[RetryStall].Load())
	}
}

// TestTransientCorruption: a span damaged in one response is fetched
// again and read right; damaged in every response, it fails with a digest
// mismatch (TestCorruptSpan).
func TestTransientCorruption(t *testing.T) {
	fx := newFixture(t)
	spans := fx.ix.Spans()
	srv, url := newFaultServer(t, fx.blob, fCorrupt, fCorrupt)
	f, m := fx.fetcherAt(t, url, faultOpts(noStall), WithReadAhead(0))
	if err := f.Fetch(context.Background(), 2, 2); err != nil {
		t.Fatalf("%v (requests %q)", err, srv.requests())
	}
	p := make([]byte, spans[2].UncompressedEnd-spans[2].UncompressedStart)
	if _, err := f.ReadAt(context.Background(), p, spans[2].UncompressedStart); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, fx.tar[spans[2].UncompressedStart:spans[2].UncompressedEnd]) {
		t.Fatal("wrong bytes")
	}
	if m.VerifyFailure.Load() != 2 || m.Retries[RetryVerify].Load() != 2 {
		t.Errorf("verify failures %d, retries %d: want 2, 2", m.VerifyFailure.Load(), m.Retries[RetryVerify].Load())
	}
	_, url2 := newFaultServer(t, fx.blob, fCorrupt)
	f2, _ := fx.fetcherAt(t, url2, faultOpts(noStall), WithReadAhead(0), WithVerifyRetries(0))
	if err := f2.Fetch(context.Background(), 2, 2); !errors.Is(err, ztoc.ErrDigestMismatch) {
		t.Fatalf("with WithVerifyRetries(0): %v, want a digest mismatch", err)
	}
}

// TestFaultMix reads a whole layer, a span per request, through a server
// failing every other request with every fault in turn: the bytes are
// right.
func TestFaultMix(t *testing.T) {
	fx := newFixture(t)
	faults := []string{fReset, "500", "502", "503", fShort, fStallHeaders, fStallBody, fWhole, fCorrupt, fBadMulti}
	var script []string
	for i := range 200 {
		if i%2 == 1 {
			script = append(script, faults[(i/2)%len(faults)])
		} else {
			script = append(script, "")
		}
	}
	srv, url := newFaultServer(t, fx.blob, script...)
	f, m := fx.fetcherAt(t, url, []httprange.Option{httprange.WithStallTimeout(100*time.Millisecond, 400*time.Millisecond),
		httprange.WithHedgeDelay(20 * time.Millisecond), httprange.WithBackoff(time.Millisecond)}, WithReadAhead(0), WithMaxFetchSize(1))
	start := time.Now()
	p := make([]byte, len(fx.tar))
	for off := 0; off < len(p); off += 32 << 10 {
		end := min(off+32<<10, len(p))
		if _, err := f.ReadAt(context.Background(), p[off:end], int64(off)); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	if !bytes.Equal(p, fx.tar) {
		t.Fatal("wrong bytes")
	}
	var retries []string
	for r := range NumRetryReasons {
		if n := m.Retries[r].Load(); n > 0 {
			retries = append(retries, fmt.Sprintf("%s=%d", RetryReason(r), n))
		}
	}
	if m.VerifyFailure.Load() == 0 || m.Stalls.Load()+m.HedgeWins.Load() == 0 || m.WholeBlobs.Load() == 0 {
		t.Error("not every fault was met")
	}
	t.Logf("%v, %d requests; retries %v, stalls %d, hedges %d (won %d), whole blobs %d, verify failures %d",
		time.Since(start).Round(time.Millisecond), len(srv.requests()), retries, m.Stalls.Load(), m.Hedges.Load(),
		m.HedgeWins.Load(), m.WholeBlobs.Load(), m.VerifyFailure.Load())
}
