package shaping

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Class is the kind of registry request a Counter files traffic under.
type Class int

const (
	ClassOther    Class = iota // everything else: /v2/, uploads, blob HEAD, tags, referrers, ...
	ClassBlob                  // GET /v2/NAME/blobs/DIGEST, whole or ranged
	ClassManifest              // GET or HEAD /v2/NAME/manifests/REF
)

// Classify returns the class of a registry request.
func Classify(r *http.Request) Class {
	p := strings.TrimSuffix(r.URL.Path, "/")
	if !strings.HasPrefix(p, "/v2/") {
		return ClassOther
	}
	seg := strings.Split(p[len("/v2/"):], "/")
	if len(seg) < 3 { // NAME (at least one segment), kind, reference
		return ClassOther
	}
	switch kind, ref := seg[len(seg)-2], seg[len(seg)-1]; {
	case kind == "blobs" && ref != "uploads" && r.Method == http.MethodGet:
		return ClassBlob
	case kind == "manifests" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return ClassManifest
	}
	return ClassOther
}

// ClassStats is the traffic of one class. Bytes are response body bytes
// (headers are not counted).
type ClassStats struct {
	Requests      int64 `json:"requests"`
	RangeRequests int64 `json:"range_requests"` // requests with a Range header
	Bytes         int64 `json:"bytes"`
}

func (s *ClassStats) add(o ClassStats) {
	s.Requests += o.Requests
	s.RangeRequests += o.RangeRequests
	s.Bytes += o.Bytes
}

// Stats is a reading of a Counter: what it counted since Since.
//
// JSON: {"since": RFC 3339, "blob": {"requests", "range_requests", "bytes"},
// "manifest": {...}, "other": {...}, "total": {...}}.
type Stats struct {
	Since    time.Time  `json:"since"` // creation or last reset
	Blob     ClassStats `json:"blob"`
	Manifest ClassStats `json:"manifest"`
	Other    ClassStats `json:"other"`
	Total    ClassStats `json:"total"` // sum of the classes
}

// Counter is an http.Handler that counts the requests and response body
// bytes of next per Class. Requests are counted when they reach the Counter,
// bytes as the response body is written (in chunks of at most countChunk
// bytes, so a large write shows progress). Written means handed to the
// kernel: on a shaped link the count leads what the client has received by
// up to the socket send buffer plus the tc queue (~2 MB measured at
// 200 Mbit/s). HEAD responses count no bytes. It is safe for concurrent use.
type Counter struct {
	next http.Handler

	mu      sync.Mutex
	since   time.Time
	by      [3]ClassStats // indexed by Class
	events  []Event       // since the last reset, at most maxEvents
	dropped int64         // events not kept since the last reset
}

// maxEvents bounds the events a Counter keeps per period: a lazy start
// makes a few hundred to a few thousand requests.
const maxEvents = 50000

// Event is one request the Counter served, for timelines. Times are
// milliseconds since the period's start (creation or last reset): Start
// when the request reached the Counter (after the Delay in front of it),
// End when its handler returned.
//
// JSON: {"start_ms", "end_ms", "class", "method", "path", "range",
// "status", "bytes"}.
type Event struct {
	StartMS float64 `json:"start_ms"`
	EndMS   float64 `json:"end_ms"`
	Class   string  `json:"class"` // blob, manifest, other
	Method  string  `json:"method"`
	Path    string  `json:"path"`
	Range   string  `json:"range,omitempty"` // the Range header
	Status  int     `json:"status"`
	Bytes   int64   `json:"bytes"` // response body bytes written
}

// Events is the event log of one period.
//
// JSON: {"since": RFC 3339, "events": [Event...], "dropped": N}.
type Events struct {
	Since   time.Time `json:"since"`
	Events  []Event   `json:"events"`
	Dropped int64     `json:"dropped"` // requests past maxEvents, not logged
}

func (c Class) String() string {
	switch c {
	case ClassBlob:
		return "blob"
	case ClassManifest:
		return "manifest"
	}
	return "other"
}

// countChunk bounds how many bytes are written before the count is updated.
const countChunk = 64 << 10

