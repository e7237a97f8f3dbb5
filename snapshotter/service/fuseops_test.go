package service

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/socikit/socikit/internal/statusapi"
	"github.com/socikit/socikit/snapshotter/fs"
)

// TestFUSEOps: the FUSE request counts reach /metrics (a counter per kind,
// a histogram per kind seen) and /fuse-ops.
func TestFUSEOps(t *testing.T) {
	m := &Metrics{}
	m.FUSE.Observe(fs.OpLookup, 20*time.Microsecond)
	m.FUSE.Observe(fs.OpLookup, 3*time.Millisecond)
	m.FUSE.Observe(fs.OpRead, time.Minute)
	h := newHTTPHandler(m, nil, nil)

	fams := scrape(t, h)
	for op, want := range map[string]float64{"lookup": 2, "read": 1, "getattr": 0, "readdirplus": 0} {
		if v := sample(t, fams, "socikit_fuse_requests_total", "op", op); v != want {
			t.Errorf("socikit_fuse_requests_total{op=%q} = %v, want %v", op, v, want)
		}
	}
	hist := series(t, fams, "socikit_fuse_request_duration_seconds", "op", "lookup").Histogram
	if hist.GetSampleCount() != 2 || hist.GetSampleSum() < 0.00302 || hist.GetSampleSum() > 0.003021 {
		t.Errorf("lookup histogram: count %d, sum %v", hist.GetSampleCount(), hist.GetSampleSum())
	}
	for _, b := range hist.Bucket {
		want := uint64(0)
		switch {
		case b.GetUpperBound() >= 0.0025 && b.GetUpperBound() < 0.005:
			want = 1 // 20 µs only
		case b.GetUpperBound() >= 0.005:
			want = 2
		case b.GetUpperBound() >= 25e-6:
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("lookup bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	for _, m := range fams["socikit_fuse_request_duration_seconds"].Metric {
		if op := m.Label[0].GetValue(); op != "lookup" && op != "read" {
			t.Errorf("histogram of %s, never seen", op)
		}
	}

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, statusapi.FUSEOpsPath, nil))
	var doc statusapi.FUSEOps
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatalf("%s: %v\n%s", statusapi.FUSEOpsPath, err, w.Body)
	}
	if len(doc.Ops) != int(fs.NumOps) || doc.Ops["lookup"].Count != 2 || doc.Ops["read"].Seconds != 60 || doc.Ops["open"].Count != 0 {
		t.Errorf("%s: %+v", statusapi.FUSEOpsPath, doc)
	}
}
