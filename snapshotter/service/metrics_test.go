package service

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/socikit/socikit/snapshotter/remote"
)

// scrape gets /metrics from h and parses it as Prometheus' text format.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("/metrics Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(w.Body.String()))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, w.Body)
	}
	return fams
}

// series returns the series of family name whose labels are labels
// (name, value pairs), failing the test when there is none.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range f.Metric {
		var got []string
		for _, l := range m.Label {
			got = append(got, l.GetName(), l.GetValue())
		}
		if slices.Equal(got, labels) {
			return m
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return nil
}

// sample returns the value of a counter or gauge series.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := series(t, fams, name, labels...)
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

func TestMetrics(t *testing.T) {
	m := &Metrics{}
	lm := &layerMetrics{parent: m}
	lm.Fetched(remote.OnDemand, 2, 1000, 3*time.Millisecond, nil)
	lm.Fetched(remote.OnDemand, 1, 500, 200*time.Millisecond, nil)
	lm.Fetched(remote.Background, 1, 0, time.Minute, errors.New("boom"))
	lm.CacheHit(3)
	lm.CacheMiss(1)
	lm.VerifyFailed(7)
	lm.Retried(remote.RetryStall)
	lm.Retried(remote.RetryStall)
	lm.Retried(remote.Retry429)
	lm.Stalled()
	lm.Hedged(true)
	lm.Hedged(false)
	lm.WholeBlob()
	lm.SlowFetch()
	m.artifactRead(sourceContainerd, 1000)
	m.artifactRead(sourceRegistry, 20)
	m.artifactRead(sourceContainerd, 5)
	layers := &Layers{mounts: map[string]*mountedLayer{"a": nil, "b": nil}}
	unpacked := &unpackCounters{}
	unpacked.layers.Add(1)
	unpacked.bytes.Add(4096)
	fams := scrape(t, newHTTPHandler(m, layers, unpacked))

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"socikit_fetches_total", []string{"kind", "on-demand"}, 2},
		{"socikit_fetches_total", []string{"kind", "background"}, 1},
		{"socikit_fetches_total", []string{"kind", "prefetch"}, 0},
		{"socikit_fetch_errors_total", nil, 1},
		{"socikit_fetched_bytes_total", nil, 1500},
		{"socikit_fetched_spans_total", nil, 3},
		{"socikit_fetch_seconds_total", nil, 0.203},
		{"socikit_cache_hits_total", nil, 3},
		{"socikit_cache_misses_total", nil, 1},
		{"socikit_verify_failures_total", nil, 1},
		{"socikit_fetch_retries_total", []string{"reason", "stall"}, 2},
		{"socikit_fetch_retries_total", []string{"reason", "429"}, 1},
		{"socikit_fetch_retries_total", []string{"reason", "connection"}, 0},
		{"socikit_fetch_retries_total", []string{"reason", "verify"}, 0},
		{"socikit_fetch_stalls_total", nil, 1},
		{"socikit_fetch_hedges_total", nil, 2},
		{"socikit_fetch_hedge_wins_total", nil, 1},
		{"socikit_fetch_whole_blob_total", nil, 1},
		{"socikit_fetch_slow_total", nil, 1},
		{"socikit_lazy_layers", nil, 2},
		{"socikit_index_artifacts_total", []string{"source", "registry"}, 1},
		{"socikit_index_artifacts_total", []string{"source", "containerd"}, 2},
		{"socikit_index_artifact_bytes_total", []string{"source", "registry"}, 20},
		{"socikit_index_artifact_bytes_total", []string{"source", "containerd"}, 1005},
		{"socikit_unpacked_layers_total", nil, 1},
		{"socikit_unpacked_bytes_total", nil, 4096},
	} {
		if got := sample(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for name, f := range fams {
		want := dto.MetricType_COUNTER
		switch {
		case name == "socikit_lazy_layers":
			want = dto.MetricType_GAUGE
		case name == "socikit_fetch_duration_seconds":
			want = dto.MetricType_HISTOGRAM
		case !strings.HasPrefix(name, "socikit_"):
			continue
		}
		if f.GetType() != want {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), want)
		}
	}

	// The latency histogram: cumulative buckets, failed fetches included.
	buckets := func(kind string) map[float64]uint64 {
		h := series(t, fams, "socikit_fetch_duration_seconds", "kind", kind).GetHistogram()
		b := map[float64]uint64{}
		var bounds []float64
		for _, x := range h.Bucket {
			b[x.GetUpperBound()] = x.GetCumulativeCount()
			if !math.IsInf(x.GetUpperBound(), 1) { // the text format's le="+Inf"
				bounds = append(bounds, x.GetUpperBound())
			}
		}
		if !slices.Equal(bounds, fetchBuckets()) {
			t.Errorf("%s: buckets %v, want %v", kind, bounds, fetchBuckets())
		}
		return b
	}
	od := buckets("on-demand")
	if od[0.005] != 1 || od[0.1] != 1 || od[0.25] != 2 || od[30] != 2 {
		t.Errorf("on-demand buckets %v", od)
	}
	if h := series(t, fams, "socikit_fetch_duration_seconds", "kind", "on-demand").GetHistogram(); h.GetSampleCount() != 2 {
		t.Errorf("on-demand count %d, want 2", h.GetSampleCount())
	}
	bg := series(t, fams, "socikit_fetch_duration_seconds", "kind", "background").GetHistogram()
	if buckets("background")[30] != 0 || bg.GetSampleCount() != 1 || bg.GetSampleSum() != 60 {
		t.Errorf("background histogram %v", bg)
	}
	series(t, fams, "socikit_fetch_duration_seconds", "kind", "prefetch")

	// The Go runtime's and the process's collectors.
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total",
		"process_resident_memory_bytes", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}

	if got := lm.FetchedBytes.Load(); got != 1500 {
		t.Errorf("layer counted %d bytes, want 1500", got)
	}
	if got := lm.Retries[remote.RetryStall].Load(); got != 2 {
		t.Errorf("layer counted %d stall retries, want 2", got)
	}
	if got := lm.VerifyFailure.Load(); got != 1 {
		t.Errorf("layer counted %d verification failures, want 1", got)
	}
}