// NewCounter returns a Counter in front of next.
func NewCounter(next http.Handler) *Counter {
	return &Counter{next: next, since: time.Now().UTC()}
}

func (c *Counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	class := Classify(r)
	req := ClassStats{Requests: 1}
	if r.Header.Get("Range") != "" {
		req.RangeRequests = 1
	}
	c.add(class, req)
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w, c: c, class: class}
	if r.Method == http.MethodHead { // net/http discards HEAD bodies
		cw.head = true
	}
	c.next.ServeHTTP(cw, r)
	c.log(start, Event{
		Class: class.String(), Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"),
		Status: cw.status, Bytes: cw.bytes,
	})
}

// log adds e, started at start and ending now, to the event log.
func (c *Counter) log(start time.Time, e Event) {
	end := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if start.Before(c.since) { // began before a reset: not this period's
		return
	}
	if len(c.events) >= maxEvents {
		c.dropped++
		return
	}
	e.StartMS = float64(start.Sub(c.since)) / float64(time.Millisecond)
	e.EndMS = float64(end.Sub(c.since)) / float64(time.Millisecond)
	c.events = append(c.events, e)
}

// EventLog returns the events of the period so far.
func (c *Counter) EventLog() Events {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Events{Since: c.since, Events: slices.Clone(c.events), Dropped: c.dropped}
}

func (c *Counter) add(class Class, s ClassStats) {
	c.mu.Lock()
	c.by[class].add(s)
	c.mu.Unlock()
}

// Snapshot returns the counts so far.
func (c *Counter) Snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statsLocked()
}

// Reset zeroes the counts and returns those it discarded. Bytes of responses
// still being written after the reset count towards the new period.
func (c *Counter) Reset() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.statsLocked()
	c.by = [3]ClassStats{}
	c.events, c.dropped = nil, 0
	c.since = time.Now().UTC()
	return s
}

func (c *Counter) statsLocked() Stats {
	s := Stats{
		Since:    c.since,
		Blob:     c.by[ClassBlob],
		Manifest: c.by[ClassManifest],
		Other:    c.by[ClassOther],
	}
	for _, cs := range c.by {
		s.Total.add(cs)
	}
	return s
}

// AdminPrefix is the path prefix of the admin endpoints.
const AdminPrefix = "/_bench/"

func isAdmin(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, AdminPrefix) }

// AdminHandler serves the counter's admin endpoints:
//
//	GET  /_bench/stats  → Stats as JSON
//	GET  /_bench/events → Events as JSON
//	POST /_bench/reset  → zeroes the counts and the events; the discarded Stats as JSON
func (c *Counter) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+AdminPrefix+"stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, c.Snapshot())
	})
	mux.HandleFunc("GET "+AdminPrefix+"events", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, c.EventLog())
	})
	mux.HandleFunc("POST "+AdminPrefix+"reset", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, c.Reset())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v) // only fails when the client went away
}

// countingWriter counts body bytes as they reach the underlying writer.
// A chunk is counted before it is written (and the part not written taken
// back after): a client that has read the bytes then always finds them in
// the stats. Counted after the write, the last chunk could reach the
// client, and the client read the stats, before the handler's goroutine
// added it (TestRegistryCountsConcurrentRanges failed so, 1 run in CI).
type countingWriter struct {
	http.ResponseWriter
	c      *Counter
	class  Class
	head   bool  // a HEAD request: net/http discards the body, nothing counted
	status int   // the status written (200 if none was)
	bytes  int64 // body bytes written, for the event log
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.head {
		return w.ResponseWriter.Write(p)
	}
	var total int
	defer func() { w.bytes += int64(total) }()
	for len(p) > 0 {
		chunk := p[:min(len(p), countChunk)]
		w.c.add(w.class, ClassStats{Bytes: int64(len(chunk))})
		n, err := w.ResponseWriter.Write(chunk)
		total += n
		if n < len(chunk) {
			w.c.add(w.class, ClassStats{Bytes: int64(n - len(chunk))})
		}
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

// Flush passes flushes through (http.Flusher).
func (w *countingWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap gives http.ResponseController the underlying writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
