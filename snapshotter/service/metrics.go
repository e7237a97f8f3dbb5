package service

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/socikit/socikit/internal/statusapi"
	"github.com/socikit/socikit/snapshotter/fs"
	"github.com/socikit/socikit/snapshotter/remote"
)

// fetchBuckets returns the upper bounds, in seconds, of the fetch latency
// histogram: a span range from a registry on the same host takes a few
// milliseconds, one across a slow link or through retries seconds.
func fetchBuckets() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
}

// Metrics is the remote.Metrics of the daemon: remote.Counters plus a
// latency histogram of range fetches by kind. Its zero value is ready to
// use; it is safe for concurrent use. A metricsCollector exposes it to
// Prometheus.
type Metrics struct {
	remote.Counters
	latencyOnce sync.Once
	latency     *prometheus.HistogramVec
	observers   [remote.NumFetchKinds]prometheus.Observer // latency by remote.FetchKind
	// artifacts and artifactBytes count the SOCI artifacts (zTOCs,
	// prefetch lists) read, by artifactSource.
	artifacts, artifactBytes [3]atomic.Int64
	// FUSE counts the lazy mounts' FUSE requests (fuseops.go).
	FUSE fs.OpCounters
}

// artifactSource is where a SOCI artifact was read from.
type artifactSource int

const (
	sourceRegistry artifactSource = iota
	sourceContainerd
	// sourceDisk: the daemon's own copy, kept by an earlier mount (persist.go).
	sourceDisk
)

func (s artifactSource) String() string { return [...]string{"registry", "containerd", "disk"}[s] }

func (m *Metrics) artifactRead(s artifactSource, n int) {
	m.artifacts[s].Add(1)
	m.artifactBytes[s].Add(int64(n))
}

var _ remote.Metrics = (*Metrics)(nil)

// fetchLatency returns the histogram of socikit_fetch_duration_seconds,
// made on first use with a series for every fetch kind.
func (m *Metrics) fetchLatency() *prometheus.HistogramVec {
	m.latencyOnce.Do(func() {
		m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "socikit_fetch_duration_seconds",
			Help:    "Latency of range fetches from registries (failed ones included), by kind.",
			Buckets: fetchBuckets(),
		}, []string{"kind"})
		for k := range m.observers {
			m.observers[k] = m.latency.WithLabelValues(remote.FetchKind(k).String())
		}
	})
	return m.latency
}

