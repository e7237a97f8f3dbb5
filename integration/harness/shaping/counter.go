package shaping

import (
	"encoding/json"
	"net/http"
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

	mu    sync.Mutex
	since time.Time
	by    [3]ClassStats // indexed by Class
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
	if r.Method == http.MethodHead { // net/http discards HEAD bodies
		c.next.ServeHTTP(w, r)
		return
	}
	c.next.ServeHTTP(&countingWriter{ResponseWriter: w, c: c, class: class}, r)
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
//	POST /_bench/reset  → zeroes the counts; the discarded Stats as JSON
func (c *Counter) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+AdminPrefix+"stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, c.Snapshot())
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
	c     *Counter
	class Class
}

func (w *countingWriter) Write(p []byte) (int, error) {
	var total int
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
