// Package statusapi is the HTTP API socikit-snapshotter serves on its
// metrics address and the socikit CLI reads (`socikit status`, `socikit
// profile export`): the default address, the paths, and the /status JSON
// document. It depends on the standard library only, so that both the
// daemon (snapshotter/service) and the CLI, which must not import the
// daemon's stacks, share one definition.
package statusapi

import "time"

// DefaultAddress is the host:port the daemon serves its metrics server on
// when its configuration does not say otherwise (metrics_address), and
// where the CLI looks for it by default.
const DefaultAddress = "127.0.0.1:9101"

// Paths served on the metrics address.
const (
	// MetricsPath serves the Prometheus metrics.
	MetricsPath = "/metrics"
	// StatusPath serves Status as JSON.
	StatusPath = "/status"
	// ProfilePath serves start-up profiles (?image=REF).
	ProfilePath = "/profile"
	// FUSEOpsPath serves FUSEOps as JSON.
	FUSEOpsPath = "/fuse-ops"
)

// FUSEOps is the JSON document served at FUSEOpsPath: the FUSE requests
// the daemon's lazy mounts have served since it started, by kind. It is
// cheap to make, for polling: the benchmark harness samples it during a
// cold start for its timelines.
type FUSEOps struct {
	// Ops is keyed by kind ("lookup", "getattr", "open", "read",
	// "release", "readdirplus", ...); every kind is present.
	Ops map[string]FUSEOpCount `json:"ops"`
}

// FUSEOpCount is one kind of FUSE request.
type FUSEOpCount struct {
	Count int64 `json:"count"`
	// Seconds is the summed time the daemon took to answer them.
	Seconds float64 `json:"seconds"`
}

// Status is the JSON document served at StatusPath: the lazily mounted
// layers, grouped by image.
type Status struct {
	Images []ImageStatus `json:"images"`
}

// ImageStatus sums the layers of one image (by the reference containerd
// pulled it as; the repository when the reference is unknown).
type ImageStatus struct {
	Image        string        `json:"image"`
	FetchedBytes int64         `json:"fetched_bytes"`
	SpansCached  int           `json:"spans_cached"`
	SpansTotal   int           `json:"spans_total"`
	Layers       []LayerStatus `json:"layers"`
}

// LayerStatus is one lazily mounted layer.
type LayerStatus struct {
	Layer          string    `json:"layer"`
	Index          string    `json:"index"`
	Mountpoint     string    `json:"mountpoint"`
	MountedAt      time.Time `json:"mounted_at"`
	CompressedSize int64     `json:"compressed_size"`
	// FetchedBytes are the compressed bytes this daemon fetched for the
	// layer since it mounted it (spans cached before are not counted).
	FetchedBytes   int64 `json:"fetched_bytes"`
	FetchedSpans   int64 `json:"fetched_spans"`
	FetchErrors    int64 `json:"fetch_errors"`
	CacheHits      int64 `json:"cache_hits"`
	CacheMisses    int64 `json:"cache_misses"`
	VerifyFailures int64 `json:"verify_failures"`
	SpansCached    int   `json:"spans_cached"`
	SpansTotal     int   `json:"spans_total"`
	// LastError is the last error the layer's filesystem returned to a
	// reader, if any.
	LastError string `json:"last_error,omitempty"`
}