// Fetched implements remote.Metrics: failed fetches are timed too.
func (m *Metrics) Fetched(kind remote.FetchKind, spans int, bytes int64, d time.Duration, err error) {
	m.Counters.Fetched(kind, spans, bytes, d, err)
	if int(kind) < len(m.observers) {
		m.fetchLatency()
		m.observers[kind].Observe(d.Seconds())
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

// Descriptions of the metrics a metricsCollector reports, besides the
// histogram of Metrics.fetchLatency. Names and labels are those of the
// hand-written exposition this replaced: dashboards and docs/snapshotter.md
// depend on them.
var (
	descFetches        = prometheus.NewDesc("socikit_fetches_total", "Range fetches by kind.", []string{"kind"}, nil)
	descFetchErrors    = prometheus.NewDesc("socikit_fetch_errors_total", "Range fetches that failed.", nil, nil)
	descFetchedSpans   = prometheus.NewDesc("socikit_fetched_spans_total", "Spans fetched from registries.", nil, nil)
	descFetchedBytes   = prometheus.NewDesc("socikit_fetched_bytes_total", "Compressed bytes fetched from registries.", nil, nil)
	descFetchSeconds   = prometheus.NewDesc("socikit_fetch_seconds_total", "Time spent in successful fetches.", nil, nil)
	descCacheHits      = prometheus.NewDesc("socikit_cache_hits_total", "Span reads served by the cache.", nil, nil)
	descCacheMisses    = prometheus.NewDesc("socikit_cache_misses_total", "Span reads that had to fetch.", nil, nil)
	descVerifyFailures = prometheus.NewDesc("socikit_verify_failures_total", "Spans whose digest did not match the zTOC.", nil, nil)
	descRetries        = prometheus.NewDesc("socikit_fetch_retries_total", "Range requests (or spans) asked again, by reason.", []string{"reason"}, nil)
	descStalls         = prometheus.NewDesc("socikit_fetch_stalls_total", "Range requests cut after the stall deadline without a byte.", nil, nil)
	descHedges         = prometheus.NewDesc("socikit_fetch_hedges_total", "Second requests sent for a range request slow to answer.", nil, nil)
	descHedgeWins      = prometheus.NewDesc("socikit_fetch_hedge_wins_total", "Hedge requests that answered first.", nil, nil)
	descWholeBlobs     = prometheus.NewDesc("socikit_fetch_whole_blob_total", "Range requests answered 200 with the whole blob.", nil, nil)
	descSlowFetches    = prometheus.NewDesc("socikit_fetch_slow_total", "Range requests slower than the slow-fetch threshold, retries included.", nil, nil)
	descArtifacts      = prometheus.NewDesc("socikit_index_artifacts_total",
		"SOCI artifacts (zTOCs, prefetch lists) read, by source (the registry, containerd's content store, or the daemon's copy on disk).", []string{"source"}, nil)
	descArtifactBytes  = prometheus.NewDesc("socikit_index_artifact_bytes_total", "Bytes of SOCI artifacts read, by source.", []string{"source"}, nil)
	descLazyLayers     = prometheus.NewDesc("socikit_lazy_layers", "Layers mounted lazily.", nil, nil)
	descUnpackedLayers = prometheus.NewDesc("socikit_unpacked_layers_total",
		"Layers fetched whole and unpacked by the snapshotter, pipelined: layers without a zTOC, and the layers of images without a SOCI index (containerd fetched none of them).", nil, nil)
	descUnpackedBytes = prometheus.NewDesc("socikit_unpacked_bytes_total", "Compressed bytes fetched from registries for those layers (layers fetched ahead included).", nil, nil)
	descCacheBytes    = prometheus.NewDesc("socikit_cache_bytes", "Bytes of span and content files in the span cache.", nil, nil)
	descCacheEvicted  = prometheus.NewDesc("socikit_cache_evicted_bytes_total",
		"Bytes of span and content files of mounted layers evicted by the cache's size limit.", nil, nil)
)

// metricsCollector is the prometheus.Collector of a daemon: it reads the
// counters of Metrics (which the span fetchers update without knowing of
// Prometheus), the lazy layers mounted and the unpack counters at each
// scrape.
type metricsCollector struct {
	m        *Metrics
	layers   *Layers         // nil: no lazy layers
	unpacked *unpackCounters // nil: none
}

var _ prometheus.Collector = (*metricsCollector)(nil)

// Describe implements prometheus.Collector.
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFetches, descFetchErrors, descFetchedSpans, descFetchedBytes, descFetchSeconds,
		descCacheHits, descCacheMisses, descVerifyFailures, descRetries, descStalls, descHedges, descHedgeWins, descWholeBlobs,
		descSlowFetches, descArtifacts, descArtifactBytes, descLazyLayers, descUnpackedLayers, descUnpackedBytes,
		descCacheBytes, descCacheEvicted} {
		ch <- d
	}
	c.m.fetchLatency().Describe(ch)
	describeFUSE(ch)
}

