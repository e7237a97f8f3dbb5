package service

import (
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/socikit/socikit/snapshotter/remote"
)

// LatencyBuckets are the upper bounds, in seconds, of the fetch latency
// histogram: a span range from a registry on the same host takes a few
// milliseconds, one across a slow link or through retries seconds.
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Metrics is the remote.Metrics of the daemon: remote.Counters plus a
// latency histogram of range fetches by kind. Its zero value is ready to
// use; it is safe for concurrent use.
type Metrics struct {
	remote.Counters
	latency [remote.NumFetchKinds]histogram // by remote.FetchKind
	// artifacts and artifactBytes count the SOCI artifacts (zTOCs,
	// prefetch lists) read, by artifactSource.
	artifacts, artifactBytes [2]atomic.Int64
}

// artifactSource is where a SOCI artifact was read from.
type artifactSource int

const (
	sourceRegistry artifactSource = iota
	sourceContainerd
)

func (s artifactSource) String() string { return [...]string{"registry", "containerd"}[s] }

func (m *Metrics) artifactRead(s artifactSource, n int) {
	m.artifacts[s].Add(1)
	m.artifactBytes[s].Add(int64(n))
}

var _ remote.Metrics = (*Metrics)(nil)

type histogram struct {
	buckets [12]atomic.Int64 // len(LatencyBuckets), not cumulative
	count   atomic.Int64
	nanos   atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	for i, le := range LatencyBuckets {
		if s <= le {
			h.buckets[i].Add(1)
			break
		}
	}
	h.count.Add(1)
	h.nanos.Add(int64(d))
}

// Fetched implements remote.Metrics: failed fetches are timed too.
func (m *Metrics) Fetched(kind remote.FetchKind, spans int, bytes int64, d time.Duration, err error) {
	m.Counters.Fetched(kind, spans, bytes, d, err)
	if int(kind) < len(m.latency) {
		m.latency[kind].observe(d)
	}
}

// layerMetrics counts one mounted layer's events and passes them on to the
// daemon's Metrics.
type layerMetrics struct {
	parent remote.Metrics
	remote.Counters
}

var _ remote.Metrics = (*layerMetrics)(nil)

func (l *layerMetrics) Fetched(kind remote.FetchKind, spans int, bytes int64, d time.Duration, err error) {
	l.parent.Fetched(kind, spans, bytes, d, err)
	l.Counters.Fetched(kind, spans, bytes, d, err)
}

func (l *layerMetrics) CacheHit(spans int) {
	l.parent.CacheHit(spans)
	l.Counters.CacheHit(spans)
}

func (l *layerMetrics) CacheMiss(spans int) {
	l.parent.CacheMiss(spans)
	l.Counters.CacheMiss(spans)
}

func (l *layerMetrics) VerifyFailed(id remote.SpanID) {
	l.parent.VerifyFailed(id)
	l.Counters.VerifyFailed(id)
}

var _ remote.FaultMetrics = (*layerMetrics)(nil)

func (l *layerMetrics) parentFaults() remote.FaultMetrics {
	if fm, ok := l.parent.(remote.FaultMetrics); ok {
		return fm
	}
	return &remote.Counters{}
}

func (l *layerMetrics) Retried(r remote.RetryReason) {
	l.parentFaults().Retried(r)
	l.Counters.Retried(r)
}

func (l *layerMetrics) Stalled() {
	l.parentFaults().Stalled()
	l.Counters.Stalled()
}

func (l *layerMetrics) Hedged(won bool) {
	l.parentFaults().Hedged(won)
	l.Counters.Hedged(won)
}

func (l *layerMetrics) WholeBlob() {
	l.parentFaults().WholeBlob()
	l.Counters.WholeBlob()
}

func (l *layerMetrics) SlowFetch() {
	l.parentFaults().SlowFetch()
	l.Counters.SlowFetch()
}

