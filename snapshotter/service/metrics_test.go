package service

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/socikit/socikit/snapshotter/remote"
)

func TestWriteMetrics(t *testing.T) {
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
	var b strings.Builder
	writeMetrics(&b, m, 2)
	out := b.String()
	for _, want := range []string{
		`socikit_fetches_total{kind="on-demand"} 2`,
		`socikit_fetches_total{kind="background"} 1`,
		"socikit_fetch_errors_total 1",
		"socikit_fetched_bytes_total 1500",
		"socikit_fetched_spans_total 3",
		"socikit_cache_hits_total 3",
		"socikit_cache_misses_total 1",
		"socikit_verify_failures_total 1",
		`socikit_fetch_retries_total{reason="stall"} 2`,
		`socikit_fetch_retries_total{reason="429"} 1`,
		`socikit_fetch_retries_total{reason="connection"} 0`,
		`socikit_fetch_retries_total{reason="verify"} 0`,
		"socikit_fetch_stalls_total 1",
		"socikit_fetch_hedges_total 2",
		"socikit_fetch_hedge_wins_total 1",
		"socikit_fetch_whole_blob_total 1",
		"socikit_fetch_slow_total 1",
		"# TYPE socikit_fetch_duration_seconds histogram",
		`socikit_fetch_duration_seconds_bucket{kind="on-demand",le="0.005"} 1`,
		`socikit_fetch_duration_seconds_bucket{kind="on-demand",le="0.1"} 1`,
		`socikit_fetch_duration_seconds_bucket{kind="on-demand",le="0.25"} 2`,
		`socikit_fetch_duration_seconds_bucket{kind="on-demand",le="+Inf"} 2`,
		`socikit_fetch_duration_seconds_count{kind="on-demand"} 2`,
		`socikit_fetch_duration_seconds_bucket{kind="background",le="30"} 0`,
		`socikit_fetch_duration_seconds_bucket{kind="background",le="+Inf"} 1`,
		`socikit_fetch_duration_seconds_sum{kind="background"} 60`,
		"socikit_lazy_layers 2",
		`socikit_index_artifacts_total{source="registry"} 1`,
		`socikit_index_artifacts_total{source="containerd"} 2`,
		`socikit_index_artifact_bytes_total{source="registry"} 20`,
		`socikit_index_artifact_bytes_total{source="containerd"} 1005`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in:\n%s", want, out)
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
