package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socikit/socikit/internal/statusapi"
)

func TestMetricsAddress(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ log, want string }{
		{`time="2026-12-04T23:00:00Z" level=info msg="metrics server listening" metrics_address="127.0.0.1:9101"` + "\n", "127.0.0.1:9101"},
		{"level=info msg=other\nlevel=info msg=\"metrics server listening\" metrics_address=[::1]:80 x=y\n", "[::1]:80"},
		{`level=warn msg="no metrics server: the default metrics_address is not free"` + "\n", ""},
	} {
		p := filepath.Join(dir, "socikit.log")
		if err := os.WriteFile(p, []byte(tc.log), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := metricsAddress(p); got != tc.want {
			t.Errorf("metricsAddress of %q = %q, want %q", tc.log, got, tc.want)
		}
	}
	if got := metricsAddress(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("no log: %q", got)
	}
}

// TestFUSEPoller: the poller finds the address in a log written after it
// started, samples the counts over time, and a read at the ready line
// returns them.
func TestFUSEPoller(t *testing.T) {
	var lookups atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != statusapi.FUSEOpsPath {
			http.NotFound(w, r)
			return
		}
		n := lookups.Add(10)
		_ = json.NewEncoder(w).Encode(statusapi.FUSEOps{Ops: map[string]statusapi.FUSEOpCount{"lookup": {Count: n}, "read": {Count: 1}}})
	}))
	defer srv.Close()
	d := &daemons{dir: t.TempDir()}
	p := startFUSEPoller(context.Background(), d, time.Now())
	defer p.stop()
	line := `level=info msg="metrics server listening" metrics_address="` + strings.TrimPrefix(srv.URL, "http://") + `"` + "\n"
	if err := os.WriteFile(filepath.Join(d.dir, "socikit.log"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); lookups.Load() < 30; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads of %s in 30 s", lookups.Load()/10, statusapi.FUSEOpsPath)
		}
	}
	ops, err := p.sample(context.Background())
	if err != nil || ops["lookup"] < 40 || ops["read"] != 1 {
		t.Fatalf("sample at the ready line: %v, %v", ops, err)
	}
	samples := p.stop()
	if len(samples) < 4 {
		t.Fatalf("%d samples", len(samples))
	}
	for i := 1; i < len(samples); i++ {
		if samples[i].MS < samples[i-1].MS {
			t.Errorf("samples out of time order: %+v then %+v", samples[i-1], samples[i])
		}
	}
	if last := samples[len(samples)-1].Ops["lookup"]; last < 40 {
		t.Errorf("last sample: %d lookups, want 40 or more", last)
	}
	if again := p.stop(); len(again) != len(samples) {
		t.Errorf("second stop: %d samples, first %d", len(again), len(samples))
	}
}
