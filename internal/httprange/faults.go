package httprange

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A registry that stalls (accepts a request and sends nothing, or stops
// in the middle of a body) would hold a span fetch, and the container
// reading it, for the whole per-attempt timeout. Each request is therefore
// watched: when no byte arrived for the stall deadline it is cut and asked
// again (from where its body stopped), and a request still waiting for its
// headers after the hedge delay gets a twin, the first answer winning. Both
// delays follow what the registry host did recently (a hostStats per
// host, shared by every blob of the daemon).

// hostStats is what is known of one registry host's latencies, and its
// rate-limited log lines.
type hostStats struct {
	mu        sync.Mutex
	silences  [128]time.Duration // ring: times to headers, longest pauses in bodies
	n, next   int
	toHdr     [128]time.Duration // ring: times to headers only (hedge delay)
	nh, nextH int
	cacheQ    time.Duration // 95th percentile of silences, recomputed every 8 samples
	cacheH    time.Duration // same of toHdr
	since     int

	requests, hedges atomic.Int64

	logMu sync.Mutex
	logs  map[string]*logState
}

type logState struct {
	last       time.Time
	suppressed int
}

// minSamples are needed before the deadlines adapt.
const minSamples = 8

// logEvery is the least interval between two log lines of one kind for one
// host; the lines in between are counted and the count logged with the
// next one.
const logEvery = 5 * time.Second

var hosts sync.Map // host → *hostStats

func statsFor(host string) *hostStats {
	if s, ok := hosts.Load(host); ok {
		return s.(*hostStats)
	}
	s, _ := hosts.LoadOrStore(host, &hostStats{logs: map[string]*logState{}})
	return s.(*hostStats)
}

// observe records how long the host was silent before answering (header)
// or within a body.
func (h *hostStats) observe(d time.Duration, header bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.silences[h.next] = d
	h.next = (h.next + 1) % len(h.silences)
	h.n = min(h.n+1, len(h.silences))
	if header {
		h.toHdr[h.nextH] = d
		h.nextH = (h.nextH + 1) % len(h.toHdr)
		h.nh = min(h.nh+1, len(h.toHdr))
	}
	if h.since++; h.since >= minSamples || h.n <= minSamples {
		h.since = 0
		h.cacheQ = quantile(h.silences[:h.n], 0.95)
		h.cacheH = quantile(h.toHdr[:h.nh], 0.95)
	}
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// deadlines returns the stall deadline of attempt (0-based) and the
// hedge delay (0: no hedge).
func (h *hostStats) deadlines(o *options, attempt int) (stall, hedge time.Duration) {
	h.mu.Lock()
	warm := h.n >= minSamples
	q, qh := h.cacheQ, h.cacheH
	warmH := h.nh >= minSamples
	h.mu.Unlock()
	stall = min(max(DefaultStallCold, o.stallFloor), o.stallCeiling)
	if warm {
		stall = min(max(4*q, o.stallFloor), o.stallCeiling)
	}
	for range attempt {
		if stall >= o.stallCeiling/2 {
			stall = o.stallCeiling
			break
		}
		stall *= 2
	}
	if o.hedgeMin == 0 {
		return stall, 0
	}
	hedge = max(stall/4, o.hedgeMin)
	if warmH {
		hedge = max(2*qh, o.hedgeMin)
	}
	if hedge >= stall {
		hedge = 0
	}
	return stall, hedge
}

// allowHedge tells whether one more hedge keeps them within 10 % of the
// host's requests (plus 4), and counts it.
func (h *hostStats) allowHedge() bool {
	if h.hedges.Load() >= h.requests.Load()/10+4 {
		return false
	}
	h.hedges.Add(1)
	return true
}

// logOK tells whether a line of this kind may be logged now, and how many
// were suppressed since the last one.
func (h *hostStats) logOK(kind string) (bool, int) {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	st := h.logs[kind]
	if st == nil {
		st = &logState{}
		h.logs[kind] = st
	}
	if now := time.Now(); st.last.IsZero() || now.Sub(st.last) >= logEvery {
		n := st.suppressed
		st.last, st.suppressed = now, 0
		return true, n
	}
	st.suppressed++
	return false, 0
}

// errStalled is the cancellation cause of a request cut by its watch.
var errStalled = fmt.Errorf("stalled")

// stallError is a request cut for making no progress. It is a
// context.DeadlineExceeded.
type stallError struct {
	headers bool          // waiting for the headers (else in the body)
	after   time.Duration // the deadline
}

func (e *stallError) Error() string {
	where := "body"
	if e.headers {
		where = "headers"
	}
	return fmt.Sprintf("range request: no byte for %v (waiting for the %s): cut", e.after.Round(time.Millisecond), where)
}

func (e *stallError) Is(target error) bool { return target == context.DeadlineExceeded }

// watch bounds one request: the per-attempt timeout, and the stall
// deadline between two signs of progress (sending it, its headers, each
// read of its body).
type watch struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   context.CancelFunc
	start  time.Time
	limit  time.Duration
	last   atomic.Int64 // time.Since(start) at the last progress
	timer  *time.Timer

	stalled atomic.Bool
	headers atomic.Bool // the headers arrived
	maxGap  time.Duration
}

func newWatch(parent context.Context, limit, timeout time.Duration) *watch {
	tctx, stop := context.WithTimeout(parent, timeout)
	ctx, cancel := context.WithCancelCause(tctx)
	w := &watch{ctx: ctx, cancel: cancel, stop: stop, start: time.Now(), limit: limit}
	w.timer = time.AfterFunc(limit, w.check)
	return w
}

func (w *watch) check() {
	idle := time.Since(w.start) - time.Duration(w.last.Load())
	if idle >= w.limit {
		w.stalled.Store(true)
		w.cancel(errStalled)
		return
	}
	w.timer.Reset(w.limit - idle)
}

// progress notes a sign of life and returns the silence before it.
func (w *watch) progress() time.Duration {
	now := time.Since(w.start)
	gap := now - time.Duration(w.last.Swap(int64(now)))
	return gap
}

func (w *watch) close() {
	w.timer.Stop()
	w.cancel(nil)
	w.stop()
}

// stallErr returns the stallError of a cut request, or nil.
func (w *watch) stallErr() error {
	if !w.stalled.Load() {
		return nil
	}
	return &stallError{headers: !w.headers.Load(), after: w.limit}
}

// progressReader marks progress on its watch at each read.
type progressReader struct {
	r interface{ Read([]byte) (int, error) }
	w *watch
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		if gap := p.w.progress(); gap > p.w.maxGap {
			p.w.maxGap = gap
		}
	}
	return n, err
}

// retryAfter parses a Retry-After header (seconds or an HTTP date); 0 if
// absent or bad.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