// Collect implements prometheus.Collector.
func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	n := &c.m.Counters
	for k := range n.Fetches {
		counter(descFetches, float64(n.Fetches[k].Load()), remote.FetchKind(k).String())
	}
	counter(descFetchErrors, float64(n.FetchErrors.Load()))
	counter(descFetchedSpans, float64(n.FetchedSpans.Load()))
	counter(descFetchedBytes, float64(n.FetchedBytes.Load()))
	counter(descFetchSeconds, float64(n.FetchNanos.Load())/1e9)
	counter(descCacheHits, float64(n.Hits.Load()))
	counter(descCacheMisses, float64(n.Misses.Load()))
	counter(descVerifyFailures, float64(n.VerifyFailure.Load()))
	for r := range n.Retries {
		counter(descRetries, float64(n.Retries[r].Load()), remote.RetryReason(r).String())
	}
	counter(descStalls, float64(n.Stalls.Load()))
	counter(descHedges, float64(n.Hedges.Load()))
	counter(descHedgeWins, float64(n.HedgeWins.Load()))
	counter(descWholeBlobs, float64(n.WholeBlobs.Load()))
	counter(descSlowFetches, float64(n.SlowFetches.Load()))
	for s := range c.m.artifacts {
		counter(descArtifacts, float64(c.m.artifacts[s].Load()), artifactSource(s).String())
		counter(descArtifactBytes, float64(c.m.artifactBytes[s].Load()), artifactSource(s).String())
	}
	c.m.fetchLatency().Collect(ch)
	collectFUSE(ch, &c.m.FUSE)
	mounted := 0
	if c.layers != nil {
		c.layers.mu.Lock()
		mounted = len(c.layers.mounts)
		c.layers.mu.Unlock()
	}
	ch <- prometheus.MustNewConstMetric(descLazyLayers, prometheus.GaugeValue, float64(mounted))
	if c.layers != nil && c.layers.cache != nil {
		ch <- prometheus.MustNewConstMetric(descCacheBytes, prometheus.GaugeValue, float64(c.layers.cache.Size()))
		counter(descCacheEvicted, float64(c.layers.cache.Evicted().Bytes))
	}
	var unpackedLayers, unpackedBytes int64
	if c.unpacked != nil {
		unpackedLayers, unpackedBytes = c.unpacked.layers.Load(), c.unpacked.bytes.Load()
	}
	counter(descUnpackedLayers, float64(unpackedLayers))
	counter(descUnpackedBytes, float64(unpackedBytes))
}

// newMetricsRegistry returns the Prometheus registry of one daemon (not
// the global default one, so that daemons and tests in one process stay
// apart): its own metrics, and the Go runtime's and the process's.
func newMetricsRegistry(c *metricsCollector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// newHTTPHandler returns the handler of the daemon's metrics address:
// /metrics (Prometheus), /status (JSON, `socikit status`), /profile
// (start-up profiles, `socikit profile export`), /fuse-ops (FUSE requests
// by kind, JSON) and /debug/vars (expvar).
// layers is nil when no layer is mounted lazily.
func newHTTPHandler(m *Metrics, layers *Layers, unpacked *unpackCounters) http.Handler {
	reg := newMetricsRegistry(&metricsCollector{m: m, layers: layers, unpacked: unpacked})
	mux := http.NewServeMux()
	mux.Handle("/debug/vars", expvar.Handler())
	mux.Handle(statusapi.MetricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      log.L,
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc(statusapi.StatusPath, func(w http.ResponseWriter, _ *http.Request) { serveStatus(w, layers) })
	mux.HandleFunc(statusapi.ProfilePath, func(w http.ResponseWriter, r *http.Request) { serveProfile(w, r, layers) })
	mux.HandleFunc(statusapi.FUSEOpsPath, func(w http.ResponseWriter, _ *http.Request) { serveFUSEOps(w, &m.FUSE) })
	return mux
}

// startHTTP serves h on address (nothing when it is empty) until the
// returned server is closed; errors of the server after the start go to
// errc. When the address cannot be listened on, an optional one (the
// default address, which another daemon or program may hold) only gives a
// warning and no server, any other an error: it was asked for.
func startHTTP(ctx context.Context, address string, optional bool, h http.Handler, errc chan<- error) (*http.Server, error) {
	if address == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", address)
	if err != nil {
		if optional {
			log.G(ctx).WithError(err).Warn("no metrics server: the default metrics_address is not free; set another one (or \"\" for none) in the config")
			return nil, nil
		}
		return nil, fmt.Errorf("listen for metrics on %s: %w", address, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics server: %w", err)
		}
	}()
	log.G(ctx).WithField("metrics_address", l.Addr().String()).Info("metrics server listening")
	return hs, nil
}
