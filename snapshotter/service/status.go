package service

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// Status is the JSON document served at /status: the lazily mounted
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

// Status returns the state of every mounted layer.
func (ls *Layers) Status() Status {
	ls.mu.Lock()
	mounts := make([]*mountedLayer, 0, len(ls.mounts))
	for _, m := range ls.mounts {
		mounts = append(mounts, m)
	}
	ls.mu.Unlock()
	byImage := map[string]*ImageStatus{}
	for _, m := range mounts {
		cached, total := m.m.Progress()
		c := &m.metrics.Counters
		s := LayerStatus{
			Layer: m.l.Desc.Digest.String(), Index: m.l.Index.Digest.String(), Mountpoint: m.m.Dir(), MountedAt: m.at,
			CompressedSize: m.l.Desc.Size, FetchedBytes: c.FetchedBytes.Load(), FetchedSpans: c.FetchedSpans.Load(),
			FetchErrors: c.FetchErrors.Load(), CacheHits: c.Hits.Load(), CacheMisses: c.Misses.Load(),
			VerifyFailures: c.VerifyFailure.Load(), SpansCached: cached, SpansTotal: total,
		}
		if err := m.m.Err(); err != nil {
			s.LastError = err.Error()
		}
		img := m.l.Image
		if img == "" {
			img = m.l.Repo.Name()
		}
		is := byImage[img]
		if is == nil {
			is = &ImageStatus{Image: img}
			byImage[img] = is
		}
		is.Layers = append(is.Layers, s)
		is.FetchedBytes += s.FetchedBytes
		is.SpansCached += cached
		is.SpansTotal += total
	}
	st := Status{Images: []ImageStatus{}}
	for _, is := range byImage {
		slices.SortFunc(is.Layers, func(a, b LayerStatus) int { return cmp.Compare(a.Mountpoint, b.Mountpoint) })
		st.Images = append(st.Images, *is)
	}
	slices.SortFunc(st.Images, func(a, b ImageStatus) int { return cmp.Compare(a.Image, b.Image) })
	return st
}

// serveStatus writes the status of ls (nil: no lazy layers) as JSON.
func serveStatus(w http.ResponseWriter, ls *Layers) {
	st := Status{Images: []ImageStatus{}}
	if ls != nil {
		st = ls.Status()
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}
