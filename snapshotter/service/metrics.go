package service

import (
	"fmt"
	"io"

	"github.com/socikit/socikit/snapshotter/remote"
)

// writeMetrics writes the fetch counters in the Prometheus text format
// (version 0.0.4), so no Prometheus client library is needed.
func writeMetrics(w io.Writer, c *remote.Counters) {
	if hw, ok := w.(interface{ Header() map[string][]string }); ok {
		hw.Header()["Content-Type"] = []string{"text/plain; version=0.0.4"}
	}
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
	fmt.Fprintf(w, "# HELP socikit_fetch_seconds_total Time spent fetching.\n# TYPE socikit_fetch_seconds_total counter\nsocikit_fetch_seconds_total %g\n", float64(c.FetchNanos.Load())/1e9)
	counter("socikit_cache_hits_total", "Span reads served by the cache.", c.Hits.Load())
	counter("socikit_cache_misses_total", "Span reads that had to fetch.", c.Misses.Load())
	counter("socikit_verify_failures_total", "Spans whose digest did not match the zTOC.", c.VerifyFailure.Load())
}