// writeMetrics writes m in the Prometheus text format (version 0.0.4), so
// no Prometheus client library is needed. mounted is the number of lazy
// layers mounted.
func writeMetrics(w io.Writer, m *Metrics, mounted int) {
	if hw, ok := w.(interface{ Header() map[string][]string }); ok {
		hw.Header()["Content-Type"] = []string{"text/plain; version=0.0.4; charset=utf-8"}
	}
	c := &m.Counters
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	fmt.Fprintf(w, "# HELP socikit_fetches_total Range fetches by kind.\n# TYPE socikit_fetches_total counter\n")
	for k := range c.Fetches {
		fmt.Fprintf(w, "socikit_fetches_total{kind=%q} %d\n", remote.FetchKind(k).String(), c.Fetches[k].Load())
	}
	counter("socikit_fetch_errors_total", "Range fetches that failed.", c.FetchErrors.Load())
	counter("socikit_fetched_spans_total", "Spans fetched from registries.", c.FetchedSpans.Load())
	counter("socikit_fetched_bytes_total", "Compressed bytes fetched from registries.", c.FetchedBytes.Load())
	fmt.Fprintf(w, "# HELP socikit_fetch_seconds_total Time spent in successful fetches.\n# TYPE socikit_fetch_seconds_total counter\nsocikit_fetch_seconds_total %g\n", float64(c.FetchNanos.Load())/1e9)
	counter("socikit_cache_hits_total", "Span reads served by the cache.", c.Hits.Load())
	counter("socikit_cache_misses_total", "Span reads that had to fetch.", c.Misses.Load())
	counter("socikit_verify_failures_total", "Spans whose digest did not match the zTOC.", c.VerifyFailure.Load())
	fmt.Fprintf(w, "# HELP socikit_fetch_retries_total Range requests (or spans) asked again, by reason.\n# TYPE socikit_fetch_retries_total counter\n")
	for r := range c.Retries {
		fmt.Fprintf(w, "socikit_fetch_retries_total{reason=%q} %d\n", remote.RetryReason(r).String(), c.Retries[r].Load())
	}
	counter("socikit_fetch_stalls_total", "Range requests cut after the stall deadline without a byte.", c.Stalls.Load())
	counter("socikit_fetch_hedges_total", "Second requests sent for a range request slow to answer.", c.Hedges.Load())
	counter("socikit_fetch_hedge_wins_total", "Hedge requests that answered first.", c.HedgeWins.Load())
	counter("socikit_fetch_whole_blob_total", "Range requests answered 200 with the whole blob.", c.WholeBlobs.Load())
	counter("socikit_fetch_slow_total", "Range requests slower than the slow-fetch threshold, retries included.", c.SlowFetches.Load())

	for _, n := range []struct {
		name, help string
		v          *[2]atomic.Int64
	}{
		{"socikit_index_artifacts_total", "SOCI artifacts (zTOCs, prefetch lists) read, by source (the registry, or containerd's content store).", &m.artifacts},
		{"socikit_index_artifact_bytes_total", "Bytes of SOCI artifacts read, by source.", &m.artifactBytes},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", n.name, n.help, n.name)
		for s := range n.v {
			fmt.Fprintf(w, "%s{source=%q} %d\n", n.name, artifactSource(s).String(), n.v[s].Load())
		}
	}

	const h = "socikit_fetch_duration_seconds"
	fmt.Fprintf(w, "# HELP %s Latency of range fetches from registries (failed ones included), by kind.\n# TYPE %s histogram\n", h, h)
	for k := range m.latency {
		kind := remote.FetchKind(k).String()
		hist := &m.latency[k]
		var cum int64
		for i, le := range LatencyBuckets {
			cum += hist.buckets[i].Load()
			fmt.Fprintf(w, "%s_bucket{kind=%q,le=%q} %d\n", h, kind, strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		count := max(hist.count.Load(), cum)
		fmt.Fprintf(w, "%s_bucket{kind=%q,le=\"+Inf\"} %d\n", h, kind, count)
		fmt.Fprintf(w, "%s_sum{kind=%q} %g\n", h, kind, float64(hist.nanos.Load())/1e9)
		fmt.Fprintf(w, "%s_count{kind=%q} %d\n", h, kind, count)
	}
	fmt.Fprintf(w, "# HELP socikit_lazy_layers Layers mounted lazily.\n# TYPE socikit_lazy_layers gauge\nsocikit_lazy_layers %d\n", mounted)
}