// TestMetricsText: the text lines dashboards and the runtime tests read
// are as the hand-written exposition wrote them.
func TestMetricsText(t *testing.T) {
	m := &Metrics{}
	m.Fetched(remote.OnDemand, 2, 1000, 3*time.Millisecond, nil)
	w := httptest.NewRecorder()
	newHTTPHandler(m, nil, nil).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		"# TYPE socikit_fetches_total counter",
		`socikit_fetches_total{kind="on-demand"} 1`,
		"socikit_fetched_bytes_total 1000",
		"socikit_lazy_layers 0",
		"socikit_unpacked_layers_total 0",
		"# TYPE socikit_fetch_duration_seconds histogram",
		`socikit_fetch_duration_seconds_bucket{kind="on-demand",le="0.005"} 1`,
		`socikit_fetch_duration_seconds_bucket{kind="on-demand",le="+Inf"} 1`,
		`socikit_fetch_duration_seconds_count{kind="background"} 0`,
	} {
		if !strings.Contains(w.Body.String(), "\n"+want+"\n") {
			t.Errorf("missing %q in:\n%s", want, w.Body)
		}
	}
}

// TestMetricsRegistryPerDaemon: each handler has its own registry, so two
// daemons (or tests) in one process neither collide nor see each other's
// counts.
func TestMetricsRegistryPerDaemon(t *testing.T) {
	a, b := &Metrics{}, &Metrics{}
	a.Fetched(remote.Prefetch, 1, 7, time.Millisecond, nil)
	ha, hb := newHTTPHandler(a, nil, nil), newHTTPHandler(b, nil, nil)
	if v := sample(t, scrape(t, ha), "socikit_fetched_bytes_total"); v != 7 {
		t.Errorf("first daemon: %v bytes, want 7", v)
	}
	if v := sample(t, scrape(t, hb), "socikit_fetched_bytes_total"); v != 0 {
		t.Errorf("second daemon: %v bytes, want 0", v)
	}
}

// TestStartHTTP: the server answers on its address; an address taken is an
// error unless it is the optional default, which gives no server.
func TestStartHTTP(t *testing.T) {
	ctx := context.Background()
	errc := make(chan error, 1)
	hs, err := startHTTP(ctx, "", false, newHTTPHandler(&Metrics{}, nil, nil), errc)
	if hs != nil || err != nil {
		t.Fatalf("empty address: %v, %v", hs, err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	if hs, err := startHTTP(ctx, addr, false, http.NotFoundHandler(), errc); hs != nil || err == nil {
		t.Errorf("explicit address taken: %v, %v; want an error", hs, err)
	}
	if hs, err := startHTTP(ctx, addr, true, http.NotFoundHandler(), errc); hs != nil || err != nil {
		t.Errorf("optional address taken: %v, %v; want no server, no error", hs, err)
	}

	taken.Close()
	hs, err = startHTTP(ctx, addr, true, newHTTPHandler(&Metrics{}, nil, nil), errc)
	if err != nil || hs == nil {
		t.Fatalf("free address: %v, %v", hs, err)
	}
	defer hs.Close()
	for path, want := range map[string]string{"/status": `"images": []`, "/metrics": "socikit_lazy_layers 0"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("%s: %s\n%s", path, resp.Status, b)
		}
	}
	hs.Close()
	select {
	case err := <-errc:
		t.Errorf("server error after Close: %v", err)
	default:
	}
}

func TestServeStatusNoLayers(t *testing.T) {
	for _, ls := range []*Layers{nil, {mounts: map[string]*mountedLayer{}}} {
		w := httptest.NewRecorder()
		serveStatus(w, ls)
		var st Status
		if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		if st.Images == nil || len(st.Images) != 0 || !strings.Contains(w.Body.String(), `"images": []`) {
			t.Errorf("status without layers: %s", w.Body.String())
		}
	}
}
